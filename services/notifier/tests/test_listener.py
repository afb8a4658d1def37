"""Live delivery through PostgreSQL LISTEN/NOTIFY, against the real database."""

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from contracts import JobStatus, JobStatusChanged
from notifier import sse
from notifier.adapters.postgres import PostgresAppliedEvents, PostgresStore
from notifier.fanout import FanOut
from notifier.listener import Listener
from notifier.projection import JobSnapshot
from tests.support.waiting import eventually

sys.path.insert(0, str(Path(__file__).parent))
from notifier_fakes import Waiting
from notifier_testing import FEATURES, job_stream

pytestmark = pytest.mark.integration


class GatedConnect:
    """Connects like the app does, while ``open`` is set; keeps the last connection."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.open = asyncio.Event()
        self.open.set()
        self.last: asyncpg.Connection | None = None

    async def __call__(self) -> asyncpg.Connection:
        await self.open.wait()
        self.last = await asyncpg.connect(self.dsn)
        return self.last


@pytest.fixture
async def store(infra) -> AsyncIterator[PostgresStore]:
    schema = f"notifier_listen_{uuid.uuid4().hex[:10]}"
    async with PostgresStore(infra["DATABASE_URL"], schema, pool_size=2) as store:
        yield store
        await store.pool.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_events_committed_while_the_listen_connection_was_down_still_reach_streams(
    infra, store
):
    fanout = FanOut()
    connect = GatedConnect(infra["DATABASE_URL"])
    feed = PostgresAppliedEvents(connect, store.channel, check_seconds=0.2)
    listener = Listener(feed, store, fanout, reconnect_seconds=0.01)
    listening = asyncio.create_task(listener.run())
    job = str(uuid.uuid4())
    stream = cast(
        AsyncGenerator[str, None],
        job_stream(store, fanout, job, after=None, heartbeat_seconds=30, retry_ms=2000),
    )
    try:
        assert await anext(stream) == sse.retry(2000)
        await eventually(lambda: asyncio.sleep(0, listener.connected))
        accepted = JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0)
        await store.record("ce-1", accepted)
        assert '"status":"accepted"' in await asyncio.wait_for(anext(stream), 10)

        connect.open.clear()  # no reconnect until the next event is committed
        assert connect.last is not None
        connect.last.terminate()
        await eventually(lambda: asyncio.sleep(0, not listener.connected))
        uploading = JobStatusChanged(job_id=job, status=JobStatus.UPLOADING, progress=10)
        await store.record("ce-2", uploading)  # its notification reaches no one
        connect.open.set()

        # After reconnecting, the stream catches up from the history.
        arrived = await asyncio.wait_for(anext(stream), 10)
        assert arrived.startswith("id: 2\n")
        assert '"status":"uploading"' in arrived
    finally:
        await stream.aclose()
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)


async def test_a_notified_event_reaches_the_streams_of_its_job_only(infra, store):
    fanout = FanOut()
    feed = PostgresAppliedEvents(lambda: asyncpg.connect(infra["DATABASE_URL"]), store.channel)
    listener = Listener(feed, store, fanout)
    listening = asyncio.create_task(listener.run())
    watched, other = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await eventually(lambda: asyncio.sleep(0, listener.connected))
        with fanout.subscribe(Waiting(watched)) as live:
            for n, job in enumerate((other, watched)):
                event = JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0)
                await store.record(f"ce-{n}", event)
            snapshot = await live.next(10)
            assert snapshot is not None
            assert (snapshot.job_id, snapshot.event_id) == (watched, 1)
            assert live.pending() == 0
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)


class Captured:
    """What a feed delivers, as the listener would get it."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, int, object]] = []
        self.listening = asyncio.Event()

    def on_applied(self, job_id: str, event_id: int, snapshot: object) -> None:
        self.applied.append((job_id, event_id, snapshot))

    def on_listening(self) -> None:
        self.listening.set()


@pytest.mark.parametrize("extra_bytes", [0, 9000], ids=["carried", "too-long-to-carry"])
async def test_a_notification_carries_its_event_as_a_read_returns_it(infra, store, extra_bytes):
    captured = Captured()
    feed = PostgresAppliedEvents(lambda: asyncpg.connect(infra["DATABASE_URL"]), store.channel)
    listening = asyncio.create_task(
        feed.listen(captured.on_applied, captured.on_listening, lambda _: None)
    )
    job = str(uuid.uuid4())
    # Keys in an order jsonb does not keep: the carried result must be the read one's.
    features = FEATURES.model_copy(
        update={"zeta": {"b": 1, "a": [1.5, None]}, "pad": "x" * extra_bytes}
    )
    try:
        await asyncio.wait_for(captured.listening.wait(), 10)
        for n, event in enumerate((
            JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0, detail="a 'quote'"),
            JobStatusChanged(job_id=job, status=JobStatus.COMPLETED, progress=100, result=features),
        )):  # fmt: skip
            await store.record(f"ce-{n}", event)
        await eventually(lambda: len(captured.applied) == 2, what="two notifications")
        read = await store.applied_events([(job, 1), (job, 2)])
        accepted, completed = captured.applied
        assert accepted == (job, 1, read[0])
        if extra_bytes:
            assert completed == (job, 2, None)  # named only: the listener reads it
        else:
            assert completed == (job, 2, read[1])
            carried = cast(JobSnapshot, completed[2])
            assert json.dumps(carried.result) == json.dumps(read[1].result)  # same order
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
