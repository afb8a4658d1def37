"""The analyzer-bridge's configuration, from environment variables."""

from pydantic import Field, SecretStr, field_validator, model_validator

from contracts import topics
from servicekit.settings import (
    DEV_WEBHOOK_CAPABILITY_SECRET,
    MIN_SIGNING_SECRET_BYTES,
    CoalescedCommitSettings,
    DatabaseSettings,
    S3Settings,
)
from servicekit.webhooks import secret_key

DAY = 24 * 3600.0


class Settings(S3Settings, DatabaseSettings, CoalescedCommitSettings):
    http_port: int = 8103
    database_schema: str = Field(
        default="analyzer_bridge", description="PostgreSQL schema owned by this service."
    )

    consumer_group: str = Field(
        default="analyzer-bridge",
        description="Kafka consumer group on `audio.stored`; `job.deleted` is consumed in "
        "`<group>.deletions`.",
    )
    audio_stored_topic: str = topics.AUDIO_STORED
    analysis_result_topic: str = topics.ANALYSIS_RESULT
    job_status_topic: str = topics.JOB_STATUS
    job_deleted_topic: str = topics.JOB_DELETED
    kafka_auto_offset_reset: str = Field(default="earliest", pattern="^(earliest|latest)$")

    analysis_server_url: str = "http://127.0.0.1:8105"
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Origin the analysis server reaches the webhook route at (the edge).",
    )
    s3_presign_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint as the analysis server reaches it; the S3 endpoint if unset.",
    )
    presign_expiry_seconds: int = Field(default=15 * 60, gt=0)

    analysis_deadline_seconds: float = Field(default=600, gt=0)
    deadline_sweep_interval_seconds: float = Field(default=2.0, gt=0)

    request_timeout_seconds: float = Field(default=10.0, gt=0)
    request_max_attempts: int = Field(default=8, ge=1, description="Retry budget per job.")
    retry_base_delay_seconds: float = Field(default=0.5, gt=0)
    retry_max_delay_seconds: float = Field(default=30.0, gt=0)
    analyzing_notice_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How long after the analysis server accepted a job `analyzing` (51) "
        "waits: it is published only if the job has heard nothing since (no progress, no "
        "result), so a short analysis goes from `uploaded` to its final status without it "
        "(each status is a produce, a projection write and a push to every stream). "
        "0: at once.",
    )

    webhook_capability_secret: SecretStr = SecretStr(DEV_WEBHOOK_CAPABILITY_SECRET)
    webhook_signing_secret: SecretStr | None = Field(
        default=None,
        description="`whsec_<base64>` (Standard Webhooks); webhooks must be signed with it. "
        "Required in production; `make run` generates one. Unset in development: unsigned "
        "webhooks with a valid capability URL are accepted.",
    )
    webhook_tolerance_seconds: int = 5 * 60

    analysis_retention_seconds: float = Field(
        default=2 * DAY,
        ge=0,
        description="How long a finished analysis's row (its object's location, file name and "
        "result) stays once its events are out, to answer a late or repeated webhook; then a "
        "sweep erases it (the result lives on in the notifier). Past a day after the "
        "deadline the webhook's capability has expired anyway. 0: kept.",
    )
    retention_sweep_seconds: float = Field(
        default=60.0, gt=0, description="How often a replica erases what is past retention."
    )
    job_tombstone_seconds: float = Field(
        default=14 * DAY,
        gt=0,
        description="How long a deleted job's tombstone (its id and when) stays, so that a "
        "redelivered `audio.stored` of it starts nothing and its webhooks get 410: longer "
        "than `audio.stored` keeps messages (the broker's retention, 7 days by default) and "
        "than a consumer group's committed offsets live (offsets.retention.minutes, 7 days).",
    )

    analysis_request_metadata: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra `metadata` of every analysis request, as a JSON object, e.g. "
            '`{"reference.mode": "slow"}` to put the reference analysis server in a test mode.'
        ),
    )

    @field_validator("webhook_signing_secret")
    @classmethod
    def _signing_secret_decodes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            secret_key(value.get_secret_value())
            return value
        return None

    signing_secrets = frozenset({"job_token_secret", "webhook_capability_secret"})

    @model_validator(mode="after")
    def _signed_webhooks_in_production(self) -> "Settings":
        # A capability URL leaks through logs and proxies; the signature proves that the
        # analysis server itself sent the call (docs/architecture.md §6, issue 11).
        if self.environment == "production":
            if self.webhook_signing_secret is None:
                raise ValueError("webhook_signing_secret is required in production")
            key = secret_key(self.webhook_signing_secret.get_secret_value())
            if len(key) < MIN_SIGNING_SECRET_BYTES:
                raise ValueError(
                    "webhook_signing_secret must decode to at least "
                    f"{MIN_SIGNING_SECRET_BYTES} bytes in production"
                )
        return self

    @property
    def deletion_consumer_group(self) -> str:
        """The group that erases deleted jobs from ``job.deleted``: one of its own, so
        that its offsets are independent of ``audio.stored``'s."""
        return f"{self.consumer_group}.deletions"

    @property
    def presign_endpoint_url(self) -> str | None:
        return self.s3_presign_endpoint_url or self.s3_endpoint_url

    @property
    def request_lease_seconds(self) -> float:
        """How long one replica owns a pending request: one attempt plus its backoff."""
        return self.request_timeout_seconds + self.retry_max_delay_seconds + 10
