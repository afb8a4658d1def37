"""Configuration from the environment.

Every setting is read from ``REFERENCE_ANALYZER_<NAME>``; the four that a local stack
shares with other services also fall back to their plain names (``HTTP_HOST``,
``HTTP_PORT``, ``WEBHOOK_SIGNING_SECRET``, ``ENVIRONMENT``).
"""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reference_analyzer.modes import Mode
from servicekit.settings import MIN_SIGNING_SECRET_BYTES, production_problem
from servicekit.webhooks import secret_key

ENV_PREFIX = "REFERENCE_ANALYZER_"


def _env(name: str, *fallbacks: str) -> AliasChoices:
    return AliasChoices(ENV_PREFIX + name, *fallbacks)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, populate_by_name=True, extra="ignore")

    http_host: str = Field("127.0.0.1", validation_alias=_env("HTTP_HOST", "HTTP_HOST"))
    http_port: int = Field(8105, ge=0, le=65535, validation_alias=_env("HTTP_PORT", "HTTP_PORT"))
    environment: Literal["development", "production"] = Field(
        "development",
        validation_alias=_env("ENVIRONMENT", "ENVIRONMENT"),
        description="`production` refuses to start without a signing secret.",
    )
    webhook_signing_secret: SecretStr | None = Field(
        None,
        validation_alias=_env("WEBHOOK_SIGNING_SECRET", "WEBHOOK_SIGNING_SECRET"),
        description="`whsec_<base64>`, the analyzer-bridge's: when set, `POST /analyze` must "
        "carry a Standard Webhooks signature under it and webhooks are signed with it. "
        "Required in production; `make run` generates one for both.",
    )
    signature_tolerance_seconds: int = Field(
        5 * 60, ge=1, description="How far a signed request's timestamp may be from now."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    max_request_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest `POST /analyze` body read (413 beyond)."
    )
    max_download_bytes: int = Field(
        2 * 1024**3, ge=1, description="Largest audio file downloaded (the request's `size`)."
    )
    max_duration_seconds: float = Field(
        3600.0, gt=0, description="Longest audio analysed; longer fails with `audio_too_long`."
    )
    max_analysis_seconds: float = Field(
        900.0,
        gt=0,
        description="Wall time of one analysis from its acceptance; then it fails with "
        "`analysis_failed`. A request's `deadline` can only make it shorter.",
    )

    progress_interval_seconds: float = Field(
        0.5,
        ge=0,
        description="Least time between two progress webhooks of one analysis, the first "
        "one this long after it starts: an analysis shorter than this sends only its "
        "result; 0 reports every step.",
    )

    max_concurrent_jobs: int = Field(4, ge=1, description="Analyses running at once.")
    max_pending_jobs: int = Field(
        100, ge=1, description="Accepted analyses (running or waiting) before answering 503."
    )
    block_frames: int = Field(65536, ge=1024, description="Frames decoded per block.")
    download_chunk_bytes: int = Field(1 << 20, ge=4096)
    download_timeout_seconds: float = Field(30.0, gt=0)
    download_attempts: int = Field(3, ge=1)
    webhook_timeout_seconds: float = Field(15.0, gt=0)
    webhook_attempts: int = Field(5, ge=1)
    retry_backoff_seconds: float = Field(0.5, ge=0, description="First retry delay; doubles.")
    retry_max_delay_seconds: float = Field(10.0, ge=0)
    temp_dir: Path | None = Field(None, description="Where downloads are spooled.")

    # Test modes (see reference_analyzer.modes); request metadata overrides them.
    mode: Mode = Mode.NORMAL
    fail_first: int = Field(0, ge=0, description="503 for the first N requests of each job.")
    slow_delay_seconds: float = Field(5.0, ge=0, description="Pause of `slow` mode.")
    retry_after_seconds: int = Field(1, ge=0, description="`Retry-After` of a 503.")

    @field_validator("webhook_signing_secret")
    @classmethod
    def _secret_is_standard(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        # Standard Webhooks: a random key of 24 to 64 bytes, serialized `whsec_<base64>`.
        key = secret_key(value.get_secret_value())
        if not 24 <= len(key) <= 64:
            raise ValueError("the webhook signing secret must decode to 24..64 bytes")
        return value

    @model_validator(mode="after")
    def _signed_requests_in_production(self) -> "Settings":
        # Without a secret anyone who reaches the server makes it fetch any URL and
        # decode what it finds (docs/architecture.md §6, §7, issue 19). The same rules
        # as the bridge's for the same secret.
        if self.environment != "production":
            return self
        if self.webhook_signing_secret is None:
            raise ValueError("webhook_signing_secret is required in production")
        value = self.webhook_signing_secret.get_secret_value()
        problem = production_problem("webhook_signing_secret", value)
        if problem:
            raise ValueError(problem)
        if len(secret_key(value)) < MIN_SIGNING_SECRET_BYTES:
            raise ValueError(
                "webhook_signing_secret must decode to at least "
                f"{MIN_SIGNING_SECRET_BYTES} bytes in production"
            )
        return self

    @property
    def signing_secret(self) -> str | None:
        secret = self.webhook_signing_secret
        return None if secret is None else secret.get_secret_value()
