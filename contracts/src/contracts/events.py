"""Events on the Kafka topics (docs/architecture.md §4).

Each model is the JSON value of one CloudEvents type; :data:`EVENT_TYPES` maps the
``ce_type`` header to its model. Upload chunks are the one exception: their value is
raw bytes, their index is the ``ce_sequence`` header.

Models only grow: fields are added, never renamed or removed, and readers ignore
fields they do not know (pydantic's default), so an old reader accepts a new payload.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from contracts.analysis import AudioFeatures
from contracts.jobs import ErrorCode, JobError, JobStatus, stage_progress

JobId = str


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: JobId = Field(description="The job (a UUID); also the Kafka key.")


# --- audio.upload ------------------------------------------------------------------


class UploadStarted(Event):
    """A client began an upload; chunks follow in order on the same partition."""

    token_id: str = Field(description="The seed's `token_id` path segment.")
    filename: str = Field(description="File name the client sent, sanitised.")
    content_type: str = Field(description="Media type detected from the file's bytes.")
    owner: str | None = Field(default=None, description="JWT subject of the uploader.")
    chunk_size: int = Field(gt=0, description="Size of every chunk but the last, bytes.")
    size_hint: int | None = Field(
        default=None,
        description="Expected size from the request's Content-Length (an upper bound).",
    )
    resumable: bool = Field(
        default=False,
        description="Created by a resumable protocol (IETF draft or tus): its chunks carry "
        "`ce_uploadoffset` and the uploader keeps checkpoints of it in PostgreSQL. A "
        "one-shot upload has no checkpoints.",
    )
    started_at: datetime = Field(default_factory=_now)


class UploadFinished(Event):
    """Every chunk was sent; the uploader verifies the totals before storing."""

    chunk_count: int = Field(ge=1, description="Number of chunk messages sent.")
    size: int = Field(ge=1, description="Total bytes over all chunks.")
    sha256: str = Field(description="Hex sha256 over all chunks in order.")


class UploadAborted(Event):
    """The upload will not finish; the uploader drops what it holds for the job."""

    reason: str = Field(description="Why, for logs.")


# --- audio.stored ------------------------------------------------------------------


class AudioStored(Event):
    """The audio is durably in S3, verified against the gateway's size and sha256."""

    bucket: str
    key: str
    size: int = Field(ge=1)
    sha256: str = Field(description="Hex sha256 of the object's bytes.")
    content_type: str
    filename: str = ""
    stored_at: datetime = Field(default_factory=_now)


# --- analysis.result ---------------------------------------------------------------


class AnalysisCompleted(Event):
    """The analysis server returned features for the job's audio."""

    result: AudioFeatures
    completed_at: datetime = Field(default_factory=_now)


class AnalysisFailed(Event):
    """The analysis did not produce a result: rejected, failed or timed out."""

    error: JobError
    failed_at: datetime = Field(default_factory=_now)


# --- job.status --------------------------------------------------------------------


class JobStatusChanged(Event):
    """A job moved through its lifecycle. Final states carry `result` or `error`."""

    status: JobStatus
    progress: int = Field(ge=0, le=100, description="0–100; never decreases for a job.")
    detail: str | None = Field(default=None, description="Short human-readable note.")
    result: AudioFeatures | None = Field(default=None, description="Set on `completed`.")
    error: JobError | None = Field(default=None, description="Set on `failed`.")
    time: datetime = Field(default_factory=_now)
    owner: str | None = Field(
        default=None,
        description="Set on `accepted` when uploads are authenticated: the JWT subject that "
        "owns the job (an owner lists and deletes its jobs).",
    )

    @classmethod
    def failed(cls, job_id: JobId, code: ErrorCode, message: str) -> "JobStatusChanged":
        """The final ``failed`` event with its error (docs/architecture.md §3)."""
        return cls(
            job_id=job_id,
            status=JobStatus.FAILED,
            progress=stage_progress(JobStatus.FAILED),
            error=JobError(code=code.value, message=message),
        )


# --- job.deleted -------------------------------------------------------------------


class DeletionReason(StrEnum):
    REQUESTED = "requested"
    """The job's holder or owner asked (``DELETE /jobs/{job_id}``)."""
    RETENTION = "retention"
    """It outlived what the operator keeps (a retention setting)."""


class Erase(StrEnum):
    JOB = "job"
    """Everything about the job: its audio, state, history and result."""
    AUDIO = "audio"
    """The recording only (the audio's retention ended; the job's result stays)."""


class JobDeleted(Event):
    """Erase what you hold of this job: every service does, and so must every
    subscriber that copied something of it (its audio, its result, its events). Carries
    no personal data. Delivered at least once; erasing twice is harmless."""

    reason: DeletionReason = Field(description="Why: asked for, or retention.")
    erase: Erase = Field(
        default=Erase.JOB,
        description="`job`: everything about the job; `audio`: only the recording.",
    )
    time: datetime = Field(default_factory=_now)

    @property
    def ce_id(self) -> str:
        """Its idempotency key, the same for every announcement of one erasure (a
        repeated request, a sweep after a requested deletion) so that subscribers drop
        the repeats; an ``audio`` erasure has another, so it never hides a later ``job``
        one."""
        return f"{self.job_id}:deleted:{self.erase}"


class CeType:
    """Values of the ``ce_type`` header."""

    UPLOAD_STARTED: Final = "audiopipe.upload.started"
    UPLOAD_CHUNK: Final = "audiopipe.upload.chunk"
    UPLOAD_FINISHED: Final = "audiopipe.upload.finished"
    UPLOAD_ABORTED: Final = "audiopipe.upload.aborted"
    AUDIO_STORED: Final = "audiopipe.audio.stored"
    ANALYSIS_COMPLETED: Final = "audiopipe.analysis.completed"
    ANALYSIS_FAILED: Final = "audiopipe.analysis.failed"
    JOB_STATUS_CHANGED: Final = "audiopipe.job.status_changed"
    JOB_DELETED: Final = "audiopipe.job.deleted"


EVENT_TYPES: Final[dict[str, type[Event]]] = {
    CeType.UPLOAD_STARTED: UploadStarted,
    CeType.UPLOAD_FINISHED: UploadFinished,
    CeType.UPLOAD_ABORTED: UploadAborted,
    CeType.AUDIO_STORED: AudioStored,
    CeType.ANALYSIS_COMPLETED: AnalysisCompleted,
    CeType.ANALYSIS_FAILED: AnalysisFailed,
    CeType.JOB_STATUS_CHANGED: JobStatusChanged,
    CeType.JOB_DELETED: JobDeleted,
}

CE_TYPE_OF: Final[dict[type[Event], str]] = {model: t for t, model in EVENT_TYPES.items()}
