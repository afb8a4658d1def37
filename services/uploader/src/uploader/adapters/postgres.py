"""The uploader's state in PostgreSQL (docs/architecture.md §8): checkpoints of open
resumable uploads (uploader.ports.CheckpointStore), tombstones of deleted jobs
(uploader.ports.Tombstones) and the lock of the audio retention sweep
(uploader.ports.SweepLock).

An unfinished S3 multipart upload cannot carry metadata, so the parts done (ETags), the
bytes and the SHA-256 state after them are kept here, one row per job
(docs/architecture.md §12). A deleted job leaves its id and when in ``deleted_jobs``;
a checkpoint is not saved for a job that has one."""

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from contracts import UploadStarted
from servicekit.postgres import (
    PostgresResource,
    delete_older,
    takes_session_state,
    unavailable_on_outage,
)
from servicekit.settings import DatabaseSettings
from uploader.ports import Checkpoint, StorageError

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    job_id text PRIMARY KEY,
    started jsonb NOT NULL,
    key text NOT NULL,
    upload_id text NOT NULL,
    etags text[] NOT NULL,
    size bigint NOT NULL,
    digest bytea NOT NULL,
    next_sequence integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- A deleted job's tombstone: its id and when, no personal data. Messages of the job that
-- come later store nothing; pruned after JOB_TOMBSTONE_SECONDS.
CREATE TABLE IF NOT EXISTS {schema}.deleted_jobs (
    job_id text PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deleted_jobs_by_age ON {schema}.deleted_jobs (deleted_at);
"""

_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class PostgresCheckpoints(PostgresResource):
    """An async context manager: the pool is opened and the schema made on entry. Its
    connects and statements are bounded (``DATABASE_TIMEOUT_SECONDS``): with the database
    down, a call fails within the timeout instead of holding the audio.upload handler
    (and its partition)."""

    ddl = _SCHEMA

    def __init__(self, settings: DatabaseSettings) -> None:
        super().__init__(settings, max_size=4)
        self._table = f"{self.schema}.checkpoints"
        self._deleted = f"{self.schema}.deleted_jobs"

    def not_open(self) -> Exception:
        return StorageError("the checkpoint store is not open")

    async def save(self, checkpoint: Checkpoint) -> bool:
        try:
            status = await self._pool.execute(
                f"""INSERT INTO {self._table} (job_id, started, key, upload_id, etags,
                       size, digest, next_sequence)
                   SELECT $1, $2::jsonb, $3, $4, $5, $6, $7, $8
                   WHERE NOT EXISTS (SELECT FROM {self._deleted} WHERE job_id = $1)
                   ON CONFLICT (job_id) DO UPDATE SET upload_id = $4, etags = $5, size = $6,
                       digest = $7, next_sequence = $8, updated_at = now()""",
                checkpoint.started.job_id,
                checkpoint.started.model_dump_json(),
                checkpoint.key,
                checkpoint.upload_id,
                checkpoint.etags,
                checkpoint.size,
                checkpoint.digest,
                checkpoint.next_sequence,
            )
        except _ERRORS as exc:
            raise StorageError(f"checkpoint not saved: {exc!r}") from exc
        return bool(status == "INSERT 0 1")

    async def load(self, job_id: str) -> Checkpoint | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT started::text, key, upload_id, etags, size, digest, next_sequence "
                f"FROM {self._table} WHERE job_id = $1",
                job_id,
            )
        except _ERRORS as exc:
            raise StorageError(f"checkpoint not read: {exc!r}") from exc
        if row is None:
            return None
        return Checkpoint(
            UploadStarted.model_validate_json(row[0]),
            row[1],
            row[2],
            list(row[3]),
            row[4],
            bytes(row[5]),
            row[6],
        )

    async def delete(self, job_id: str) -> None:
        try:
            await self._pool.execute(f"DELETE FROM {self._table} WHERE job_id = $1", job_id)
        except _ERRORS as exc:
            raise StorageError(f"checkpoint not deleted: {exc!r}") from exc

    async def uploads(self) -> dict[str, str]:
        try:
            rows = await self._pool.fetch(f"SELECT upload_id, job_id FROM {self._table}")
        except _ERRORS as exc:
            raise StorageError(f"checkpoints not read: {exc!r}") from exc
        return {row[0]: row[1] for row in rows}

    # --- uploader.ports.Tombstones: an outage is DependencyUnavailable -----------------

    @unavailable_on_outage
    async def record(self, job_id: str) -> None:
        await self._pool.execute(
            f"INSERT INTO {self._deleted} (job_id) VALUES ($1) ON CONFLICT DO NOTHING", job_id
        )

    @unavailable_on_outage
    async def deleted(self, job_id: str) -> bool:
        found = await self._pool.fetchval(
            f"SELECT EXISTS (SELECT FROM {self._deleted} WHERE job_id = $1)", job_id
        )
        return bool(found)

    @unavailable_on_outage
    async def prune(self, older_than_seconds: float) -> int:
        return await delete_older(self._pool, self._deleted, "deleted_at", older_than_seconds)

    # --- uploader.ports.SweepLock ------------------------------------------------------

    @contextlib.asynccontextmanager
    async def held(self, name: str) -> AsyncIterator[bool]:
        """A session advisory lock on a connection of its own for the block: a killed
        process's session ends, and its lock with it."""
        key = f"{self.schema}.{name}"
        async with self._pool.acquire() as conn:
            takes_session_state(conn)  # the advisory lock outlives the statement
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key))
            try:
                yield got
            finally:
                if got:
                    try:
                        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
                    except _ERRORS:
                        conn.terminate()  # its session ends, and the lock with it
