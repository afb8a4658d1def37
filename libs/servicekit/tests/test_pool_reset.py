"""Pooled connections are reset on release only when they took session state
(servicekit.postgres.takes_session_state), against the real PostgreSQL."""

import pytest

from servicekit.postgres import create_pool, takes_session_state

pytestmark = pytest.mark.integration


async def test_a_connection_that_says_so_is_reset_and_its_session_lock_freed(infra) -> None:
    pool = await create_pool(infra["DATABASE_URL"], max_size=1, timeout_seconds=10)
    try:
        async with pool.acquire() as conn:
            takes_session_state(conn)
            assert await conn.fetchval("SELECT pg_try_advisory_lock(424242)")
            await conn.execute("SET application_name = 'marked'")
        async with pool.acquire() as conn:  # the same session (one connection)
            assert await conn.fetchval("SHOW application_name") != "marked"
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND objid = 424242 AND pid = pg_backend_pid()"
            )
            assert held == 0
    finally:
        await pool.close()


async def test_other_connections_skip_the_reset_but_not_the_rollback(infra) -> None:
    pool = await create_pool(infra["DATABASE_URL"], max_size=1, timeout_seconds=10)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'kept'")  # no statement does this
            transaction = conn.transaction()
            await transaction.start()  # left open: asyncpg rolls it back on release
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "kept"  # no reset query
            assert not conn.is_in_transaction()
    finally:
        await pool.close()
