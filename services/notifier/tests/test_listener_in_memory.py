"""The listener's rules with fakes: what it fans out, and that a lost feed makes the
streams re-read the history. The real LISTEN connection is in test_listener.py."""

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import JobStatus, JobStatusChanged
from notifier.fanout import FanOut
from notifier.listener import Listener
from notifier.projection import JobSnapshot
from tests.support.waiting import eventually

sys.path.insert(0, str(Path(__file__).parent))
from notifier_fakes import FakeFeed, FakeStore, Waiting

pytestmark = pytest.mark.unit

WATCHED, OTHER = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
async def rig() -> AsyncIterator[tuple[FakeStore, FakeFeed, FanOut, Listener]]:
    store, feed, fanout = FakeStore(), FakeFeed(), FanOut()
    listener = Listener(feed, store, fanout, reconnect_seconds=0)
    running = asyncio.create_task(listener.run())
    await eventually(lambda: listener.connected, what="the listener to listen")
    yield store, feed, fanout, listener
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_an_applied_event_reaches_the_streams_of_its_job_only(rig) -> None:
    store, feed, fanout, _ = rig
    for job in (WATCHED, OTHER):
        accepted = JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0)
        await store.record_batch([(f"{job}:a", accepted)])
    with fanout.subscribe(Waiting(WATCHED)) as live, fanout.subscribe(Waiting(WATCHED)) as second:
        assert feed.notify(OTHER, 1) and feed.notify(WATCHED, 1)
        for subscription in (live, second):
            snapshot = await subscription.next(10)
            assert snapshot is not None
            assert (snapshot.job_id, snapshot.event_id) == (WATCHED, 1)
            assert subscription.pending() == 0


async def test_after_the_feed_is_lost_it_reconnects_and_every_stream_rereads(rig) -> None:
    _, feed, fanout, listener = rig
    with fanout.subscribe(Waiting(WATCHED)) as live:
        assert not live.lagged
        feed.lose()
        await eventually(lambda: feed.sessions == 2 and listener.connected, what="a reconnect")
        assert live.lagged, "events committed while nobody listened are read from the history"


async def test_an_erased_job_ends_its_streams_only(rig) -> None:
    _, feed, fanout, _ = rig
    with fanout.subscribe(Waiting(WATCHED)) as live, fanout.subscribe(Waiting(OTHER)) as other:
        assert feed.deleted(WATCHED)
        assert live.closed
        assert not other.closed


def carried(job_id: str, event_id: int) -> JobSnapshot:
    """An event as a notification carries it."""
    return JobSnapshot(
        job_id=job_id, event_id=event_id, status=JobStatus.UPLOADED, progress=50,
        detail=None, result=None, error=None, time=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


async def test_an_event_the_notification_carries_is_fanned_out_without_a_read(rig) -> None:
    store, feed, fanout, _ = rig
    store.down = True  # a read would fail: nothing is read
    with fanout.subscribe(Waiting(WATCHED)) as live:
        assert feed.notify(WATCHED, 1, carried(WATCHED, 1))
        snapshot = await live.next(10)
        assert snapshot == carried(WATCHED, 1) and not live.lagged


async def test_a_failed_read_holds_back_the_later_events_of_its_job_only(rig) -> None:
    store, feed, fanout, _ = rig
    store.down = True
    with fanout.subscribe(Waiting(WATCHED)) as live, fanout.subscribe(Waiting(OTHER)) as other:
        # One batch: the first is not carried and cannot be read; the second of the same
        # job must not go ahead of it; the other job's is delivered.
        assert feed.notify(WATCHED, 1)
        assert feed.notify(WATCHED, 2, carried(WATCHED, 2))
        assert feed.notify(OTHER, 1, carried(OTHER, 1))
        assert await other.next(10) == carried(OTHER, 1)
        await eventually(lambda: live.lagged, what="the stream to re-read its history")
        assert live.pending() == 0
