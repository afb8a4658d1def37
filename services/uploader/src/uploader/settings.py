from pydantic import Field

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
