"""The job lifecycle (docs/architecture.md §3) and the stable error codes of failed jobs."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(StrEnum):
    """``accepted → uploading → uploaded → analyzing → completed | failed``."""

    ACCEPTED = "accepted"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    ANALYZING = "analyzing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)

    @property
    def rank(self) -> int:
        """Position in the lifecycle; a transition never lowers it."""
        return _RANK[self]


_RANK = {
    JobStatus.ACCEPTED: 0,
    JobStatus.UPLOADING: 1,
    JobStatus.UPLOADED: 2,
    JobStatus.ANALYZING: 3,
    JobStatus.COMPLETED: 4,
    JobStatus.FAILED: 4,
}


class ErrorCode(StrEnum):
    """Machine-readable reasons a job failed. New codes may be added; readers must
    accept codes they do not know."""

    INVALID_AUDIO = "invalid_audio"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    UPLOAD_ABORTED = "upload_aborted"
    STORAGE_FAILED = "storage_failed"
    ANALYSIS_REJECTED = "analysis_rejected"
    ANALYSIS_FAILED = "analysis_failed"
    ANALYSIS_TIMEOUT = "analysis_timeout"
    ANALYSIS_INVALID_RESULT = "analysis_invalid_result"
    UPLOAD_EXPIRED = "upload_expired"
    AUDIO_TOO_LONG = "audio_too_long"
    """The audio lasts longer than the analysis server analyses (its own limit)."""
    UPLOAD_TIMEOUT = "upload_timeout"
    """The upload's request body went quiet past the gateway's limit (UPLOAD_BODY_*)."""


class JobError(BaseModel):
    """Why a job failed."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(
        description="Stable machine-readable code, one of "
        + ", ".join(f"`{c.value}`" for c in ErrorCode)
        + " (more may be added).",
        examples=["analysis_timeout"],
    )
    message: str = Field(description="Human-readable explanation.")


PROGRESS_SPAN: dict[JobStatus, tuple[int, int]] = {
    JobStatus.ACCEPTED: (0, 0),
    JobStatus.UPLOADING: (1, 45),
    JobStatus.UPLOADED: (50, 50),
    JobStatus.ANALYZING: (51, 99),
    JobStatus.COMPLETED: (100, 100),
    JobStatus.FAILED: (100, 100),
}
"""``progress`` is the whole job's progress: each stage owns a span of 0–100, so the
number only grows as the job moves forward."""


def stage_progress(status: JobStatus, fraction: float = 0.0) -> int:
    """The job progress for being ``fraction`` (0..1) through ``status``'s stage."""
    low, high = PROGRESS_SPAN[status]
    return low + round((high - low) * min(max(fraction, 0.0), 1.0))


def progress_after(current: int | None, reported: int) -> int:
    """The job's progress once an event reporting ``reported`` is applied to a job at
    ``current`` (None before its first event): progress never decreases
    (docs/architecture.md §3), so a lower report leaves it where it was. The one place
    this rule is written; a producer that only publishes a rise compares with it."""
    return reported if current is None else max(current, reported)
