"""The durable state of resumable uploads in PostgreSQL (docs/architecture.md §8, §12).

One row per upload resource. ``upload_offset`` is the number of bytes Kafka has
acknowledged, stored with the chunk count and the SHA-256 state after them, so any
replica answers a HEAD and continues an append. Appends to one upload are serialised
across replicas by a session advisory lock held for the append's duration (a killed
replica's session ends, and its lock with it); a new append (or HEAD, or DELETE) first
raises ``generation`` and notifies the holder, which stops reading once its body goes
quiet (gateway.resumable.uploads.until_taken_over), stores what Kafka
acknowledged and lets go (the draft's "Concurrency").

An ended upload's row stays ``ENDED_UPLOAD_RETENTION_SECONDS`` after ``ended_at`` (to
answer 410, or replay a completed upload's answer), then a sweep erases it. A deleted
job's row is erased at once; its tombstone (``deleted_jobs``: the id and when, no
personal data) answers 410 until it is pruned (docs/architecture.md §8).
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from gateway.ports import LockBusy, State, UploadRecord, UploadRow
from servicekit.postgres import (
    PostgresResource,
    delete_older,
    takes_session_state,
    unavailable_on_outage,
)
from servicekit.settings import DatabaseSettings

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.uploads (
    job_id uuid PRIMARY KEY,
    protocol text NOT NULL,
    token_id text NOT NULL,
    owner text,
    filename text NOT NULL,
    upload_length bigint,
    repr_sha256 text,
    state text NOT NULL DEFAULT 'open',
    upload_offset bigint NOT NULL DEFAULT 0,
    chunk_count integer NOT NULL DEFAULT 0,
    digest bytea NOT NULL,
    media_type text,
    generation bigint NOT NULL DEFAULT 0,
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_open_expiry ON {schema}.uploads (expires_at)
    WHERE state = 'open';
-- When the upload left 'open' (rows ended before the column existed: their creation).
ALTER TABLE {schema}.uploads ADD COLUMN IF NOT EXISTS ended_at timestamptz;
CREATE INDEX IF NOT EXISTS uploads_ended ON {schema}.uploads ((coalesce(ended_at, created_at)))
    WHERE state <> 'open';
-- A deleted job's tombstone: its id and when, no personal data.
CREATE TABLE IF NOT EXISTS {schema}.deleted_jobs (
    job_id uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deleted_jobs_by_age ON {schema}.deleted_jobs (deleted_at);
"""


_COLUMNS = (
    "job_id::text, protocol, token_id, owner, filename, upload_length, repr_sha256, digest, "
    "expires_at, created_at, state, upload_offset, chunk_count, media_type, generation, "
    "result::text"
)


def _row(record: asyncpg.Record) -> UploadRow:
    values = list(record.values())
    values[10] = State(values[10])
    return UploadRow(*values)


def _lock_key(job_id: str) -> int:
    return int.from_bytes(uuid.UUID(job_id).bytes[:8], "big", signed=True)


def _channel(job_id: str) -> str:
    return "upload_" + uuid.UUID(job_id).hex


class PostgresLease:
    """:class:`gateway.ports.Lease` on the connection that holds the advisory lock."""

    def __init__(
        self,
        conn: "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]",
        table: str,
        job_id: str,
        gen: int,
    ) -> None:
        self.conn = conn
        self._table = table
        self.job_id = job_id
        self.generation = gen
        self.taken_over = asyncio.Event()

    @unavailable_on_outage
    async def advance(
        self, offset: int, chunk_count: int, digest: bytes, media: str | None
    ) -> bool:
        """Store what Kafka acknowledged. The advisory lock makes this lease the only
        writer, so an append asked to stop still stores what it received."""
        status = await self.conn.execute(
            f"""UPDATE {self._table} SET upload_offset = $2, chunk_count = $3, digest = $4,
                   media_type = coalesce($5, media_type)
               WHERE job_id = $1 AND state = 'open' AND upload_offset <= $2""",
            uuid.UUID(self.job_id),
            offset,
            chunk_count,
            digest,
            media,
        )
        return bool(status == "UPDATE 1")

    @unavailable_on_outage
    async def set_length(self, length: int) -> None:
        await self.conn.execute(
            f"UPDATE {self._table} SET upload_length = $2 WHERE job_id = $1 "
            "AND upload_length IS NULL",
            uuid.UUID(self.job_id),
            length,
        )

    @unavailable_on_outage
    async def touch(self, expires_at: datetime) -> None:
        await self.conn.execute(
            f"UPDATE {self._table} SET expires_at = greatest(expires_at, $2) "
            "WHERE job_id = $1 AND state = 'open'",
            uuid.UUID(self.job_id),
            expires_at,
        )

    @unavailable_on_outage
    async def finish(self, state: State, result: str | None) -> bool:
        status = await self.conn.execute(
            f"""UPDATE {self._table} SET state = $2, result = $3::jsonb, ended_at = now()
               WHERE job_id = $1 AND state = 'open'""",
            uuid.UUID(self.job_id),
            state.value,
            result,
        )
        return bool(status == "UPDATE 1")

    @unavailable_on_outage
    async def row(self) -> UploadRow | None:
        record = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE job_id = $1", uuid.UUID(self.job_id)
        )
        return _row(record) if record else None


class PostgresUploadStore(PostgresResource):
    """:class:`gateway.ports.UploadStore` in ``database_schema``. Entering it (``async
    with``) opens its pool and sets the schema up; a database outage leaves every call as
    ``DependencyUnavailable`` (a 503, docs/architecture.md §2)."""

    ddl = _SCHEMA

    def __init__(self, settings: DatabaseSettings, lock_wait_seconds: float) -> None:
        super().__init__(settings, min_size=1)
        self._table = f"{self.schema}.uploads"
        self._deleted = f"{self.schema}.deleted_jobs"
        self._lock_wait = lock_wait_seconds

    @unavailable_on_outage
    async def create(self, upload: UploadRecord) -> None:
        await self._pool.execute(
            f"""INSERT INTO {self._table} (job_id, protocol, token_id, owner, filename,
                   upload_length, repr_sha256, digest, expires_at, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            uuid.UUID(upload.job_id),
            upload.protocol,
            upload.token_id,
            upload.owner,
            upload.filename,
            upload.length,
            upload.repr_sha256,
            upload.digest,
            upload.expires_at,
            upload.created_at,
        )

    @unavailable_on_outage
    async def get(self, job_id: str) -> UploadRow | None:
        record = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE job_id = $1", uuid.UUID(job_id)
        )
        return _row(record) if record else None

    @contextlib.asynccontextmanager
    async def lease(self, job_id: str) -> AsyncIterator[PostgresLease]:
        """End any append in progress on ``job_id`` and hold the upload until exit."""
        key = _lock_key(job_id)
        async with self._pool.acquire() as conn:
            takes_session_state(conn)  # its advisory lock and LISTEN outlive a statement
            generation = await conn.fetchval(
                f"UPDATE {self._table} SET generation = generation + 1 WHERE job_id = $1 "
                "RETURNING generation",
                uuid.UUID(job_id),
            )
            await conn.execute("SELECT pg_notify($1, $2)", _channel(job_id), str(generation))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._lock_wait
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                if loop.time() > deadline:
                    raise LockBusy(job_id)
                await asyncio.sleep(0.02)
            lease = PostgresLease(conn, self._table, job_id, int(generation or 0))

            def heard(_c: object, _pid: int, _channel: str, payload: object) -> None:
                if str(payload).isdigit() and int(str(payload)) > lease.generation:
                    lease.taken_over.set()

            listener = heard
            await conn.add_listener(_channel(job_id), listener)
            try:
                yield lease
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(_channel(job_id), listener)
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)

    @unavailable_on_outage
    async def expired(self, now: datetime, limit: int = 100) -> list[UploadRow]:
        """Mark open uploads idle past their expiry as expired; those this call ended."""
        records = await self._pool.fetch(
            f"""UPDATE {self._table} SET state = 'expired', ended_at = now()
                WHERE job_id IN (SELECT job_id FROM {self._table}
                                 WHERE state = 'open' AND expires_at < $1
                                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING {_COLUMNS}""",
            now,
            limit,
        )
        return [_row(r) for r in records]

    @unavailable_on_outage
    async def end(self, job_id: str, state: State) -> bool:
        """Cancel from outside an append (DELETE): True when it was open."""
        status = await self._pool.execute(
            f"UPDATE {self._table} SET state = $2, ended_at = now() "
            "WHERE job_id = $1 AND state = 'open'",
            uuid.UUID(job_id),
            state.value,
        )
        return bool(status == "UPDATE 1")

    @unavailable_on_outage
    async def erase(self, job_id: str) -> None:
        job = uuid.UUID(job_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self._deleted} (job_id) VALUES ($1) ON CONFLICT DO NOTHING", job
            )
            await conn.execute(f"DELETE FROM {self._table} WHERE job_id = $1", job)

    @unavailable_on_outage
    async def deleted(self, job_id: str) -> bool:
        found = await self._pool.fetchval(
            f"SELECT EXISTS (SELECT FROM {self._deleted} WHERE job_id = $1)", uuid.UUID(job_id)
        )
        return bool(found)

    @unavailable_on_outage
    async def prune(self, ended_seconds: float, tombstone_seconds: float) -> tuple[int, int]:
        ended = 0
        if ended_seconds > 0:  # 0: ended uploads are kept
            ended = await delete_older(
                self._pool,
                self._table,
                "coalesce(ended_at, created_at)",
                ended_seconds,
                where="state <> 'open'",
            )
        tombstones = await delete_older(self._pool, self._deleted, "deleted_at", tombstone_seconds)
        return ended, tombstones
