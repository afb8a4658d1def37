import asyncio
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import JobStatus
from notifier import sse
from notifier.fanout import FanOut
from notifier.ports import JobGone
from notifier.projection import JobSnapshot
from notifier.slots import StreamSlots
from notifier.streams import LIFETIME_SPREAD, Heartbeats, Stream, start
from servicekit.http import DependencyUnavailable

sys.path.insert(0, str(Path(__file__).parent))
from notifier_testing import MemoryResponse, job_stream

from tests.support.waiting import eventually

pytestmark = pytest.mark.unit

JOB = str(uuid.uuid4())
TIME = datetime(2026, 1, 1, tzinfo=UTC)
LIFETIME_OVER = sse.comment("this stream reached its maximum lifetime; reconnect to resume")
STATUSES = [JobStatus.ACCEPTED, JobStatus.UPLOADING, JobStatus.UPLOADED, JobStatus.COMPLETED]


def snapshot(event_id: int) -> JobSnapshot:
    status = STATUSES[event_id - 1]
    return JobSnapshot(JOB, event_id, status, event_id * 10, None, None, None, TIME)


class FakeHistory:
    """The projection's read side; ``on_read`` runs as a read happens, to interleave
    live events with it."""

    def __init__(self, events: list[JobSnapshot], on_read=lambda: None) -> None:
        self.events = events
        self.on_read = on_read

    async def current(self, job_id):
        self.on_read()
        return self.events[-1] if self.events else None

    async def applied_after(self, job_id, event_id):
        self.on_read()
        return [e for e in self.events if e.event_id > event_id]


async def ids(stream, count: int) -> list[str]:
    seen: list[str] = []
    async for chunk in stream:
        seen.append(chunk)
        if len(seen) == count:
            break
    return seen


def stream_of(history, fanout, after=None, heartbeat=5.0, lifetime=3600.0):
    return job_stream(
        history,
        fanout,
        JOB,
        after=after,
        heartbeat_seconds=heartbeat,
        retry_ms=2000,
        lifetime_seconds=lifetime,
    )


async def test_live_event_racing_the_history_read_is_sent_once():
    fanout = FanOut()
    events = [snapshot(1), snapshot(2)]
    # Event 2 is projected while the stream reads the history: it reaches both.
    history = FakeHistory(events, on_read=lambda: fanout.publish(snapshot(2)))
    stream = stream_of(history, fanout, after=0)
    chunks = await ids(stream, 3)
    fanout.publish(snapshot(3))
    chunks += await ids(stream, 1)
    await stream.aclose()
    assert chunks == [
        sse.retry(2000),
        snapshot(1).sse_event,
        snapshot(2).sse_event,
        snapshot(3).sse_event,
    ]


async def test_stream_ends_after_the_final_event():
    fanout = FanOut()
    stream = stream_of(FakeHistory([snapshot(3)]), fanout)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(3).sse_event]
    fanout.publish(snapshot(4))
    assert [chunk async for chunk in stream] == [snapshot(4).sse_event]
    assert fanout.subscriber_count() == 0


async def test_idle_stream_sends_heartbeats_without_reading_the_history_again():
    reads: list[None] = []
    history = FakeHistory([], on_read=lambda: reads.append(None))
    stream = stream_of(history, FanOut(), heartbeat=0.01)
    assert await ids(stream, 3) == [sse.retry(2000), sse.KEEP_ALIVE, sse.KEEP_ALIVE]
    assert len(reads) == 1  # the initial read only: live events are pushed
    await stream.aclose()


async def test_resync_makes_a_waiting_stream_catch_up_from_the_history():
    fanout = FanOut()
    events = [snapshot(1)]
    stream = stream_of(FakeHistory(events), fanout)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(1).sse_event]
    # Committed while live delivery was down (the LISTEN connection dropped).
    events += [snapshot(2), snapshot(3)]
    reading = asyncio.create_task(ids(stream, 2))
    await asyncio.sleep(0)
    fanout.resync_all()
    assert await asyncio.wait_for(reading, 5) == [
        snapshot(2).sse_event,
        snapshot(3).sse_event,
    ]
    await stream.aclose()


async def test_closing_the_fanout_ends_a_waiting_stream_and_refuses_later_ones():
    fanout = FanOut()
    stream = stream_of(FakeHistory([snapshot(1)]), fanout)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(1).sse_event]
    reading = asyncio.create_task(ids(stream, 1))
    await asyncio.sleep(0)
    fanout.close_all()
    assert await asyncio.wait_for(reading, 5) == []
    later = stream_of(FakeHistory([snapshot(1)]), fanout)
    assert [chunk async for chunk in later] == [
        sse.retry(2000),
        snapshot(1).sse_event,
    ]
    assert fanout.subscriber_count() == 0


async def test_lagged_stream_re_reads_the_history_without_duplicates():
    fanout = FanOut(queue_size=1)
    events = [snapshot(1)]
    stream = stream_of(FakeHistory(events), fanout)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(1).sse_event]
    events += [snapshot(2), snapshot(3)]
    fanout.publish(snapshot(2))
    fanout.publish(snapshot(3))  # the queue is full: the stream is marked lagged
    chunks = await ids(stream, 2)
    assert chunks == [snapshot(2).sse_event, snapshot(3).sse_event]
    await stream.aclose()


async def test_an_id_beyond_the_latest_starts_from_the_current_state_and_goes_on():
    fanout = FanOut()
    stream = stream_of(FakeHistory([snapshot(1), snapshot(2)]), fanout, after=1000)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(2).sse_event]
    fanout.publish(snapshot(3))
    fanout.publish(snapshot(4))
    assert [chunk async for chunk in stream] == [
        snapshot(3).sse_event,
        snapshot(4).sse_event,
    ]


async def test_an_id_for_a_job_without_events_waits_for_its_first_event():
    fanout = FanOut()
    stream = stream_of(FakeHistory([]), fanout, after=5)
    assert await ids(stream, 1) == [sse.retry(2000)]
    fanout.publish(snapshot(1))
    assert await ids(stream, 1) == [snapshot(1).sse_event]
    await stream.aclose()


async def test_the_final_event_seen_means_nothing_is_left_and_a_later_one_is_not():
    final = FakeHistory([snapshot(3), snapshot(4)])
    assert (await start(final, JOB, 4)).seen_final
    assert not (await start(final, JOB, 3)).seen_final
    assert not (await start(final, JOB, 1000)).seen_final  # a foreign id: sent again


class GoneHistory(FakeHistory):
    """The database went away after the stream started."""

    async def applied_after(self, job_id, event_id):
        raise DependencyUnavailable("postgresql")


async def test_a_database_outage_mid_stream_ends_it_cleanly_with_a_comment():
    fanout = FanOut()
    stream = stream_of(GoneHistory([snapshot(1)]), fanout)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(1).sse_event]
    fanout.resync_all()  # the stream must re-read the history, which is gone
    rest = [chunk async for chunk in stream]
    assert len(rest) == 1 and rest[0].startswith(": ")
    assert fanout.subscriber_count() == 0


# --- the maximum lifetime (issue 19 point 4) ---------------------------------------------


async def test_an_idle_stream_past_its_lifetime_ends_with_a_comment_at_its_heartbeat():
    fanout = FanOut()
    stream = stream_of(FakeHistory([snapshot(1)]), fanout, heartbeat=0.02, lifetime=0.1)
    chunks = [chunk async for chunk in stream]  # until the server ends it
    assert chunks[:2] == [sse.retry(2000), snapshot(1).sse_event]
    assert set(chunks[2:-1]) <= {sse.KEEP_ALIVE}
    assert chunks[-1] == LIFETIME_OVER
    assert fanout.subscriber_count() == 0


async def test_a_busy_stream_past_its_lifetime_ends_after_the_event_it_was_writing():
    """Events keep it from ever being silent for a heartbeat: it ends once it wrote
    what arrived, at an event boundary (its client resumes after that event)."""
    fanout = FanOut()
    stream = stream_of(FakeHistory([snapshot(1)]), fanout, heartbeat=3600.0, lifetime=0.05)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(1).sse_event]
    loop = asyncio.get_running_loop()
    aged = loop.time() + 0.05  # it began before this: past its lifetime after it
    await eventually(lambda: loop.time() > aged, every=0.01, what="the lifetime to pass")
    fanout.publish(snapshot(2))
    assert [chunk async for chunk in stream] == [
        snapshot(2).sse_event,
        LIFETIME_OVER,
    ]


async def test_a_slow_readers_stream_past_its_lifetime_ends_too():
    """A client that stopped reading gets nothing more written, but stays on the clock:
    its lifetime still ends the stream and frees its slots."""
    history, fanout = FakeHistory([snapshot(1)]), FanOut()
    services: Any = SimpleNamespace(
        history=history,
        fanout=fanout,
        slots=StreamSlots(10, per_job=10, per_client=10),
        heartbeats=Heartbeats(0.02, 0.1),
        settings=SimpleNamespace(sse_retry_ms=2000),
    )
    live = Stream(JOB, services)
    live.admit("127.0.0.2")
    fanout.join(live)
    live.begin = await start(history, JOB, None)
    response = MemoryResponse()
    response.paused = True  # the transport's buffer is full
    live.attached(response)
    bodies = [await asyncio.wait_for(response.bodies.get(), 10) for _ in range(3)]
    assert bodies == [sse.retry(2000), LIFETIME_OVER, None]
    assert (services.slots.open, fanout.subscriber_count()) == (0, 0)


async def test_ends_fall_in_the_last_tenth_of_the_lifetime_spread_and_shared():
    clock = Heartbeats(15.0, 1000.0)
    loop = asyncio.get_running_loop()
    before = loop.time()
    ends = [clock.ends() for _ in range(2000)]
    after = loop.time()
    grain = 1000.0 * LIFETIME_SPREAD / 64
    assert all(before + 900.0 - grain <= end <= after + 1000.0 for end in ends)
    distinct = {end: end for end in ends}
    assert len(distinct) > 32, "spread, not all at one moment"
    assert all(end is distinct[end] for end in ends), "one float object per end time"


async def test_a_stream_that_missed_its_jobs_deletion_ends_when_it_re_reads():
    class Deleted(FakeHistory):
        gone = False

        async def applied_after(self, job_id, event_id):
            if self.gone:
                raise JobGone()
            return await super().applied_after(job_id, event_id)

    fanout, history = FanOut(), Deleted([snapshot(1)])
    stream = stream_of(history, fanout)
    assert await ids(stream, 2) == [sse.retry(2000), snapshot(1).sse_event]
    # Erased while the LISTEN connection was down: the reconnect makes it re-read.
    history.gone = True
    fanout.resync_all()
    assert [chunk async for chunk in stream] == []
    assert fanout.subscriber_count() == 0
