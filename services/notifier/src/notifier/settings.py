"""Configuration of the notifier, from environment variables."""

import re

from pydantic import Field, field_validator

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8104

    database_url: str = "postgresql://audiopipe:audiopipe@127.0.0.1:15432/audiopipe"
    database_schema: str = Field(
        default="notifier", description="PostgreSQL schema holding the projection."
    )
    database_pool_size: int = Field(default=10, ge=1)
    database_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Bound on each PostgreSQL connect and statement; beyond it, or with the "
        "database down, requests get 503 with `Retry-After` and events are retried.",
    )

    consumer_group: str = Field(
        default="notifier", description="Kafka consumer group that writes the projection."
    )
    kafka_wait_seconds: float = Field(
        default=60.0, gt=0, description="How long to wait for Kafka at start."
    )

    sse_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="Interval of `: keep-alive` comments on idle streams."
    )
    sse_retry_ms: int = Field(default=2000, ge=0, description="The `retry:` sent to browsers.")
    sse_max_streams: int = Field(
        default=1000, ge=1, description="Open streams per process; beyond it, 503."
    )
    sse_queue_size: int = Field(
        default=64, ge=1, description="Live events buffered per stream before it re-reads."
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins whose pages may stream progress from a browser, cookie included "
        "(`EventSource(url, {withCredentials: true})`); JSON list, e.g. "
        '`["https://app.example.com"]`.',
    )

    listen_check_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the LISTEN connection is checked; a dead one is replaced.",
    )
    listen_reconnect_seconds: float = Field(
        default=1.0, gt=0, description="Pause before reconnecting a lost LISTEN connection."
    )

    @field_validator("database_schema")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        # The schema name is interpolated into SQL, so it must be a plain identifier;
        # `<schema>_applied` names the NOTIFY channel, itself at most 63 bytes.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,54}", value):
            raise ValueError("database_schema must be a lowercase SQL identifier of <= 55 chars")
        return value
