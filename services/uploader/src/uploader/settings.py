from typing import Self

from pydantic import Field, model_validator

from servicekit.kafka import MAX_MESSAGE_BYTES
from servicekit.settings import DatabaseSettings, S3Settings


class Settings(S3Settings, DatabaseSettings):
    http_port: int = 8102
    consumer_group: str = "uploader"
    part_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        description="S3 multipart part size (S3 wants 5 MiB–5 GiB for all but the last).",
    )
    key_prefix: str = "audio/"
    stale_upload_seconds: float = Field(
        default=6 * 3600,
        description="Multipart uploads older than this that no job owns are aborted.",
    )
    stale_sweep_interval_seconds: float = 600
    progress_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="At most one `uploading` progress event per job per interval.",
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
