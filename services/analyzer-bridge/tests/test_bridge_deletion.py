"""A deleted job (``job.deleted``) in the bridge, on the real Kafka, PostgreSQL and S3
(docs/architecture.md §8, issue 20): its analysis is abandoned (no retry, deadline
failure or result is published for it), its row goes and a tombstone stays, a late
webhook is answered 410 and changes nothing, a redelivered ``audio.stored`` starts
nothing, twice is harmless; and the retention sweep, two at once, erases each old
finished analysis and tombstone once."""

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from analyzer_bridge_testing import Bridge, stored, wait_for

from analyzer_bridge.adapters.postgres import PostgresStore
from analyzer_bridge.settings import Settings
from contracts import DeletionReason, Erase, JobDeleted
from servicekit.postgres import PRUNE_BATCH, locked
from tests.support.kafka import publish_event

pytestmark = pytest.mark.integration

FEATURES = {"duration_seconds": 0.5, "sample_rate": 8000, "channels": 1}


async def delete(bridge: Bridge, job_id: str) -> None:
    event = JobDeleted(job_id=job_id, reason=DeletionReason.REQUESTED, erase=Erase.JOB)
    await publish_event(
        bridge.producer,
        bridge.settings.job_deleted_topic,
        event,
        source="tests",
        ce_id=f"{job_id}:deleted:job",
    )


async def tombstone(bridge: Bridge, job_id: str) -> bool:
    schema = bridge.settings.database_schema
    return bool(
        await bridge.pool.fetchval(
            f"SELECT EXISTS (SELECT FROM {schema}.deleted_jobs WHERE job_id = $1)", job_id
        )
    )


async def test_a_deleted_jobs_analysis_is_abandoned_and_its_late_webhook_changes_nothing(
    start_bridge,
) -> None:
    async with start_bridge(analysis_deadline_seconds=2.0) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.accepted(job_id)  # requested: the analysis is in flight
        await delete(bridge, job_id)

        async def erased() -> bool:
            return await bridge.row(job_id) is None and await tombstone(bridge, job_id)

        await wait_for(erased, what="the analysis erased")

        late = await bridge.server.send(
            job_id, {"job_id": job_id, "status": "completed", "result": FEATURES}
        )
        assert late.status_code == 410, late.text
        assert late.json()["error"]["code"] == "job_deleted"
        progress = await bridge.server.send(
            job_id, {"job_id": job_id, "status": "progress", "progress": 50}
        )
        assert progress.status_code == 410

        # Redelivered, and deleted again: nothing is recorded or requested.
        await bridge.publish(bridge.stored(job_id))
        await delete(bridge, job_id)
        # A job after them on the same (single-partition) topics, past its deadline: by
        # its timeout the deleted job's deadline has passed too.
        sentinel = str(uuid.uuid4())
        await bridge.accepted(sentinel)
        final = await bridge.final(sentinel, within=30)
        assert final["error"]["code"] == "analysis_timeout"
        await bridge.barrier()

        assert await bridge.row(job_id) is None
        assert len(bridge.server.requests_for(job_id)) == 1
        assert bridge.finals(job_id) == []
        assert bridge.events.of(job_id, bridge.result_topic) == []
        assert [s for s, _ in bridge.statuses(job_id)] == ["analyzing"]


class Rollback(Exception):
    """Ends a test's transaction by rolling it back."""


@pytest.mark.parametrize("erasure_commits", [True, False])
async def test_a_job_is_never_recorded_after_its_erasure(
    infra: dict[str, str], namespace, erasure_commits: bool
) -> None:
    """An erasure holding the job's lock when ``audio.stored`` is recorded: the record
    waits for it, and sees its tombstone once it commits (records nothing) or records
    the job if it rolled back."""
    settings = Settings(database_url=infra["DATABASE_URL"], database_schema=namespace.name)
    job_id = str(uuid.uuid4())
    async with PostgresStore(settings) as store:
        eraser = await asyncpg.connect(infra["DATABASE_URL"])
        try:
            with contextlib.suppress(Rollback):
                # The key PostgresStore.erase locks: record_analysis must wait on it.
                async with locked(eraser, [store._lock_key(job_id)]):
                    await eraser.execute(
                        f"INSERT INTO {namespace.name}.deleted_jobs (job_id) VALUES ($1)", job_id
                    )
                    recording = asyncio.create_task(store.insert_pending(stored(job_id), 600))

                    async def waiting() -> bool:
                        return bool(
                            await eraser.fetchval(
                                """SELECT EXISTS (SELECT FROM pg_locks w JOIN pg_locks mine
                                    USING (locktype, classid, objid, objsubid)
                                    WHERE w.locktype = 'advisory' AND NOT w.granted
                                      AND mine.pid = pg_backend_pid())"""
                            )
                        )

                    await wait_for(waiting, what="the record waiting for the erasure's lock")
                    assert not recording.done()
                    if not erasure_commits:
                        raise Rollback
        finally:
            await eraser.close()
        recorded = await recording
        assert (recorded is None) is erasure_commits
        assert (await store.get(job_id) is None) is erasure_commits


async def test_two_replicas_sweep_finished_analyses_and_old_tombstones_once(
    start_bridge,
) -> None:
    async with start_bridge() as bridge:
        schema = bridge.settings.database_schema
        old = datetime.now(UTC) - timedelta(days=3)
        now = datetime.now(UTC)

        def row(job_id: str, state: str, finished: datetime | None, published: datetime | None):
            return (job_id, state, now + timedelta(minutes=10), finished, published)

        expired = [str(uuid.uuid4()) for _ in range(PRUNE_BATCH + 3)]
        rows = [row(j, "completed", old, old) for j in expired]
        unpublished, recent, pending = (str(uuid.uuid4()) for _ in range(3))
        rows += [
            row(unpublished, "failed", old, None),  # its events must go out first
            row(recent, "completed", now, now),
            row(pending, "pending", None, None),
        ]
        await bridge.pool.executemany(
            f"""INSERT INTO {schema}.analyses (job_id, state, bucket, key, size, sha256,
                    content_type, deadline, finished_at, published_at)
                VALUES ($1, $2, 'b', 'k', 1, 's', 'audio/wav', $3, $4, $5)""",
            rows,
        )
        tombstones = [str(uuid.uuid4()) for _ in range(4)]
        await bridge.pool.executemany(
            f"INSERT INTO {schema}.deleted_jobs (job_id, deleted_at) VALUES ($1, $2)",
            [(t, old) for t in tombstones] + [(str(uuid.uuid4()), now)],
        )

        async def sweep() -> tuple[int, int]:
            async with PostgresStore(bridge.settings) as store:
                return await store.prune(24 * 3600, 2 * 24 * 3600)

        first, second = await asyncio.gather(sweep(), sweep())
        assert first[0] + second[0] == len(expired)
        assert first[1] + second[1] == len(tombstones)
        left = {r[0] for r in await bridge.pool.fetch(f"SELECT job_id FROM {schema}.analyses")}
        assert left == {unpublished, recent, pending}
        assert await bridge.pool.fetchval(f"SELECT count(*) FROM {schema}.deleted_jobs") == 1
