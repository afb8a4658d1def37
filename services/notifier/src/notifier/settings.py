"""Configuration of the notifier, from environment variables."""

from pydantic import Field

from servicekit.settings import CoalescedCommitSettings, DatabaseSettings, OwnerAuthSettings

DAY = 24 * 3600.0


class Settings(DatabaseSettings, OwnerAuthSettings, CoalescedCommitSettings):
    """The notifier's settings. The owner's bearer JWTs (``UPLOAD_AUTH``,
    ``UPLOAD_JWT_*``: an owner lists and deletes its jobs) are the gateway's block, so
    both services must be given the same values (docs/architecture.md §6)."""

    http_port: int = 8104
    database_schema: str = Field(
        default="notifier", description="PostgreSQL schema holding the projection."
    )

    consumer_group: str = Field(
        default="notifier",
        description="Kafka consumer group that writes the projection; its deletions are "
        "consumed in `<group>.deletions`.",
    )
    projection_fetch_wait_ms: int = Field(
        default=100,
        ge=0,
        le=500,
        description="How long the broker may hold the projection's fetch for more "
        "`job.status` events before answering with what it has: each fetch is projected "
        "in one transaction (three PostgreSQL round trips and a Kafka request however "
        "many events it holds), so under load fuller, fewer batches cost less CPU per "
        "event; a status can reach its streams up to this much later. 0: every event "
        "as soon as it is there (one batch each at moderate rates).",
    )
    kafka_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a deletion waits for Kafka to acknowledge its `job.deleted`; "
        "beyond it, `DELETE /jobs/{job_id}` answers 503 with `Retry-After`.",
    )

    job_retention_seconds: float = Field(
        default=30 * DAY,
        ge=0,
        description="How long a finished job's state and event history stay after its "
        "final event; then a sweep publishes `job.deleted` (reason `retention`) and every "
        "service erases the job. 0: kept until deleted.",
    )
    job_retention_sweep_seconds: float = Field(
        default=60.0, gt=0, description="How often a replica looks for jobs past retention."
    )
    job_tombstone_seconds: float = Field(
        default=14 * DAY,
        gt=0,
        description="How long a deleted job's tombstone (its id and when) stays, so that a "
        "late or replayed `job.status` of it changes nothing: longer than `job.status` "
        "keeps events (the broker's retention, 7 days by default) and than a consumer "
        "group's committed offsets live (`offsets.retention.minutes`, 7 days).",
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
        "(`EventSource(url, {withCredentials: true})`), and list or delete jobs; JSON list, "
        'e.g. `["https://app.example.com"]`.',
    )

    listen_check_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the LISTEN connection is checked; a dead one is replaced.",
    )
    listen_reconnect_seconds: float = Field(
        default=1.0, gt=0, description="Pause before reconnecting a lost LISTEN connection."
    )

    @property
    def deletion_consumer_group(self) -> str:
        """The group that erases deleted jobs from ``job.deleted``: one of its own, so
        that its offsets are independent of the projection's."""
        return f"{self.consumer_group}.deletions"
