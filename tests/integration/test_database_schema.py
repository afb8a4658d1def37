"""``DATABASE_SCHEMA`` is honoured by every service that keeps state in PostgreSQL (the
gateway's resumable uploads, the uploader's checkpoints), on the real database: the
tables are made in, and read from, the configured schema and no other
(``servicekit.postgres.create_schema``, docs/architecture.md §8)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import ValidationError

from contracts import UploadStarted
from gateway.adapters.postgres import PostgresUploadStore
from gateway.ports import State, UploadRecord
from gateway.settings import Settings as GatewaySettings
from tests.support.waiting import eventually
from uploader.adapters.postgres import PostgresCheckpoints
from uploader.ports import Checkpoint
from uploader.settings import Settings as UploaderSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(infra: dict[str, str]) -> AsyncIterator[str]:
    name = f"schema_t{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(infra["DATABASE_URL"])
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


async def rows_in(infra: dict[str, str], table: str) -> int | None:
    """How many rows ``table`` holds; None when it does not exist."""
    conn = await asyncpg.connect(infra["DATABASE_URL"])
    try:
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            return None
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def test_the_gateways_uploads_live_in_the_configured_schema(
    infra: dict[str, str], schema: str
) -> None:
    settings = GatewaySettings(database_url=infra["DATABASE_URL"], database_schema=schema)
    job_id = str(uuid.uuid4())
    before_in_default = await rows_in(infra, "gateway.uploads")
    async with PostgresUploadStore(settings, lock_wait_seconds=2) as store:
        now = datetime.now(UTC)
        expires_at = now + timedelta(hours=1)
        await store.create(
            UploadRecord(
                job_id, "ietf", "t", None, "a.wav", None, None, b"\0" * 112, expires_at, now
            )
        )
        async with store.lease(job_id) as lease:
            assert await lease.advance(1000, 2, b"\1" * 112, "audio/wav")
        row = await store.get(job_id)
    assert row is not None and (row.offset, row.chunk_count, row.state) == (1000, 2, State.OPEN)
    assert await rows_in(infra, f"{schema}.uploads") == 1
    assert await rows_in(infra, "gateway.uploads") == before_in_default


async def test_the_uploaders_checkpoints_live_in_the_configured_schema(
    infra: dict[str, str], schema: str
) -> None:
    settings = UploaderSettings(database_url=infra["DATABASE_URL"], database_schema=schema)
    job_id = str(uuid.uuid4())
    started = UploadStarted(
        job_id=job_id, token_id="t", filename="a.wav", content_type="audio/wav", chunk_size=10
    )
    checkpoint = Checkpoint(started, "audio/a", "upload-1", ["etag-1"], 10, b"\2" * 112, 1)
    before_in_default = await rows_in(infra, "uploader.checkpoints")
    async with PostgresCheckpoints(settings) as checkpoints:
        await checkpoints.save(checkpoint)
        assert await checkpoints.load(job_id) == checkpoint
        assert await checkpoints.uploads() == {"upload-1": job_id}
    assert await rows_in(infra, f"{schema}.checkpoints") == 1
    assert await rows_in(infra, "uploader.checkpoints") == before_in_default


@pytest.mark.unit
@pytest.mark.parametrize("settings", [GatewaySettings, UploaderSettings])
def test_a_schema_that_is_not_a_plain_identifier_is_refused(settings: type) -> None:
    with pytest.raises(ValidationError, match="database_schema"):
        settings(database_schema='gateway"; DROP TABLE x; --')


async def test_a_replica_starting_beside_running_ones_sets_its_schema_up_through_a_deadlock(
    infra: dict[str, str], schema: str
) -> None:
    """A rolling deploy: a running replica holds a row lock that the starting replica's
    idempotent DDL must wait for, while it waits for a table the DDL already locked.
    PostgreSQL breaks the deadlock by aborting one side; the DDL is tried again."""
    from servicekit.postgres import create_pool, create_schema

    ddl = """
    CREATE SCHEMA IF NOT EXISTS {schema};
    CREATE TABLE IF NOT EXISTS {schema}.one (id int);
    CREATE TABLE IF NOT EXISTS {schema}.two (id int);
    ALTER TABLE {schema}.one ADD COLUMN IF NOT EXISTS added int;
    CREATE INDEX IF NOT EXISTS two_id ON {schema}.two (id);
    """
    pool = await create_pool(infra["DATABASE_URL"], max_size=2, timeout_seconds=30)
    running = await asyncpg.connect(infra["DATABASE_URL"])
    try:
        await create_schema(pool, schema, ddl)  # the running replica's start
        transaction = running.transaction()
        await transaction.start()
        await running.execute(f"INSERT INTO {schema}.two VALUES (1)")  # holds `two`
        starting = asyncio.create_task(create_schema(pool, schema, ddl))

        async def ddl_waits_for_two() -> bool:
            return bool(
                await running.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
                    f"{schema}.two",
                )
            )

        await eventually(ddl_waits_for_two, within=10, what="the DDL to lock `one`, wait for `two`")
        try:
            # The running replica now needs `one`, which the DDL holds: a deadlock.
            await running.execute(f"INSERT INTO {schema}.one VALUES (1)")
            await transaction.commit()
        except asyncpg.DeadlockDetectedError:
            await transaction.rollback()  # it was the victim this time: it retries itself
        await asyncio.wait_for(starting, 30)
        assert await running.fetchval(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'one' AND column_name = 'added'",
            schema,
        )
    finally:
        await running.close()
        await pool.close()
