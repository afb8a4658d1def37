"""Checkpoints of open resumable uploads in PostgreSQL (uploader.ports.CheckpointStore).

An unfinished S3 multipart upload cannot carry metadata, so the parts done (ETags), the
bytes and the SHA-256 state after them are kept here, one row per job
(docs/architecture.md §8, §12)."""

import asyncpg

from contracts import UploadStarted
from servicekit.postgres import PostgresResource
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
"""


class PostgresCheckpoints(PostgresResource):
    """An async context manager: the pool is opened and the schema made on entry. Its
    connects and statements are bounded (``DATABASE_TIMEOUT_SECONDS``): with the database
    down, a call fails within the timeout instead of holding the audio.upload handler
    (and its partition)."""

    ddl = _SCHEMA

    def __init__(self, settings: DatabaseSettings) -> None:
        super().__init__(settings, max_size=4)
        self._table = f"{self.schema}.checkpoints"

    def not_open(self) -> Exception:
        return StorageError("the checkpoint store is not open")

    async def save(self, checkpoint: Checkpoint) -> None:
        try:
            await self._pool.execute(
                f"""INSERT INTO {self._table} (job_id, started, key, upload_id, etags,
                       size, digest, next_sequence)
                   VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8)
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
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"checkpoint not saved: {exc!r}") from exc

    async def load(self, job_id: str) -> Checkpoint | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT started::text, key, upload_id, etags, size, digest, next_sequence "
                f"FROM {self._table} WHERE job_id = $1",
                job_id,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
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
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"checkpoint not deleted: {exc!r}") from exc

    async def upload_ids(self) -> set[str]:
        try:
            rows = await self._pool.fetch(f"SELECT upload_id FROM {self._table}")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"checkpoints not read: {exc!r}") from exc
        return {row[0] for row in rows}
