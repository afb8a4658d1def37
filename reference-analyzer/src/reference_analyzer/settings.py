"""Configuration from the environment.

Every setting is read from ``REFERENCE_ANALYZER_<NAME>``; the three that a local stack
shares with other services also fall back to their plain names (``HTTP_HOST``,
``HTTP_PORT``, ``WEBHOOK_SIGNING_SECRET``).
"""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reference_analyzer.modes import Mode
from servicekit.webhooks import secret_key

ENV_PREFIX = "REFERENCE_ANALYZER_"


def _env(name: str, *fallbacks: str) -> AliasChoices:
    return AliasChoices(ENV_PREFIX + name, *fallbacks)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, populate_by_name=True, extra="ignore")

    http_host: str = Field("127.0.0.1", validation_alias=_env("HTTP_HOST", "HTTP_HOST"))
    http_port: int = Field(8105, ge=0, le=65535, validation_alias=_env("HTTP_PORT", "HTTP_PORT"))
    webhook_signing_secret: SecretStr | None = Field(
        None,
        validation_alias=_env("WEBHOOK_SIGNING_SECRET", "WEBHOOK_SIGNING_SECRET"),
        description="`whsec_<base64>`; webhooks are signed (Standard Webhooks) when set. The "
        "analyzer-bridge must verify with the same secret (required in its production mode); "
        "`make run` generates one for both.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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

    @property
    def signing_secret(self) -> str | None:
        secret = self.webhook_signing_secret
        return None if secret is None else secret.get_secret_value()
