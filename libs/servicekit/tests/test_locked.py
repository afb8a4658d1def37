"""servicekit.postgres.locked: a transaction begun and locked in one round trip holds
its advisory locks until it ends, commits its block, rolls back on an error, against
the real PostgreSQL."""

import asyncio

import pytest

from servicekit.postgres import create_pool, locked
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

KEYS = ["jobs:one", "o'brien", "jobs:two"]  # a quote is a literal's one special character


async def test_the_block_holds_the_locks_and_commits(infra) -> None:
    pool = await create_pool(infra["DATABASE_URL"], max_size=2, timeout_seconds=10)
    try:
        async with pool.acquire() as conn, pool.acquire() as other:
            await conn.execute("CREATE TEMP TABLE t (v int)")
            async with locked(conn, KEYS):
                assert conn.is_in_transaction()
                await conn.execute("INSERT INTO t VALUES (1)")
                for key in KEYS:  # each one is held: another session cannot take it
                    taken = "SELECT pg_try_advisory_xact_lock(hashtext($1))"
                    assert await other.fetchval(taken, key) is False
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM t") == 1
            for key in KEYS:  # and released with the commit
                assert await other.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key)
            await other.execute("SELECT pg_advisory_unlock_all()")
    finally:
        await pool.close()


async def test_an_error_rolls_back_and_releases(infra) -> None:
    pool = await create_pool(infra["DATABASE_URL"], max_size=2, timeout_seconds=10)
    try:
        async with pool.acquire() as conn, pool.acquire() as other:
            await conn.execute("CREATE TEMP TABLE t (v int)")
            with pytest.raises(RuntimeError):
                await _fail_inside(conn)
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM t") == 0
            assert await other.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('k'))")
    finally:
        await pool.close()


async def test_a_second_holder_waits_for_the_first(infra) -> None:
    # Three connections: the two holders and the one that looks at pg_locks.
    pool = await create_pool(infra["DATABASE_URL"], max_size=3, timeout_seconds=10)
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with pool.acquire() as conn, locked(conn, ["shared"]):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with pool.acquire() as conn:
            waiting = asyncio.create_task(_take(conn))
            # The second is blocked on the lock: the first is still in.
            await eventually(lambda: _waits_on_advisory_lock(pool), what="the second to wait")
            assert not waiting.done()
            release.set()
            await waiting
            order.append("second in")

    try:
        await asyncio.wait_for(asyncio.gather(first(), second()), timeout=20)
    finally:
        await pool.close()
    assert order == ["first in", "first out", "second in"]


async def _fail_inside(conn) -> None:
    async with locked(conn, ["k"]):
        await conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("the block failed")


async def _take(conn) -> None:
    async with locked(conn, ["shared"]):
        pass


async def _waits_on_advisory_lock(pool) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)"
        )
    )
