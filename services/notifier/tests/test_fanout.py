import asyncio
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import JobStatus
from notifier.fanout import FanOut
from notifier.projection import JobSnapshot

sys.path.insert(0, str(Path(__file__).parent))
from notifier_fakes import Waiting

pytestmark = pytest.mark.unit


def snapshot(job_id: str, event_id: int) -> JobSnapshot:
    return JobSnapshot(
        job_id, event_id, JobStatus.UPLOADING, event_id, None, None, None, datetime.now(UTC)
    )


async def test_event_reaches_only_subscribers_of_its_job():
    fanout = FanOut()
    job, other = str(uuid.uuid4()), str(uuid.uuid4())
    with fanout.subscribe(Waiting(job)) as mine, fanout.subscribe(Waiting(other)) as theirs:
        assert fanout.publish(snapshot(job, 1)) == 1
        received = await mine.next(1.0)
        assert received is not None
        assert received.event_id == 1
        assert await theirs.next(0.01) is None
    assert fanout.subscriber_count() == 0


async def test_full_queue_marks_the_subscriber_lagged_instead_of_growing():
    fanout = FanOut(queue_size=2)
    job = str(uuid.uuid4())
    with fanout.subscribe(Waiting(job, fanout.queue_size)) as live:
        for event_id in (1, 2, 3):
            fanout.publish(snapshot(job, event_id))
        assert live.lagged
        assert live.pending() == 2
        live.drain()
        assert not live.lagged
        assert await live.next(0.01) is None


async def test_resync_wakes_a_waiting_subscriber_and_marks_it_lagged():
    fanout = FanOut()
    job = str(uuid.uuid4())
    with fanout.subscribe(Waiting(job)) as live:
        waiting = asyncio.create_task(live.next(5.0))
        await asyncio.sleep(0)
        fanout.resync(job)
        assert await waiting is None
        assert live.lagged


async def test_subscribers_are_known_by_job():
    fanout = FanOut()
    job = str(uuid.uuid4())
    assert not fanout.has_subscribers(job)
    with fanout.subscribe(Waiting(job)):
        assert fanout.has_subscribers(job)
    assert not fanout.has_subscribers(job)
