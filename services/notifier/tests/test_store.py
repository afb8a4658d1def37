"""The projection's writes against the real PostgreSQL, as two replicas would race."""

import asyncio
import uuid

import asyncpg
import pytest

from contracts import JobStatus, JobStatusChanged
from notifier.projection import Outcome
from notifier.store import Store

pytestmark = pytest.mark.integration


async def test_two_replicas_recording_the_same_events_concurrently_stay_consistent(
    notifier_settings, notifier_url
):
    settings = notifier_settings
    pools = [
        await asyncpg.create_pool(settings.database_url, min_size=4, max_size=4) for _ in range(2)
    ]
    try:
        replicas = [Store(pool, settings.database_schema) for pool in pools]
        job = str(uuid.uuid4())
        events = [
            (f"{job}:{n}", JobStatusChanged(job_id=job, status=status, progress=progress))
            for n, (status, progress) in enumerate(
                [(JobStatus.ACCEPTED, 0)]
                + [(JobStatus.UPLOADING, p) for p in range(1, 46, 4)]
                + [(JobStatus.UPLOADED, 50), (JobStatus.COMPLETED, 100)]
            )
        ]
        # Each event is delivered to both replicas (e.g. around a rebalance).
        decisions = await asyncio.gather(
            *(store.record(ce_id, event) for ce_id, event in events for store in replicas)
        )
        assert sum(d.outcome is Outcome.DUPLICATE for d in decisions) == len(events)

        rows = await pools[0].fetch(
            f"SELECT event_id, ce_id FROM {settings.database_schema}.job_events "
            "WHERE job_id = $1 ORDER BY event_id",
            uuid.UUID(job),
        )
        assert [r["event_id"] for r in rows] == list(range(1, len(events) + 1))
        assert sorted(r["ce_id"] for r in rows) == sorted(ce_id for ce_id, _ in events)
        current = await replicas[1].current(job)
        assert current is not None
        assert current.event_id == max(
            d.snapshot.event_id for d in decisions if d.outcome is Outcome.APPLIED
        )
        applied = await replicas[0].applied_after(job, 0)
        progress = [s.progress for s in applied]
        assert progress == sorted(progress)
        assert [s.status for s in applied].count(JobStatus.COMPLETED) <= 1
    finally:
        for pool in pools:
            await pool.close()
