from typing import Self

from pydantic import Field, model_validator

from servicekit.kafka import MAX_MESSAGE_BYTES
from servicekit.settings import CoalescedCommitSettings, DatabaseSettings, S3Settings

DAY = 24 * 3600.0


class Settings(S3Settings, DatabaseSettings, CoalescedCommitSettings):
    http_port: int = 8102
    consumer_group: str = Field(
        default="uploader",
        description="Kafka consumer group on `audio.upload`; `job.deleted` is consumed in "
        "`<group>.deletions`.",
    )
    part_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        description="S3 multipart part size (S3 wants 5 MiB–5 GiB for all but the last).",
    )
    key_prefix: str = "audio/"
    stale_upload_seconds: float = Field(
        default=6 * 3600,
        gt=0,
        description="Multipart uploads older than this that no open job of this process owns "
        "are aborted (longer than any one-shot upload another replica may still be storing); "
        "a checkpointed resumable upload's only past upload_max_age_seconds plus this.",
    )
    stale_sweep_interval_seconds: float = Field(default=600, gt=0)
    upload_max_age_seconds: float = Field(
        default=DAY,
        gt=0,
        description="The gateway's UPLOAD_MAX_AGE_SECONDS (give both the same value): a "
        "resumable upload lives at most this long, so its multipart upload is spared by the "
        "stale sweep until then (and STALE_UPLOAD_SECONDS more).",
    )
    audio_retention_seconds: float = Field(
        default=30 * DAY,
        ge=0,
        description="How long a stored recording stays in S3; then a sweep publishes "
        "`job.deleted` (reason `retention`, erase `audio`) and deletes it. At most the "
        "notifier's JOB_RETENTION_SECONDS. 0: kept until the job is deleted.",
    )
    audio_retention_sweep_seconds: float = Field(
        default=3600,
        gt=0,
        description="How often one replica looks for recordings past their retention (and "
        "forgets old tombstones).",
    )
    job_tombstone_seconds: float = Field(
        default=14 * DAY,
        gt=0,
        description="How long a deleted job's tombstone (its id and when) stays, so that its "
        "`audio.upload` messages replayed or delivered late store nothing: longer than "
        "`audio.upload` keeps them (AUDIO_UPLOAD_RETENTION_SECONDS) and than a consumer "
        "group's committed offsets live (the broker's offsets.retention.minutes, 7 days).",
    )
    audio_upload_retention_seconds: float = Field(
        default=2 * DAY,
        gt=0,
        description="`retention.ms` of `audio.upload` (and its dead-letter topic) when this "
        "service creates it: the longest resumable upload (UPLOAD_MAX_AGE_SECONDS) plus the "
        "longest the uploader may be down or behind and still store it. Give the gateway the "
        "same value (docs/scaling.md).",
    )
    progress_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="At most one `uploading` progress event per job per interval; an "
        "upload that arrives within one interval sends none (it goes to `uploaded`).",
    )
    database_schema: str = Field(
        default="uploader",
        description="PostgreSQL schema of the checkpoints of open resumable uploads.",
    )
    memory_budget_bytes: int = Field(
        default=64 * 1024 * 1024,
        description="The most bytes of open jobs' unfinished parts held in memory, whatever "
        "the number of open uploads: beyond it, the part being filled of the job idle "
        "longest is let go and read back from Kafka when it is needed. At least two parts "
        "and a chunk message.",
    )
    reread_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Bound on reading a part back from Kafka; past it the job fails "
        "`storage_failed`.",
    )

    @property
    def deletion_consumer_group(self) -> str:
        """The group that erases deleted jobs from ``job.deleted``: one of its own, so
        that its offsets are independent of ``audio.upload``'s."""
        return f"{self.consumer_group}.deletions"

    @model_validator(mode="after")
    def _audio_upload_outlives_an_upload(self) -> Self:
        # An open upload's bytes not yet in a saved part are read back from audio.upload
        # (docs/architecture.md §12): they must still be there at its end.
        if self.audio_upload_retention_seconds <= self.upload_max_age_seconds:
            raise ValueError(
                "audio_upload_retention_seconds must exceed upload_max_age_seconds: an open "
                "upload's bytes are read back from audio.upload"
            )
        return self

    @model_validator(mode="after")
    def _tombstones_outlive_the_messages(self) -> Self:
        # A replay of audio.upload must still find the tombstone of a deleted job.
        if self.job_tombstone_seconds <= self.audio_upload_retention_seconds:
            raise ValueError(
                "job_tombstone_seconds must exceed audio_upload_retention_seconds: a deleted "
                "job's messages still in audio.upload would store it again"
            )
        return self

    @model_validator(mode="after")
    def _budget_holds_one_job(self) -> Self:
        # One job holds the part on its way to S3, the next one cut behind it and a
        # chunk: the budget must allow that much, or that job alone would pass it.
        least = 2 * self.part_bytes + MAX_MESSAGE_BYTES
        if self.memory_budget_bytes < least:
            raise ValueError(
                f"memory_budget_bytes must be at least two parts and a chunk ({least})"
            )
        return self
