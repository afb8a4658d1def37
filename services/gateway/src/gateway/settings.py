from pydantic import Field, model_validator

from servicekit.kafka import MAX_MESSAGE_BYTES
from servicekit.settings import DatabaseSettings, OwnerAuthSettings

DAY = 24 * 3600.0

MARKERS_ROOM = 64 * 1024
"""Room in a record batch beside a chunk: the markers around it and every record's
headers. ``chunk_bytes`` leaves as much below the topics' message size, and the
producer's batches are a chunk and this much (``gateway.adapters.kafka.batch_bytes``)."""


class Settings(DatabaseSettings, OwnerAuthSettings):
    http_port: int = 8101
    deletion_consumer_group: str = Field(
        default="gateway.deletions",
        description="The gateway's one Kafka consumer group, on `job.deleted` (as the other "
        "services name theirs, `<group>.deletions`).",
    )
    max_upload_bytes: int = Field(default=2 * 1024**3, description="Largest accepted file.")
    chunk_bytes: int = Field(
        default=512 * 1024,
        gt=0,
        le=MAX_MESSAGE_BYTES - MARKERS_ROOM,
        description="Size of the chunk messages on `audio.upload`; a chunk with the "
        "markers around it is one record batch, within the topics' message size.",
    )
    max_chunks_in_flight: int = Field(
        default=8, description="Unacknowledged chunks per upload; bounds memory per upload."
    )
    kafka_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Bound on every wait for Kafka during an upload (metadata, a free send "
        "slot, an acknowledgement, one request): with the broker down, an upload in "
        "progress is refused with 503 within about this long.",
    )
    kafka_probe_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the gateway asks whether Kafka answers; while it does not, "
        "uploads are refused with 503 before their body is read.",
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    upload_rate_per_minute: float = Field(
        default=30.0,
        ge=0,
        description="New uploads per minute per owner (or client address), on average; 0: "
        "no limit. Beyond it and the burst: 429 before the body is read.",
    )
    upload_rate_burst: int = Field(
        default=10, ge=1, description="New uploads allowed at once before the rate applies."
    )
    uploads_open_per_client: int = Field(
        default=4,
        ge=0,
        description="Uploads of one owner (or client address) open at once: one-shot bodies "
        "being received and resumable uploads not ended; 0: no limit.",
    )
    upload_bytes_per_day: int = Field(
        default=4 * 1024**3,
        ge=0,
        description="Bytes one owner (or client address) may upload per UTC day, counted "
        "as declared (Content-Length, Upload-Length) and settled to what arrived; 0: no limit.",
    )
    upload_bytes_in_flight: int = Field(
        default=8 * 1024**3,
        ge=0,
        description="Bytes of every client's request bodies being received at once, as "
        "declared, across the gateway replicas; 0: no limit.",
    )
    upload_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A replica renews its uploads' hold on the limits this often (/3); a "
        "killed replica's uploads stop counting after it.",
    )

    database_schema: str = Field(
        default="gateway",
        description="PostgreSQL schema of the resumable uploads' offsets (`uploads`).",
    )
    upload_expiry_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="A resumable upload idle this long is ended with `upload_expired`.",
    )
    upload_expiry_sweep_seconds: float = Field(default=30.0, gt=0)
    upload_lock_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a new request waits for the append it ends to let go.",
    )
    tus_checksum_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        description="Largest tus PATCH with an Upload-Checksum (it is read whole first).",
    )

    # Quiet bodies and long-open uploads (docs/architecture.md §5.2, §12; issue 19).
    upload_body_idle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A request body (a one-shot upload or a resumable append) that sends "
        "less than upload_body_min_bytes_per_second over this long of waiting for it is "
        "cut with 408 `upload_timeout`: a one-shot upload's job fails `upload_timeout`, an "
        "append keeps what Kafka acknowledged and can be resumed.",
    )
    upload_body_min_bytes_per_second: int = Field(
        default=1024,
        ge=0,
        description="The rate a request body must keep up over each upload_body_idle_seconds "
        "of waiting (0: any byte restarts the wait), so that a byte now and then does not "
        "hold an upload open.",
    )
    upload_max_age_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="A resumable upload ends with `upload_expired` this long after its "
        "creation, whatever its requests do (by default when its access token, which its "
        "upload URL carries, expires: JOB_TOKEN_TTL_SECONDS). Less than "
        "audio_upload_retention_seconds: the uploader reads an open upload's unsaved bytes "
        "back from Kafka.",
    )

    ended_upload_retention_seconds: float = Field(
        default=DAY,
        ge=0,
        description="How long the row of a resumable upload that ended (complete, cancelled, "
        "expired, failed) stays, to answer 410 or replay a completed upload's answer; then a "
        "sweep erases it (by default the life of the token its URL carries, "
        "JOB_TOKEN_TTL_SECONDS: past it no request reaches it). 0: kept.",
    )
    job_tombstone_seconds: float = Field(
        default=14 * DAY,
        gt=0,
        description="How long a deleted job's tombstone (its id and when) stays, so that its "
        "upload resource answers 410 rather than 404: at least as long as the upload URL's "
        "token lives (JOB_TOKEN_TTL_SECONDS); as long as the other services keep theirs.",
    )
    audio_upload_retention_seconds: float = Field(
        default=2 * DAY,
        gt=0,
        description="`retention.ms` of `audio.upload` (and its dead-letter topic) when this "
        "service creates it: longer than upload_max_age_seconds, by as long as the uploader "
        "may be down or behind and still store an upload. Give the uploader the same value "
        "(docs/scaling.md).",
    )

    @model_validator(mode="after")
    def _audio_upload_outlives_an_upload(self) -> "Settings":
        # The uploader reads an open upload's unsaved bytes back from audio.upload
        # (docs/architecture.md §12): they must still be there at the upload's end.
        if self.audio_upload_retention_seconds <= self.upload_max_age_seconds:
            raise ValueError(
                "audio_upload_retention_seconds must exceed upload_max_age_seconds: an open "
                "upload's bytes are read back from audio.upload"
            )
        return self
