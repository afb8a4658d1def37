"""Configuration of the notifier, from environment variables."""

from pydantic import Field

from servicekit.settings import DatabaseSettings


class Settings(DatabaseSettings):
    http_port: int = 8104
    database_schema: str = Field(
        default="notifier", description="PostgreSQL schema holding the projection."
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
    sse_max_streams_per_job: int = Field(
        default=10,
        ge=1,
        description="Open streams of one job per process (one person's tabs); beyond it, 429.",
    )
    sse_max_streams_per_client: int = Field(
        default=50,
        ge=1,
        description="Open streams from one client address per process (the address the "
        "trusted edge saw); beyond it, 429.",
    )
    sse_max_stream_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Maximum lifetime of a stream: it then ends cleanly after an event (at a "
        "random moment in the last tenth of it) and EventSource resumes by Last-Event-ID.",
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
