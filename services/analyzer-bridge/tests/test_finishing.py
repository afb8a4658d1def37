"""The Finisher over fakes: one winner among racing finals, its events with stable
ids, and the republish of a final whose events did not get out."""

import asyncio

import pytest
from analyzer_bridge_fakes import JOB, Rules, rules, stored

from analyzer_bridge.analysis import Outcome, State
from analyzer_bridge.finishing import ANALYZING_START, Finish, Finisher
from analyzer_bridge.ports import PublishError
from contracts import AnalysisCompleted, AudioFeatures
from tests.support.waiting import eventually

pytestmark = pytest.mark.unit

COMPLETED = Outcome(result=AudioFeatures(duration_seconds=1.0, sample_rate=8000))
FAILED = Outcome.failed("invalid_audio", "not audio")


async def started():
    r = rules()
    await r.store.insert_pending(stored(), 600)
    return r


async def test_the_first_final_wins_and_publishes_the_result_and_the_final_status():
    r = await started()
    assert await r.finisher.finish(JOB, COMPLETED, "msg_1") is Finish.WON
    ((result_id, result),) = r.events.results
    assert result_id == f"{JOB}:analysis-result"
    assert isinstance(result, AnalysisCompleted)
    assert result.result == COMPLETED.result
    ((status_id, status),) = r.events.statuses
    assert status_id == f"{JOB}:status:final"
    assert (status.status.value, status.progress, status.result) == (
        "completed",
        100,
        COMPLETED.result,
    )
    row = r.store.rows[JOB]
    assert row.state is State.COMPLETED and row.final_webhook_id == "msg_1"
    assert row.published_at is not None


async def test_the_same_final_again_is_a_replay_and_publishes_nothing():
    r = await started()
    await r.finisher.finish(JOB, FAILED)
    assert await r.finisher.finish(JOB, FAILED) is Finish.REPLAY
    assert len(r.events.results) == 1 and len(r.events.statuses) == 1


async def test_a_different_final_is_a_conflict_and_changes_nothing():
    r = await started()
    await r.finisher.finish(JOB, COMPLETED)
    assert await r.finisher.finish(JOB, FAILED) is Finish.CONFLICT
    assert r.store.rows[JOB].state is State.COMPLETED
    assert len(r.events.statuses) == 1


async def test_a_repeat_of_the_winning_webhook_is_a_replay_whatever_it_says():
    r = await started()
    await r.finisher.finish(JOB, COMPLETED, "msg_1")
    assert await r.finisher.finish(JOB, FAILED, "msg_1") is Finish.REPLAY


async def test_an_unknown_job_is_unknown():
    r = rules()
    assert await r.finisher.finish("no-such-job", FAILED) is Finish.UNKNOWN
    assert r.events.statuses == []


async def test_a_final_whose_publish_failed_stays_unpublished_and_is_republished_with_its_ids():
    r = await started()
    r.events.down = True
    with pytest.raises(PublishError):
        await r.finisher.finish(JOB, FAILED)
    row = r.store.rows[JOB]
    assert row.state is State.FAILED and row.published_at is None
    r.events.down = False
    await r.finisher.publish_final(row)
    assert [ce_id for ce_id, _ in r.events.results] == [f"{JOB}:analysis-result"]
    assert [ce_id for ce_id, _ in r.events.statuses] == [f"{JOB}:status:final"]
    assert r.store.rows[JOB].published_at is not None


async def requested(notice_seconds: float) -> tuple[Rules, Finisher]:
    """A job the analysis server accepted, with a Finisher whose `analyzing` waits."""
    r = await started()
    await r.store.mark_requested(JOB, ANALYZING_START)
    finisher = Finisher(r.store, r.events, analyzing_notice_seconds=notice_seconds)
    await finisher.requested(JOB)
    return r, finisher


async def test_analyzing_is_published_once_the_notice_delay_passed_with_no_news():
    r, _finisher = await requested(0.05)
    assert r.events.of(JOB) == []  # not yet
    await eventually(lambda: r.events.of(JOB), what="the analyzing notice")
    assert r.events.of(JOB) == [("analyzing", ANALYZING_START)]


async def test_a_job_that_ends_within_the_notice_delay_goes_without_analyzing():
    r, finisher = await requested(3600)
    assert await finisher.finish(JOB, COMPLETED, "msg_1") is Finish.WON
    await asyncio.wait_for(finisher.join(), 5)  # the notice was called off, not left waiting
    assert [status for status, _ in r.events.of(JOB)] == ["completed"]


async def test_progress_within_the_notice_delay_calls_the_notice_off():
    r, finisher = await requested(3600)
    await finisher.publish_analyzing(JOB, 75, "analyzing")
    await asyncio.wait_for(finisher.join(), 5)
    assert r.events.of(JOB) == [("analyzing", 75)]


async def test_progress_another_replica_published_is_seen_in_the_row():
    r, finisher = await requested(0.05)
    assert await r.store.raise_progress(JOB, 75)  # published elsewhere
    await finisher.join()
    assert r.events.of(JOB) == []
