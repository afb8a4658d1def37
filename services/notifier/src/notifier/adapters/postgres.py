"""PostgreSQL through asyncpg: :class:`notifier.ports.JobStore` (the projection: the
append-only event history and the current state), :class:`notifier.ports.Lifecycle`
(deletion, owners, retention) and :class:`notifier.ports.AppliedEvents` (its ``LISTEN``
feed).

Writers of one job are serialised by a transaction-scoped advisory lock on the job id:
unlike ``SELECT ... FOR UPDATE`` it also covers a job's first event, when there is no
row to lock yet, so concurrent notifier replicas never interleave their decisions.

An applied event also notifies the channel :attr:`PostgresStore.channel` inside the
recording transaction; PostgreSQL delivers the notification to every listening replica
only once the transaction commits, in commit order
(https://www.postgresql.org/docs/current/sql-notify.html). That is the live feed
:class:`PostgresAppliedEvents` hands to :mod:`notifier.listener`. Erasing a job notifies
the same channel (``"<job_id> deleted"``), so that every replica ends the job's streams.

A deleted job leaves a tombstone (``deleted_jobs``: its id and when, nothing else),
written under the same job lock as the projection's writes, which drop every later
event of it (docs/architecture.md §8).

A database outage leaves every method as ``DependencyUnavailable`` (a 503 over HTTP, a
message not committed in the consumer).
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import asyncpg

from contracts import JobStatus, JobStatusChanged
from notifier.ports import JobGone, JobRecord, OnApplied, OnDeleted, OwnedJob, Position
from notifier.projection import Decision, JobSnapshot, Outcome, decide
from servicekit.http import DependencyUnavailable
from servicekit.postgres import (
    DEPENDENCY,
    create_pool,
    delete_older,
    is_outage,
    locked,
    unavailable_on_outage,
)
from servicekit.resources import Resource

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};

-- event_id is the SSE id: only an applied event has one, ignored events are kept for
-- the record without an id (docs/architecture.md §9), so live, replay and snapshot
-- name the same events.
CREATE TABLE IF NOT EXISTS {schema}.job_events (
    job_id            uuid        NOT NULL,
    event_id          bigint,
    ce_id             text        NOT NULL UNIQUE,
    status            text        NOT NULL,
    progress          smallint    NOT NULL,
    reported_progress smallint    NOT NULL,
    detail            text,
    result            jsonb,
    error             jsonb,
    time              timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    outcome           text        NOT NULL CHECK (outcome IN ('applied', 'ignored')),
    reason            text
);

-- The W3C trace context of the event, so that its SSE delivery joins the job's trace.
ALTER TABLE {schema}.job_events ADD COLUMN IF NOT EXISTS traceparent text;
-- The order of recording, which ignored events (without an event_id) also have.
ALTER TABLE {schema}.job_events
    ADD COLUMN IF NOT EXISTS seq bigint GENERATED ALWAYS AS IDENTITY;

-- Histories written before issue 11 gave ignored events ids too (gaps in the live
-- stream that a replay filled): take those ids back, once. Applied ids stay as they
-- were, so a client's Last-Event-ID keeps naming the same event.
-- (The old primary key on (job_id, event_id) says it is such a history.)
DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_constraint WHERE conname = 'job_events_pkey'
               AND conrelid = '{schema}.job_events'::regclass) THEN
        ALTER TABLE {schema}.job_events DROP CONSTRAINT job_events_pkey;
        ALTER TABLE {schema}.job_events ALTER COLUMN event_id DROP NOT NULL;
        UPDATE {schema}.job_events SET event_id = NULL WHERE outcome = 'ignored';
    END IF;
END $$;
CREATE UNIQUE INDEX IF NOT EXISTS job_events_applied
    ON {schema}.job_events (job_id, event_id) WHERE event_id IS NOT NULL;
DO $$ BEGIN
    ALTER TABLE {schema}.job_events ADD CONSTRAINT job_events_id_iff_applied
        CHECK ((event_id IS NOT NULL) = (outcome = 'applied'));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS {schema}.jobs (
    job_id     uuid        PRIMARY KEY,
    event_id   bigint      NOT NULL,
    status     text        NOT NULL,
    progress   smallint    NOT NULL,
    detail     text,
    result     jsonb,
    error      jsonb,
    time       timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Data lifecycle (docs/architecture.md §8). The owner is the JWT subject of the upload
-- (from the `accepted` event); created_at, the time of the job's first event, orders an
-- owner's list. Jobs from before these columns have no owner: the time the column was
-- added, which they get, lists nothing.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS owner text;
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
-- Set by the retention sweep that published the job's deletion, so that no other
-- replica's sweep publishes it again while the deletion travels.
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS deletion_claimed_at timestamptz;
CREATE INDEX IF NOT EXISTS jobs_by_owner
    ON {schema}.jobs (owner, created_at DESC, job_id DESC) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished
    ON {schema}.jobs (updated_at) WHERE status IN ({final});
-- Erasing a job deletes its history, ignored events (without an event_id) included.
CREATE INDEX IF NOT EXISTS job_events_by_job ON {schema}.job_events (job_id);

-- A deleted job's tombstone: its id and when, no personal data. Events of it that come
-- later are dropped; tombstones are pruned after JOB_TOMBSTONE_SECONDS.
CREATE TABLE IF NOT EXISTS {schema}.deleted_jobs (
    job_id     uuid        PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deleted_jobs_by_age ON {schema}.deleted_jobs (deleted_at);
"""

_COLUMNS = "job_id, event_id, status, progress, detail, result, error, time"
_EVENT_COLUMNS = _COLUMNS + ", traceparent"
_JOB_COLUMNS = ", ".join(f"j.{c}" for c in _COLUMNS.split(", "))
_FINAL = ", ".join(f"'{status.value}'" for status in JobStatus if status.is_final)

DELETED = "deleted"
"""The payload's second word when a job was erased (instead of an event id)."""

_PAYLOAD_BYTES = 7900
"""Most bytes of a notification that carries its event (PostgreSQL allows under 8000);
a longer one names the event, and the listener reads it."""

_PRUNE_BATCH = 10_000
"""Most tombstones forgotten in one statement."""


def _snapshot(row: asyncpg.Record) -> JobSnapshot:
    return JobSnapshot(
        job_id=str(row["job_id"]),
        event_id=row["event_id"],
        status=JobStatus(row["status"]),
        progress=row["progress"],
        detail=row["detail"],
        result=_json_or_none(row["result"]),
        error=_json_or_none(row["error"]),
        time=row["time"],
        traceparent=row.get("traceparent"),
    )


def _carried(job_id: str, event_id: int, text: str) -> JobSnapshot:
    """The event a notification carries (``json_build_object`` of its row: ``result``
    and ``error`` as the row's jsonb, so the same as :func:`_snapshot` reads)."""
    event = json.loads(text)
    return JobSnapshot(
        job_id=job_id,
        event_id=event_id,
        status=JobStatus(event["status"]),
        progress=event["progress"],
        detail=event["detail"],
        result=event["result"],
        error=event["error"],
        time=datetime.fromisoformat(event["time"]),
        traceparent=event["traceparent"],
    )


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (``width`` of them), for ``unnest`` of arrays."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _json_or_none(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    loaded: dict[str, Any] = json.loads(value)
    return loaded


def _dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


class PostgresStore(Resource):
    """The projection in one schema. Entering it (``async with``) opens its pool and
    sets the schema up (idempotent, safe for concurrent starts); leaving closes it."""

    def __init__(
        self,
        dsn: str,
        schema: str = "notifier",
        *,
        pool_size: int = 10,
        timeout_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.schema = schema
        self.channel = f"{schema}_applied"
        """The NOTIFY channel of applied events; the payload is ``"<job_id> <event_id>"``."""
        self._dsn = dsn
        self._pool_size = pool_size
        self._timeout_seconds = timeout_seconds
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        pool = await create_pool(
            self._dsn, max_size=self._pool_size, timeout_seconds=self._timeout_seconds
        )
        stack.push_async_callback(pool.close)
        self._pool = pool
        stack.callback(setattr, self, "_pool", None)
        await self.create_schema()

    @property
    def pool(self) -> "asyncpg.Pool[asyncpg.Record]":
        if self._pool is None:
            raise DependencyUnavailable(DEPENDENCY, 1, "the pool is not open (start or stop)")
        return self._pool

    @unavailable_on_outage
    async def create_schema(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise concurrent starts: CREATE ... IF NOT EXISTS is not race-free.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('notifier.schema'))")
            await conn.execute(_SCHEMA.format(schema=self.schema, final=_FINAL))

    @unavailable_on_outage
    async def ping(self) -> bool:
        if self._pool is None:
            return False
        return bool(await self._pool.fetchval("SELECT 1"))

    async def record(self, ce_id: str, event: JobStatusChanged) -> Decision:
        """Record ``event`` in the history and, if it applies, make it the current state."""
        [decision] = await self.record_batch([(ce_id, event)])
        return decision

    @unavailable_on_outage
    async def record_batch(
        self,
        events: list[tuple[str, JobStatusChanged]],
        traceparents: list[str | None] | None = None,
    ) -> list[Decision]:
        """Record events in order, in one transaction: a handful of round trips for the
        whole batch instead of several per event, which bounds the projection's rate.
        ``traceparents`` are the events' trace contexts, kept for their delivery."""
        contexts = traceparents or [None] * len(events)
        try:
            return await self._record_batch(events, contexts)
        except asyncpg.UniqueViolationError:
            if len(events) == 1:
                # The same ce_id recorded concurrently under another job id's lock.
                return [decide(None, events[0][1], event_id=0, duplicate=True)]
            return [
                d
                for item, context in zip(events, contexts, strict=True)
                for d in await self.record_batch([item], [context])
            ]

    async def _record_batch(
        self, events: list[tuple[str, JobStatusChanged]], traceparents: list[str | None]
    ) -> list[Decision]:
        s = self.schema
        job_ids = sorted({uuid.UUID(event.job_id) for _, event in events})
        # Every job of the batch, locked in one order, so replicas cannot deadlock.
        async with self.pool.acquire() as conn, locked(conn, map(str, job_ids)):
            # Under the jobs' locks nobody else writes their rows: no FOR UPDATE needed.
            # Which events are recorded already, which jobs deleted, and their states: one
            # round trip (a row per job of the batch).
            rows = await conn.fetch(
                f"""SELECT u.job_id AS key, d.job_id IS NOT NULL AS deleted,
                    ARRAY(SELECT ce_id FROM {s}.job_events WHERE ce_id = ANY($1::text[])) seen,
                    {_JOB_COLUMNS}
                FROM unnest($2::uuid[]) AS u(job_id)
                LEFT JOIN {s}.deleted_jobs d ON d.job_id = u.job_id
                LEFT JOIN {s}.jobs j ON j.job_id = u.job_id""",
                [ce_id for ce_id, _ in events],
                job_ids,
            )
            seen = set(rows[0]["seen"])
            deleted = {r["key"] for r in rows if r["deleted"]}
            current = {r["job_id"]: _snapshot(r) for r in rows if r["job_id"] is not None}
            # Only applied events take ids, so a job's last id is its current state's.
            last = {job_id: snap.event_id for job_id, snap in current.items()}
            decisions, history = [], []
            changed: dict[uuid.UUID, JobSnapshot] = {}
            created: dict[uuid.UUID, datetime] = {}
            owners: dict[uuid.UUID, str] = {}
            for (ce_id, event), traceparent in zip(events, traceparents, strict=True):
                job_id = uuid.UUID(event.job_id)
                decision = decide(
                    current.get(job_id), event, event_id=last.get(job_id, 0) + 1,
                    duplicate=ce_id in seen, deleted=job_id in deleted,
                )  # fmt: skip
                decisions.append(decision)
                if not decision.outcome.writes:
                    continue
                seen.add(ce_id)
                if event.owner:
                    # Whichever event names the owner, applied or not: `accepted` may
                    # come after `uploading` (another producer) and then be ignored.
                    owners.setdefault(job_id, event.owner)
                new = decision.snapshot
                applied = decision.outcome is Outcome.APPLIED
                history.append((
                    job_id, new.event_id if applied else None, new.status.value,
                    new.progress, new.detail, _dumps(new.result), _dumps(new.error), new.time,
                    ce_id, event.progress,
                    "applied" if applied else "ignored", None if applied else decision.reason,
                    traceparent,
                ))  # fmt: skip
                if applied:
                    if job_id not in current:
                        created[job_id] = new.time
                    last[job_id] = new.event_id
                    current[job_id] = changed[job_id] = new
            if history:
                # The history, the states and the notifications: one statement.
                states = [
                    (job_id, n.event_id, n.status.value, n.progress, n.detail, _dumps(n.result),
                     _dumps(n.error), n.time, created.get(job_id, n.time), owners.get(job_id))
                    for job_id, n in changed.items()
                ]  # fmt: skip
                await conn.execute(
                    f"""WITH history AS (
                        INSERT INTO {s}.job_events ({_COLUMNS}, ce_id, reported_progress,
                            outcome, reason, traceparent)
                        SELECT {_COLUMNS}, ce_id, reported_progress, outcome, reason,
                            traceparent
                        FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::smallint[],
                            $5::text[], $6::jsonb[], $7::jsonb[], $8::timestamptz[],
                            $9::text[], $10::smallint[], $11::text[], $12::text[],
                            $13::text[]) WITH ORDINALITY AS h({_COLUMNS}, ce_id,
                            reported_progress, outcome, reason, traceparent, i)
                        ORDER BY i  -- recorded (seq) in the batch's order
                        RETURNING seq, outcome, {_EVENT_COLUMNS}
                    ), states AS (
                        INSERT INTO {s}.jobs ({_COLUMNS}, created_at, owner)
                        SELECT * FROM unnest($14::uuid[], $15::bigint[], $16::text[],
                            $17::smallint[], $18::text[], $19::jsonb[], $20::jsonb[],
                            $21::timestamptz[], $22::timestamptz[], $23::text[])
                        ON CONFLICT (job_id) DO UPDATE SET event_id = excluded.event_id,
                            status = excluded.status, progress = excluded.progress,
                            detail = excluded.detail, result = excluded.result,
                            error = excluded.error, time = excluded.time,
                            owner = coalesce({s}.jobs.owner, excluded.owner),
                            updated_at = now()
                    )
                    -- Delivered on commit, in this order, to every listening replica:
                    -- "<job> <event id> <the event as JSON>", or without the JSON when
                    -- that would be too long for a notification.
                    SELECT pg_notify($24, CASE WHEN octet_length(n.full) <= {_PAYLOAD_BYTES}
                        THEN n.full ELSE n.name END)
                    FROM (SELECT seq, job_id::text || ' ' || event_id AS name,
                        job_id::text || ' ' || event_id || ' ' || json_build_object(
                            'status', status, 'progress', progress, 'detail', detail,
                            'result', result, 'error', error, 'time', time,
                            'traceparent', traceparent)::text AS full
                        FROM history WHERE outcome = 'applied') n
                    ORDER BY n.seq""",
                    *_columns(history, 13),
                    *_columns(states, 10),
                    self.channel,
                )
            unchanged = {job_id: owner for job_id, owner in owners.items() if job_id not in changed}
            if unchanged:
                # An event naming the owner that did not apply (`accepted` after
                # `uploading`): a job's first event always applies, so its row exists.
                await conn.execute(
                    f"""UPDATE {s}.jobs j SET owner = o.owner
                    FROM unnest($1::uuid[], $2::text[]) AS o(job_id, owner)
                    WHERE j.job_id = o.job_id AND j.owner IS NULL""",
                    list(unchanged),
                    list(unchanged.values()),
                )
            return decisions

    @unavailable_on_outage
    async def current(self, job_id: str) -> JobSnapshot | None:
        # One round trip, the tombstone with the state (a deleted job has no state).
        row = await self.pool.fetchrow(
            f"""SELECT t.deleted, {_JOB_COLUMNS} FROM (SELECT EXISTS (
                SELECT FROM {self.schema}.deleted_jobs WHERE job_id = $1) AS deleted) t
            LEFT JOIN {self.schema}.jobs j ON j.job_id = $1""",
            uuid.UUID(job_id),
        )
        assert row is not None
        if row["deleted"]:
            raise JobGone()
        return _snapshot(row) if row["job_id"] is not None else None

    @unavailable_on_outage
    async def applied_after(self, job_id: str, event_id: int) -> list[JobSnapshot]:
        """The applied events of a job after ``event_id``, oldest first; with none,
        :class:`JobGone` if the job was deleted (a stream that re-reads after a lost
        notification ends then)."""
        rows = await self.pool.fetch(
            f"""SELECT {_EVENT_COLUMNS} FROM {self.schema}.job_events
            WHERE job_id = $1 AND event_id > $2 AND outcome = 'applied' ORDER BY event_id""",
            uuid.UUID(job_id),
            event_id,
        )
        if not rows and await self._deleted(uuid.UUID(job_id)):
            raise JobGone()
        return [_snapshot(r) for r in rows]

    async def _deleted(self, job_id: uuid.UUID) -> bool:
        return bool(
            await self.pool.fetchval(
                f"SELECT EXISTS (SELECT FROM {self.schema}.deleted_jobs WHERE job_id = $1)", job_id
            )
        )

    @unavailable_on_outage
    async def applied_events(self, keys: list[tuple[str, int]]) -> list[JobSnapshot]:
        """The applied events named by ``(job_id, event_id)``, each job's oldest first."""
        rows = await self.pool.fetch(
            f"""SELECT {_EVENT_COLUMNS} FROM {self.schema}.job_events
            WHERE (job_id, event_id) IN (SELECT * FROM unnest($1::uuid[], $2::bigint[]))
                AND outcome = 'applied'
            ORDER BY job_id, event_id""",
            [uuid.UUID(job_id) for job_id, _ in keys],
            [event_id for _, event_id in keys],
        )
        return [_snapshot(r) for r in rows]

    # --- notifier.ports.Lifecycle ----------------------------------------------------

    @unavailable_on_outage
    async def find(self, job_id: str) -> JobRecord | None:
        row = await self.pool.fetchrow(
            f"""SELECT t.deleted, j.job_id IS NOT NULL AS known, j.owner FROM (SELECT EXISTS (
                SELECT FROM {self.schema}.deleted_jobs WHERE job_id = $1) AS deleted) t
            LEFT JOIN {self.schema}.jobs j ON j.job_id = $1""",
            uuid.UUID(job_id),
        )
        assert row is not None
        if row["deleted"]:
            return JobRecord(deleted=True)
        return JobRecord(deleted=False, owner=row["owner"]) if row["known"] else None

    @unavailable_on_outage
    async def erase(self, job_ids: list[str]) -> None:
        s = self.schema
        ids = sorted({uuid.UUID(job_id) for job_id in job_ids})
        if not ids:
            return
        # The projection's lock: an event of the job is recorded before the erasure
        # (and erased with the rest) or after it (and dropped for the tombstone).
        async with self.pool.acquire() as conn, locked(conn, map(str, ids)):
            await conn.execute(f"DELETE FROM {s}.job_events WHERE job_id = ANY($1::uuid[])", ids)
            await conn.execute(f"DELETE FROM {s}.jobs WHERE job_id = ANY($1::uuid[])", ids)
            await conn.execute(
                f"""INSERT INTO {s}.deleted_jobs (job_id) SELECT unnest($1::uuid[])
                ON CONFLICT (job_id) DO NOTHING""",
                ids,
            )
            # Delivered on commit to every replica, which ends the jobs' open streams.
            await conn.execute(
                "SELECT pg_notify($1, j::text || ' ' || $2) FROM unnest($3::uuid[]) j",
                self.channel,
                DELETED,
                ids,
            )

    @unavailable_on_outage
    async def owned_by(self, owner: str, before: Position | None, limit: int) -> list[OwnedJob]:
        # Keyset pagination on (created_at, job_id), the order of the jobs_by_owner index:
        # a job created or deleted meanwhile moves no other across a page boundary.
        query = f"SELECT {_COLUMNS}, created_at FROM {self.schema}.jobs WHERE owner = $1"
        args: list[object] = [owner]
        if before is not None:
            query += " AND (created_at, job_id) < ($2, $3)"
            args += [before[0], uuid.UUID(before[1])]
        query += f" ORDER BY created_at DESC, job_id DESC LIMIT ${len(args) + 1}"
        rows = await self.pool.fetch(query, *args, limit)
        return [OwnedJob(_snapshot(r), r["created_at"]) for r in rows]

    @unavailable_on_outage
    async def claim_expired(
        self, older_than_seconds: float, claim_seconds: float, limit: int
    ) -> list[str]:
        # One statement: the rows another sweep holds are skipped, and those it claimed
        # are no longer older than the claim, so two replicas never claim one job. The
        # locking select is a materialised CTE, evaluated once (as a subquery in IN it
        # may be evaluated again, and claim more than LIMIT).
        rows = await self.pool.fetch(
            f"""WITH expired AS MATERIALIZED (
                SELECT job_id FROM {self.schema}.jobs
                WHERE status IN ({_FINAL})
                    AND updated_at < now() - make_interval(secs => $1)
                    AND (deletion_claimed_at IS NULL
                         OR deletion_claimed_at < now() - make_interval(secs => $2))
                ORDER BY updated_at LIMIT $3
                FOR UPDATE SKIP LOCKED)
            UPDATE {self.schema}.jobs j SET deletion_claimed_at = now()
            FROM expired WHERE j.job_id = expired.job_id
            RETURNING j.job_id""",
            float(older_than_seconds),
            float(claim_seconds),
            limit,
        )
        return [str(r["job_id"]) for r in rows]

    @unavailable_on_outage
    async def prune_tombstones(self, older_than_seconds: float) -> int:
        return await delete_older(
            self.pool,
            f"{self.schema}.deleted_jobs",
            "deleted_at",
            older_than_seconds,
            batch=_PRUNE_BATCH,
        )


Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]


class PostgresAppliedEvents:
    """:class:`notifier.ports.AppliedEvents` over one ``LISTEN`` connection of its own
    (a pooled connection would be handed to others between statements)."""

    def __init__(self, connect: Connect, channel: str, *, check_seconds: float = 5.0) -> None:
        self._connect = connect
        self._channel = channel
        self._check_seconds = check_seconds

    async def listen(
        self, on_applied: OnApplied, on_listening: Callable[[], None], on_deleted: OnDeleted
    ) -> None:
        try:
            await self._listen(on_applied, on_listening, on_deleted)
        except Exception as exc:
            if is_outage(exc):
                raise DependencyUnavailable(DEPENDENCY, 1, f"{type(exc).__name__}: {exc}") from exc
            raise

    async def _listen(
        self, on_applied: OnApplied, on_listening: Callable[[], None], on_deleted: OnDeleted
    ) -> None:
        conn = await self._connect()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())

        def notified(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
            job_id, _, rest = str(payload).partition(" ")
            event_id, _, carried = rest.partition(" ")
            if event_id == DELETED:
                on_deleted(job_id)
                return
            try:
                number = int(event_id)
                snapshot = _carried(job_id, number, carried) if carried else None
            except ValueError:
                log.warning("ignored notification %r", payload)
                return
            on_applied(job_id, number, snapshot)

        try:
            await conn.add_listener(self._channel, notified)
            log.info("listening on %s", self._channel)
            on_listening()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._check_seconds)
                # A half-open connection delivers nothing and reports nothing: ask it.
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=self._check_seconds)
        finally:
            conn.terminate()
        raise DependencyUnavailable(DEPENDENCY, 1, "the LISTEN connection was closed")
