"""The analyzer-bridge's configuration, from environment variables."""

from pydantic import Field, SecretStr, field_validator, model_validator

from contracts import topics
from servicekit.settings import (
    DEV_WEBHOOK_CAPABILITY_SECRET,
    MIN_SIGNING_SECRET_BYTES,
    DatabaseSettings,
    S3Settings,
)
from servicekit.webhooks import secret_key


class Settings(S3Settings, DatabaseSettings):
    http_port: int = 8103
    database_schema: str = Field(
        default="analyzer_bridge", description="PostgreSQL schema owned by this service."
    )

    consumer_group: str = "analyzer-bridge"
    audio_stored_topic: str = topics.AUDIO_STORED
    analysis_result_topic: str = topics.ANALYSIS_RESULT
    job_status_topic: str = topics.JOB_STATUS
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

    webhook_capability_secret: SecretStr = SecretStr(DEV_WEBHOOK_CAPABILITY_SECRET)
    webhook_signing_secret: SecretStr | None = Field(
        default=None,
        description="`whsec_<base64>` (Standard Webhooks); webhooks must be signed with it. "
        "Required in production; `make run` generates one. Unset in development: unsigned "
        "webhooks with a valid capability URL are accepted.",
    )
    webhook_tolerance_seconds: int = 5 * 60

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
    def presign_endpoint_url(self) -> str | None:
        return self.s3_presign_endpoint_url or self.s3_endpoint_url

    @property
    def request_lease_seconds(self) -> float:
        """How long one replica owns a pending request: one attempt plus its backoff."""
        return self.request_timeout_seconds + self.retry_max_delay_seconds + 10
