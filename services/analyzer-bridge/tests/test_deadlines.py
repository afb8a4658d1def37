"""The sweeper over fakes: jobs past their deadline fail with analysis_timeout, finals
whose events did not get out are republished, orphaned pending jobs are requested."""

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from analyzer_bridge_fakes import JOB, Sleeps, rules, stored

from analyzer_bridge.analysis import Outcome, State
from analyzer_bridge.ports import PublishError
from contracts import ErrorCode

pytestmark = pytest.mark.unit

PAST = datetime.now(UTC) - timedelta(seconds=1)


async def started(job_id: str = JOB, deadline_seconds: float = 600, sleeps=None):
    r = rules(deadline_seconds=deadline_seconds, sleeps=sleeps)
    await r.store.insert_pending(stored(job_id), deadline_seconds)
    return r


async def test_a_job_past_its_deadline_fails_with_analysis_timeout():
    r = await started(deadline_seconds=30)
    await r.store.mark_requested(JOB, 51)
    r.store.put(dataclasses.replace(r.store.rows[JOB], deadline=PAST))
    await r.sweeper.sweep()
    row = r.store.rows[JOB]
    assert row.outcome is not None and row.outcome.error is not None
    assert row.outcome.error.code == ErrorCode.ANALYSIS_TIMEOUT
    assert row.outcome.error.message == "no analysis result within 30 s"
    assert r.events.of(JOB) == [("failed", 100)]


async def test_a_final_left_unpublished_is_republished_once_it_is_old_enough():
    r = await started()
    r.events.down = True
    with pytest.raises(PublishError):
        await r.finisher.finish(JOB, Outcome.failed("invalid_audio", "not audio"))
    r.events.down = False
    await r.sweeper.sweep()
    assert r.events.statuses == [], "a young final may be being published right now"
    old = r.store.rows[JOB].finished_at - timedelta(seconds=10)
    r.store.put(dataclasses.replace(r.store.rows[JOB], finished_at=old))
    await r.sweeper.sweep()
    assert [ce_id for ce_id, _ in r.events.statuses] == [f"{JOB}:status:final"]
    await r.sweeper.sweep()
    assert len(r.events.statuses) == 1


async def test_a_pending_job_nobody_holds_is_requested():
    r = await started()
    await r.sweeper.sweep()
    await r.requester.join()
    assert len(r.server.requests) == 1
    assert r.store.rows[JOB].state is State.REQUESTED


async def test_the_sweeper_goes_on_through_a_database_outage():
    r = await started(sleeps=Sleeps(stop_after=2))
    r.store.put(dataclasses.replace(r.store.rows[JOB], deadline=PAST))
    r.store.down = 1
    with pytest.raises(asyncio.CancelledError):
        await r.sweeper.run()
    assert r.sleeps.delays == [2, 2]
    assert r.store.rows[JOB].state is State.FAILED
