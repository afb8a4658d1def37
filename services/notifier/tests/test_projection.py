import uuid
from datetime import UTC, datetime

import pytest

from contracts import JobError, JobStatus, JobStatusChanged
from notifier.projection import JobSnapshot, Outcome, decide

pytestmark = pytest.mark.unit

JOB = str(uuid.uuid4())


def event(status: JobStatus, progress: int, detail: str | None = None, **extra) -> JobStatusChanged:
    return JobStatusChanged(job_id=JOB, status=status, progress=progress, detail=detail, **extra)


def state(status: JobStatus, progress: int, event_id: int = 1) -> JobSnapshot:
    return decide(None, event(status, progress), event_id=event_id).snapshot


def test_first_event_of_a_job_is_applied():
    decision = decide(None, event(JobStatus.ACCEPTED, 0), event_id=1)
    assert decision.outcome is Outcome.APPLIED
    assert decision.snapshot.event_id == 1
    assert decision.snapshot.status is JobStatus.ACCEPTED


def test_forward_transition_is_applied():
    decision = decide(state(JobStatus.UPLOADING, 20), event(JobStatus.UPLOADED, 50), event_id=2)
    assert decision.outcome is Outcome.APPLIED
    assert decision.snapshot.progress == 50


def test_same_status_with_more_progress_is_applied():
    decision = decide(state(JobStatus.UPLOADING, 20), event(JobStatus.UPLOADING, 30), event_id=2)
    assert decision.outcome is Outcome.APPLIED


def test_duplicate_ce_id_is_dropped_without_a_record():
    decision = decide(
        state(JobStatus.UPLOADING, 20), event(JobStatus.UPLOADED, 50), event_id=2, duplicate=True
    )
    assert decision.outcome is Outcome.DUPLICATE


def test_backwards_transition_is_ignored():
    decision = decide(state(JobStatus.ANALYZING, 60), event(JobStatus.UPLOADING, 70), event_id=2)
    assert decision.outcome is Outcome.IGNORED
    assert "back" in (decision.reason or "")


@pytest.mark.parametrize("final", [JobStatus.COMPLETED, JobStatus.FAILED])
@pytest.mark.parametrize("late", list(JobStatus))
def test_final_state_never_changes(final, late):
    decision = decide(state(final, 100), event(late, 100, detail="late"), event_id=2)
    assert decision.outcome is Outcome.IGNORED


def test_failed_after_completed_is_ignored():
    failed = event(JobStatus.FAILED, 100, error=JobError(code="analysis_timeout", message="late"))
    decision = decide(state(JobStatus.COMPLETED, 100), failed, event_id=2)
    assert decision.outcome is Outcome.IGNORED


def test_progress_never_decreases():
    decision = decide(state(JobStatus.UPLOADING, 40), event(JobStatus.UPLOADED, 10), event_id=2)
    assert decision.outcome is Outcome.APPLIED
    assert decision.snapshot.progress == 40


def test_event_that_changes_nothing_is_ignored():
    decision = decide(state(JobStatus.UPLOADING, 40), event(JobStatus.UPLOADING, 30), event_id=2)
    assert decision.outcome is Outcome.IGNORED


def test_failed_carries_its_error_in_the_snapshot():
    failed = event(JobStatus.FAILED, 100, error=JobError(code="invalid_audio", message="no"))
    snapshot = decide(state(JobStatus.UPLOADING, 10), failed, event_id=2).snapshot
    assert snapshot.public()["error"] == {"code": "invalid_audio", "message": "no"}
    assert snapshot.is_final


def test_naive_event_time_is_taken_as_utc():
    naive = event(JobStatus.ACCEPTED, 0, time=datetime(2026, 1, 1, 12, 0))
    snapshot = decide(None, naive, event_id=1).snapshot
    assert snapshot.time == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_an_event_of_a_deleted_job_is_written_nowhere():
    decision = decide(None, event(JobStatus.ACCEPTED, 0), event_id=1, deleted=True)
    assert decision.outcome is Outcome.DELETED
    assert not decision.outcome.writes
