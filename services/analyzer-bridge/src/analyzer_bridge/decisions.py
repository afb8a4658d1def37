"""What a webhook does to a job, as pure functions of the job's row and the call."""

from enum import Enum
from typing import Final

from analyzer_bridge.analysis import Analysis, Outcome, State
from contracts import (
    AnalysisWebhook,
    ErrorCode,
    JobError,
    JobStatus,
    WebhookStatus,
    progress_after,
    stage_progress,
)

SERVER_ERROR_CODES: Final = frozenset(
    {
        ErrorCode.INVALID_AUDIO,
        ErrorCode.CHECKSUM_MISMATCH,
        ErrorCode.AUDIO_TOO_LONG,
        ErrorCode.ANALYSIS_FAILED,
    }
)
"""The codes an analysis server reports in a ``failed`` webhook that a job keeps as
they came (docs/architecture.md §7). The other job codes are the bridge's own verdicts
on the server (``analysis_rejected``, ``analysis_timeout``, ...) or other stages'."""


class Verdict(Enum):
    PROGRESS = "progress"
    """Publish the higher progress."""
    IGNORE = "ignore"
    """Late or lower progress: answer 200, change nothing."""
    REPLAY = "replay"
    """The final outcome the job already has: answer 200, publish nothing new."""
    CONFLICT = "conflict"
    """A different final outcome than the job's: answer 409, change nothing."""


def job_progress(webhook_progress: int) -> int:
    """The job's progress (0-100 over the whole lifecycle) for the server's 0-100."""
    return stage_progress(JobStatus.ANALYZING, webhook_progress / 100)


def job_error(error: JobError) -> JobError:
    """The job's error for the analysis server's: a code of :data:`SERVER_ERROR_CODES`
    is kept; any other becomes ``analysis_failed`` with the server's code leading its
    message, so that a job's ``error.code`` is always one of ``contracts.ErrorCode``."""
    if error.code in SERVER_ERROR_CODES:
        return error
    return JobError(code=ErrorCode.ANALYSIS_FAILED.value, message=f"{error.code}: {error.message}")


def outcome_of(hook: AnalysisWebhook) -> Outcome | None:
    if hook.status is WebhookStatus.COMPLETED:
        return Outcome(result=hook.result)
    if hook.status is WebhookStatus.FAILED:
        assert hook.error is not None  # the model requires it
        return Outcome(error=job_error(hook.error))
    return None


def judge_final(row: Analysis, state: State, webhook_id: str | None) -> Verdict:
    """A final call for a job that is already final (a final call for an open job goes
    straight to its conditional claim, analyzer_bridge.finishing)."""
    if webhook_id is not None and webhook_id == row.final_webhook_id:
        return Verdict.REPLAY
    return Verdict.REPLAY if state is row.state else Verdict.CONFLICT


def judge_progress(row: Analysis, progress: int) -> Verdict:
    """A progress call (the server's 0-100): published if the job is open and it rises."""
    if row.state.is_final:
        return Verdict.IGNORE
    rises = progress_after(row.progress, job_progress(progress)) != row.progress
    return Verdict.PROGRESS if rises else Verdict.IGNORE
