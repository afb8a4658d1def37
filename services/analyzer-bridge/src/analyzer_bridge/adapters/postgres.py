"""The bridge's durable state in PostgreSQL (docs/architecture.md §8):
:class:`analyzer_bridge.ports.AnalysisStore` over asyncpg, one row per job's analysis.

Every state change is a conditional ``UPDATE ... RETURNING``, so racing replicas,
webhooks and the deadline sweeper agree on one winner. The pool is opened, and the
schema set up, when the store is entered (``async with``). A database outage leaves
every method as ``DependencyUnavailable`` (a 503 for a webhook, a redelivery for the
consumer); no asyncpg error leaves as itself.

A deleted job leaves a tombstone (``deleted_jobs``: the id and when, no personal data).
Recording a job and erasing one take the same transaction-scoped advisory lock on the
job, so a job is never recorded after its erasure (docs/architecture.md §8).
"""

import asyncpg

from analyzer_bridge.analysis import Analysis, Outcome, State
from contracts import AudioFeatures, AudioStored
from servicekit.postgres import PostgresResource, delete_older, locked, unavailable_on_outage
from servicekit.settings import DatabaseSettings


def _analysis(r: asyncpg.Record) -> Analysis:
    outcome = None
    if r["result"] is not None:
        outcome = Outcome(result=AudioFeatures.model_validate_json(r["result"]))
    elif r["error_code"] is not None:
        outcome = Outcome.failed(r["error_code"], r["error_message"] or "")
    return Analysis(
        job_id=r["job_id"],
        state=State(r["state"]),
        bucket=r["bucket"],
        key=r["key"],
        size=r["size"],
        sha256=r["sha256"],
        content_type=r["content_type"],
        filename=r["filename"],
        deadline=r["deadline"],
        attempts=r["attempts"],
        progress=r["progress"],
        outcome=outcome,
        final_webhook_id=r["final_webhook_id"],
        finished_at=r["finished_at"],
        published_at=r["published_at"],
    )


_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.analyses (
    job_id           text PRIMARY KEY,
    state            text NOT NULL
                     CHECK (state IN ('pending', 'requested', 'completed', 'failed')),
    bucket           text NOT NULL,
    key              text NOT NULL,
    size             bigint NOT NULL,
    sha256           text NOT NULL,
    content_type     text NOT NULL,
    filename         text NOT NULL DEFAULT '',
    deadline         timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_until      timestamptz,
    progress         integer NOT NULL DEFAULT 0,
    result           jsonb,
    error_code       text,
    error_message    text,
    final_webhook_id text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    requested_at     timestamptz,
    finished_at      timestamptz,
    published_at     timestamptz
);
CREATE INDEX IF NOT EXISTS analyses_open_by_deadline
    ON {schema}.analyses (deadline) WHERE state IN ('pending', 'requested');
CREATE INDEX IF NOT EXISTS analyses_unpublished
    ON {schema}.analyses (finished_at) WHERE published_at IS NULL AND finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS analyses_published
    ON {schema}.analyses (finished_at) WHERE published_at IS NOT NULL;
-- A deleted job's tombstone: its id and when, no personal data.
CREATE TABLE IF NOT EXISTS {schema}.deleted_jobs (
    job_id     text PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deleted_jobs_by_age ON {schema}.deleted_jobs (deleted_at);
-- Record a job (leased to p_owner for its first attempt, when given) unless it is
-- recorded already or deleted: one round trip where a transaction would take three.
-- The lock is the one an erasure takes (PostgresStore._lock_key); the insert is a
-- statement of its own after it, and in a VOLATILE function each statement takes a
-- fresh snapshot, so it sees a tombstone committed while the lock was awaited.
CREATE OR REPLACE FUNCTION {schema}.record_analysis(
    p_job_id text, p_bucket text, p_key text, p_size bigint, p_sha256 text,
    p_content_type text, p_filename text, p_deadline_seconds float8,
    p_owner text, p_lease_seconds float8
) RETURNS SETOF {schema}.analyses LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('{schema}.analyses:' || p_job_id));
    RETURN QUERY
    INSERT INTO {schema}.analyses AS a
        (job_id, state, bucket, key, size, sha256, content_type, filename, deadline,
         attempts, lease_owner, lease_until)
    SELECT p_job_id, 'pending', p_bucket, p_key, p_size, p_sha256, p_content_type,
           p_filename, now() + make_interval(secs => p_deadline_seconds),
           CASE WHEN p_owner IS NULL THEN 0 ELSE 1 END, p_owner,
           CASE WHEN p_owner IS NULL THEN NULL
                ELSE now() + make_interval(secs => p_lease_seconds) END
    WHERE NOT EXISTS (SELECT FROM {schema}.deleted_jobs d WHERE d.job_id = p_job_id)
    ON CONFLICT (job_id) DO NOTHING
    RETURNING a.*;
END
$$;
"""

_OPEN = "state IN ('pending', 'requested')"


class PostgresStore(PostgresResource):
    ddl = _SCHEMA

    def __init__(self, settings: DatabaseSettings) -> None:
        super().__init__(settings)
        self._t = f"{self.schema}.analyses"
        self._deleted = f"{self.schema}.deleted_jobs"

    @unavailable_on_outage
    async def ping(self) -> bool:
        if not self.is_open:
            return False  # not started, or stopped
        return bool(await self._pool.fetchval("SELECT true"))

    def _lock_key(self, job_id: str) -> str:
        return f"{self._t}:{job_id}"

    @unavailable_on_outage
    async def insert_pending(
        self,
        event: AudioStored,
        deadline_seconds: float,
        *,
        owner: str | None = None,
        lease_seconds: float = 0.0,
    ) -> Analysis | None:
        """Record the job (leased to ``owner`` for its first attempt, when given); None
        when it was already recorded (a redelivery) or deleted. One statement, in its own
        transaction: ``record_analysis`` takes the erasure's lock before it inserts."""
        r = await self._pool.fetchrow(
            f"SELECT * FROM {self.schema}.record_analysis($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            event.job_id,
            event.bucket,
            event.key,
            event.size,
            event.sha256,
            event.content_type,
            event.filename,
            deadline_seconds,
            owner,
            lease_seconds,
        )
        return _analysis(r) if r else None

    @unavailable_on_outage
    async def erase(self, job_id: str) -> None:
        async with self._pool.acquire() as conn, locked(conn, [self._lock_key(job_id)]):
            await conn.execute(
                f"INSERT INTO {self._deleted} (job_id) VALUES ($1) ON CONFLICT DO NOTHING", job_id
            )
            await conn.execute(f"DELETE FROM {self._t} WHERE job_id = $1", job_id)

    @unavailable_on_outage
    async def deleted(self, job_id: str) -> bool:
        found = await self._pool.fetchval(
            f"SELECT EXISTS (SELECT FROM {self._deleted} WHERE job_id = $1)", job_id
        )
        return bool(found)

    @unavailable_on_outage
    async def prune(self, finished_seconds: float, tombstone_seconds: float) -> tuple[int, int]:
        finished = 0
        if finished_seconds > 0:  # 0: finished analyses are kept
            # Only once their events are out: an unpublished final is republished first.
            finished = await delete_older(
                self._pool,
                self._t,
                "finished_at",
                finished_seconds,
                where="published_at IS NOT NULL AND state IN ('completed', 'failed')",
            )
        tombstones = await delete_older(self._pool, self._deleted, "deleted_at", tombstone_seconds)
        return finished, tombstones

    @unavailable_on_outage
    async def get(self, job_id: str) -> Analysis | None:
        r = await self._pool.fetchrow(f"SELECT * FROM {self._t} WHERE job_id = $1", job_id)
        return _analysis(r) if r else None

    @unavailable_on_outage
    async def take_attempt(self, job_id: str, owner: str, lease_seconds: float) -> Analysis | None:
        """Lease a pending job for one request attempt; None when it is not pending,
        past its deadline, or leased by another replica."""
        r = await self._pool.fetchrow(
            f"""UPDATE {self._t}
                SET attempts = attempts + 1, lease_owner = $2,
                    lease_until = now() + make_interval(secs => $3)
                WHERE job_id = $1 AND state = 'pending' AND deadline > now()
                  AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2)
                RETURNING *""",
            job_id,
            owner,
            lease_seconds,
        )
        return _analysis(r) if r else None

    @unavailable_on_outage
    async def extend_lease(self, job_id: str, owner: str, lease_seconds: float) -> None:
        await self._pool.execute(
            f"""UPDATE {self._t} SET lease_until = now() + make_interval(secs => $3)
                WHERE job_id = $1 AND state = 'pending' AND lease_owner = $2""",
            job_id,
            owner,
            lease_seconds,
        )

    @unavailable_on_outage
    async def release_leases(self, owner: str) -> None:
        """Give up ``owner``'s pending jobs, so another process resumes them at once."""
        await self._pool.execute(
            f"""UPDATE {self._t} SET lease_owner = NULL, lease_until = NULL
                WHERE lease_owner = $1 AND state = 'pending'""",
            owner,
        )

    @unavailable_on_outage
    async def mark_requested(self, job_id: str, progress: int) -> int | None:
        """``pending`` → ``requested``, raising the job progress to at least
        ``progress``; the progress before, or None when the job was not pending."""
        return await self._pool.fetchval(  # type: ignore[no-any-return]
            f"""WITH old AS (
                    SELECT job_id, progress FROM {self._t}
                    WHERE job_id = $1 AND state = 'pending' FOR UPDATE)
                UPDATE {self._t} a
                SET state = 'requested', requested_at = now(), lease_owner = NULL,
                    lease_until = NULL, progress = GREATEST(a.progress, $2)
                FROM old WHERE a.job_id = old.job_id
                RETURNING old.progress""",
            job_id,
            progress,
        )

    @unavailable_on_outage
    async def raise_progress(self, job_id: str, progress: int) -> bool:
        """True when the job is open and ``progress`` is higher than before."""
        r = await self._pool.fetchval(
            f"""UPDATE {self._t} SET progress = $2
                WHERE job_id = $1 AND {_OPEN} AND progress < $2 RETURNING job_id""",
            job_id,
            progress,
        )
        return r is not None

    @unavailable_on_outage
    async def claim_final(
        self, job_id: str, outcome: Outcome, webhook_id: str | None = None
    ) -> Analysis | None:
        """Make an open job final; None when it is unknown or already final, so of two
        racing finals exactly one gets the row."""
        error = outcome.error
        r = await self._pool.fetchrow(
            f"""UPDATE {self._t}
                SET state = $2, result = $3::jsonb, error_code = $4, error_message = $5,
                    final_webhook_id = $6, finished_at = now(), progress = 100,
                    lease_owner = NULL, lease_until = NULL
                WHERE job_id = $1 AND {_OPEN}
                RETURNING *""",
            job_id,
            outcome.state.value,
            outcome.result.model_dump_json() if outcome.result else None,
            error.code if error else None,
            error.message if error else None,
            webhook_id,
        )
        return _analysis(r) if r else None

    @unavailable_on_outage
    async def mark_published(self, job_id: str) -> None:
        await self._pool.execute(
            f"UPDATE {self._t} SET published_at = now() WHERE job_id = $1 AND published_at IS NULL",
            job_id,
        )

    @unavailable_on_outage
    async def expired(self, limit: int = 100) -> list[str]:
        rows = await self._pool.fetch(
            f"""SELECT job_id FROM {self._t} WHERE {_OPEN} AND deadline < now()
                ORDER BY deadline LIMIT $1""",
            limit,
        )
        return [r["job_id"] for r in rows]

    @unavailable_on_outage
    async def unpublished(self, older_than_seconds: float, limit: int = 100) -> list[Analysis]:
        rows = await self._pool.fetch(
            f"""SELECT * FROM {self._t}
                WHERE published_at IS NULL AND finished_at IS NOT NULL
                  AND finished_at < now() - make_interval(secs => $1)
                ORDER BY finished_at LIMIT $2""",
            older_than_seconds,
            limit,
        )
        return [_analysis(r) for r in rows]

    @unavailable_on_outage
    async def orphaned_pending(self, limit: int = 100) -> list[str]:
        """Pending jobs nobody holds a lease on: new, or left by a stopped replica."""
        rows = await self._pool.fetch(
            f"""SELECT job_id FROM {self._t}
                WHERE state = 'pending' AND deadline > now()
                  AND (lease_until IS NULL OR lease_until < now())
                ORDER BY deadline LIMIT $1""",
            limit,
        )
        return [r["job_id"] for r in rows]
