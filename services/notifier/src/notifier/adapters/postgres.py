"""PostgreSQL through asyncpg: :class:`notifier.ports.JobStore` (the projection: the
append-only event history and the current state) and :class:`notifier.ports.AppliedEvents`
(its ``LISTEN`` feed).

Writers of one job are serialised by a transaction-scoped advisory lock on the job id:
unlike ``SELECT ... FOR UPDATE`` it also covers a job's first event, when there is no
row to lock yet, so concurrent notifier replicas never interleave their decisions.

An applied event also notifies the channel :attr:`PostgresStore.channel` inside the
recording transaction; PostgreSQL delivers the notification to every listening replica
only once the transaction commits, in commit order
(https://www.postgresql.org/docs/current/sql-notify.html). That is the live feed
:class:`PostgresAppliedEvents` hands to :mod:`notifier.listener`.

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
from typing import Any

import asyncpg

from contracts import JobStatus, JobStatusChanged
from notifier.ports import OnApplied
from notifier.projection import Decision, JobSnapshot, Outcome, decide
from servicekit.http import DependencyUnavailable
from servicekit.postgres import DEPENDENCY, create_pool, is_outage, unavailable_on_outage
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
"""

_COLUMNS = "job_id, event_id, status, progress, detail, result, error, time"
_EVENT_COLUMNS = _COLUMNS + ", traceparent"


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
            await conn.execute(_SCHEMA.format(schema=self.schema))

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
        async with self.pool.acquire() as conn, conn.transaction():
            # Every job of the batch, locked in one order, so replicas cannot deadlock.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(j::text)) FROM unnest($1::uuid[]) j",
                job_ids,
            )
            # Under the jobs' locks nobody else writes their rows: no FOR UPDATE needed.
            seen = {
                r["ce_id"]
                for r in await conn.fetch(
                    f"SELECT ce_id FROM {s}.job_events WHERE ce_id = ANY($1::text[])",
                    [ce_id for ce_id, _ in events],
                )
            }
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM {s}.jobs WHERE job_id = ANY($1::uuid[])", job_ids
            )
            current = {r["job_id"]: _snapshot(r) for r in rows}
            # Only applied events take ids, so a job's last id is its current state's.
            last = {job_id: snap.event_id for job_id, snap in current.items()}
            decisions, history, notes = [], [], []
            changed: dict[uuid.UUID, JobSnapshot] = {}
            for (ce_id, event), traceparent in zip(events, traceparents, strict=True):
                job_id = uuid.UUID(event.job_id)
                decision = decide(
                    current.get(job_id), event, event_id=last.get(job_id, 0) + 1,
                    duplicate=ce_id in seen,
                )  # fmt: skip
                decisions.append(decision)
                if decision.outcome is Outcome.DUPLICATE:
                    continue
                seen.add(ce_id)
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
                    last[job_id] = new.event_id
                    current[job_id] = changed[job_id] = new
                    notes.append(f"{job_id} {new.event_id}")
            if history:
                await conn.executemany(
                    f"""INSERT INTO {s}.job_events ({_COLUMNS}, ce_id, reported_progress,
                    outcome, reason, traceparent)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
                    history,
                )
            if changed:
                await conn.executemany(
                    f"""INSERT INTO {s}.jobs ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (job_id) DO UPDATE SET event_id = excluded.event_id,
                        status = excluded.status, progress = excluded.progress,
                        detail = excluded.detail, result = excluded.result,
                        error = excluded.error, time = excluded.time, updated_at = now()""",
                    [
                        (job_id, n.event_id, n.status.value, n.progress, n.detail,
                         _dumps(n.result), _dumps(n.error), n.time)
                        for job_id, n in changed.items()
                    ],
                )  # fmt: skip
            if notes:
                # Delivered on commit, in this order, to every listening replica.
                await conn.execute(
                    "SELECT pg_notify($1, n) FROM unnest($2::text[]) WITH ORDINALITY AS t(n, i)"
                    " ORDER BY i",
                    self.channel,
                    notes,
                )
            return decisions

    @unavailable_on_outage
    async def current(self, job_id: str) -> JobSnapshot | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {self.schema}.jobs WHERE job_id = $1", uuid.UUID(job_id)
        )
        return _snapshot(row) if row is not None else None

    @unavailable_on_outage
    async def applied_after(self, job_id: str, event_id: int) -> list[JobSnapshot]:
        """The applied events of a job after ``event_id``, oldest first."""
        rows = await self.pool.fetch(
            f"""SELECT {_EVENT_COLUMNS} FROM {self.schema}.job_events
            WHERE job_id = $1 AND event_id > $2 AND outcome = 'applied' ORDER BY event_id""",
            uuid.UUID(job_id),
            event_id,
        )
        return [_snapshot(r) for r in rows]

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


Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]


class PostgresAppliedEvents:
    """:class:`notifier.ports.AppliedEvents` over one ``LISTEN`` connection of its own
    (a pooled connection would be handed to others between statements)."""

    def __init__(self, connect: Connect, channel: str, *, check_seconds: float = 5.0) -> None:
        self._connect = connect
        self._channel = channel
        self._check_seconds = check_seconds

    async def listen(self, on_applied: OnApplied, on_listening: Callable[[], None]) -> None:
        try:
            await self._listen(on_applied, on_listening)
        except Exception as exc:
            if is_outage(exc):
                raise DependencyUnavailable(DEPENDENCY, 1, f"{type(exc).__name__}: {exc}") from exc
            raise

    async def _listen(self, on_applied: OnApplied, on_listening: Callable[[], None]) -> None:
        conn = await self._connect()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())

        def notified(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
            job_id, _, event_id = str(payload).partition(" ")
            try:
                number = int(event_id)
            except ValueError:
                log.warning("ignored notification %r", payload)
                return
            on_applied(job_id, number)

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
