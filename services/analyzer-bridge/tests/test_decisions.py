from datetime import UTC, datetime

import pytest

from analyzer_bridge.analysis import Analysis, Outcome, State
from analyzer_bridge.decisions import Verdict, job_progress, judge_final, judge_progress, outcome_of
from contracts import AnalysisWebhook, AudioFeatures, JobError

pytestmark = pytest.mark.unit

FEATURES = AudioFeatures(
    duration_seconds=1.0,
    sample_rate=8000,
    channels=1,
    frames=8000,
    rms_dbfs=-20.0,
    peak_dbfs=-6.0,
    silence_ratio=0.0,
)


def row(state: State, progress: int = 51, webhook_id: str | None = None) -> Analysis:
    outcome = None
    if state is State.COMPLETED:
        outcome = Outcome(result=FEATURES)
    elif state is State.FAILED:
        outcome = Outcome.failed("invalid_audio", "not audio")
    return Analysis(
        job_id="j",
        state=state,
        bucket="b",
        key="k",
        size=1,
        sha256="0" * 64,
        content_type="audio/wav",
        filename="",
        deadline=datetime.now(UTC),
        attempts=1,
        progress=progress,
        outcome=outcome,
        final_webhook_id=webhook_id,
        finished_at=None,
        published_at=None,
    )


COMPLETED = AnalysisWebhook(job_id="j", status="completed", result=FEATURES)
FAILED = AnalysisWebhook(job_id="j", status="failed", error=JobError(code="x", message="y"))


def test_progress_maps_into_the_analyzing_span():
    assert job_progress(0) == 51
    assert job_progress(50) == 75
    assert job_progress(100) == 99


@pytest.mark.parametrize("state", [State.PENDING, State.REQUESTED])
def test_higher_progress_on_an_open_job_is_published(state):
    assert judge_progress(row(state, progress=51), 10) is Verdict.PROGRESS


def test_lower_or_equal_progress_is_ignored():
    assert judge_progress(row(State.REQUESTED, progress=75), 50) is Verdict.IGNORE
    assert judge_progress(row(State.REQUESTED, progress=75), 40) is Verdict.IGNORE


def test_progress_after_the_final_state_is_ignored():
    assert judge_progress(row(State.COMPLETED), 99) is Verdict.IGNORE


def final(row: Analysis, hook: AnalysisWebhook, webhook_id: str | None) -> Verdict:
    outcome = outcome_of(hook)
    assert outcome is not None
    return judge_final(row, outcome.state, webhook_id)


def test_same_final_again_is_a_replay():
    assert final(row(State.COMPLETED), COMPLETED, None) is Verdict.REPLAY
    assert final(row(State.FAILED), FAILED, "other-id") is Verdict.REPLAY


def test_different_final_is_a_conflict():
    assert final(row(State.COMPLETED), FAILED, None) is Verdict.CONFLICT
    assert final(row(State.FAILED), COMPLETED, "new-id") is Verdict.CONFLICT


def test_same_webhook_id_as_the_accepted_final_is_a_replay():
    assert final(row(State.COMPLETED, webhook_id="msg_1"), FAILED, "msg_1") is Verdict.REPLAY


def failed(code: str) -> AnalysisWebhook:
    return AnalysisWebhook(job_id="j", status="failed", error=JobError(code=code, message="why"))


@pytest.mark.parametrize(
    "code", ["invalid_audio", "checksum_mismatch", "audio_too_long", "analysis_failed"]
)
def test_a_code_the_server_may_report_becomes_the_jobs_as_it_came(code):
    outcome = outcome_of(failed(code))
    assert outcome is not None and outcome.error == JobError(code=code, message="why")


@pytest.mark.parametrize("code", ["unsupported_codec", "analysis_timeout", "analysis_rejected"])
def test_any_other_server_code_fails_the_job_with_analysis_failed_naming_it(code):
    # The job's code stays one of contracts.ErrorCode; the bridge's own verdicts on the
    # server (timeout, rejection) are not the server's to give.
    outcome = outcome_of(failed(code))
    assert outcome is not None
    assert outcome.error == JobError(code="analysis_failed", message=f"{code}: why")
