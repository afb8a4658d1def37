"""What a webhook does to a job, as pure functions of the job's row and the call."""

from enum import Enum

from analyzer_bridge.analysis import Analysis, Outcome, State
from contracts import AnalysisWebhook, JobStatus, WebhookStatus, progress_after, stage_progress


class Verdict(Enum):
    PROGRESS = "progress"
    """Publish the higher progress."""
    FINALIZE = "finalize"
    """Try to make the job final with this outcome."""
    IGNORE = "ignore"
    """Late or lower progress: answer 200, change nothing."""
    REPLAY = "replay"
    """The final outcome the job already has: answer 200, publish nothing new."""
    CONFLICT = "conflict"
    """A different final outcome than the job's: answer 409, change nothing."""


def job_progress(webhook_progress: int) -> int:
    """The job's progress (0-100 over the whole lifecycle) for the server's 0-100."""
    return stage_progress(JobStatus.ANALYZING, webhook_progress / 100)


def outcome_of(hook: AnalysisWebhook) -> Outcome | None:
    if hook.status is WebhookStatus.COMPLETED:
        return Outcome(result=hook.result)
    if hook.status is WebhookStatus.FAILED:
        return Outcome(error=hook.error)
    return None


def judge_final(row: Analysis, state: State, webhook_id: str | None) -> Verdict:
    """A final call for a job that is already final."""
    if webhook_id is not None and webhook_id == row.final_webhook_id:
        return Verdict.REPLAY
    return Verdict.REPLAY if state is row.state else Verdict.CONFLICT


def judge(row: Analysis, hook: AnalysisWebhook, webhook_id: str | None) -> Verdict:
    outcome = outcome_of(hook)
    if row.state.is_final:
        if outcome is None:
            return Verdict.IGNORE
        return judge_final(row, outcome.state, webhook_id)
    if outcome is not None:
        return Verdict.FINALIZE
    assert hook.progress is not None
    rises = progress_after(row.progress, job_progress(hook.progress)) != row.progress
    return Verdict.PROGRESS if rises else Verdict.IGNORE
