"""The projection's writes against the real PostgreSQL, as two replicas would race."""

import asyncio
import contextlib
import uuid

import asyncpg
import pytest

from contracts import JobStatus, JobStatusChanged
from notifier.adapters.postgres import PostgresStore
from notifier.projection import Outcome

pytestmark = pytest.mark.integration


async def test_two_replicas_recording_the_same_events_concurrently_stay_consistent(
    notifier_settings, notifier_url
):
    settings = notifier_settings
    async with contextlib.AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(
                PostgresStore(settings.database_dsn, settings.database_schema, pool_size=4)
            )
            for _ in range(2)
        ]
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

        rows = await replicas[0].pool.fetch(
            f"SELECT event_id, ce_id, outcome FROM {settings.database_schema}.job_events "
            "WHERE job_id = $1 ORDER BY seq",
            uuid.UUID(job),
        )
        # Applied events are numbered 1, 2, ... with no gap; ignored ones have no id.
        applied_ids = [r["event_id"] for r in rows if r["outcome"] == "applied"]
        assert applied_ids == list(range(1, len(applied_ids) + 1))
        assert all(r["event_id"] is None for r in rows if r["outcome"] == "ignored")
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


_OLD_HISTORY = """
CREATE SCHEMA {s};
CREATE TABLE {s}.job_events (
    job_id uuid NOT NULL, event_id bigint NOT NULL, ce_id text NOT NULL UNIQUE,
    status text NOT NULL, progress smallint NOT NULL, reported_progress smallint NOT NULL,
    detail text, result jsonb, error jsonb, time timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    outcome text NOT NULL CHECK (outcome IN ('applied', 'ignored')), reason text,
    PRIMARY KEY (job_id, event_id)
);
CREATE TABLE {s}.jobs (
    job_id uuid PRIMARY KEY, event_id bigint NOT NULL, status text NOT NULL,
    progress smallint NOT NULL, detail text, result jsonb, error jsonb,
    time timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now()
);
"""


async def test_a_history_that_numbered_ignored_events_loses_those_ids_once(infra):
    """Before issue 11 an ignored event took an id too; the schema setup takes it back,
    keeps the applied ids (a client's Last-Event-ID still names its event), and the
    next applied event continues the sequence."""
    schema = f"notifier_migrate_{uuid.uuid4().hex[:10]}"
    job = uuid.uuid4()
    pool = await asyncpg.create_pool(infra["DATABASE_URL"], min_size=1, max_size=2)
    try:
        await pool.execute(_OLD_HISTORY.format(s=schema))
        rows = [(1, "uploading", 20, "applied"), (2, "accepted", 0, "ignored")]
        for event_id, status, progress, outcome in rows:
            await pool.execute(
                f"""INSERT INTO {schema}.job_events (job_id, event_id, ce_id, status, progress,
                reported_progress, time, outcome) VALUES ($1, $2, $3, $4, $5, $5, now(), $6)""",
                job, event_id, f"old-{event_id}", status, progress, outcome,
            )  # fmt: skip
        await pool.execute(
            f"""INSERT INTO {schema}.jobs (job_id, event_id, status, progress, time)
            VALUES ($1, 1, 'uploading', 20, now())""",
            job,
        )
        async with PostgresStore(infra["DATABASE_URL"], schema) as store:  # sets the schema up
            await store.create_schema()  # idempotent
            uploaded = JobStatusChanged(job_id=str(job), status=JobStatus.UPLOADED, progress=50)
            decision = await store.record("new-1", uploaded)
            applied = await store.applied_after(str(job), 0)
        assert (decision.outcome, decision.snapshot.event_id) == (Outcome.APPLIED, 2)
        history = await pool.fetch(
            f"SELECT ce_id, event_id FROM {schema}.job_events WHERE job_id = $1 ORDER BY seq",
            job,
        )
        assert [(r["ce_id"], r["event_id"]) for r in history] == [
            ("old-1", 1),
            ("old-2", None),
            ("new-1", 2),
        ]
        assert [s.event_id for s in applied] == [1, 2]
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()
