"""PostgreSQL through asyncpg as every service uses it: bounded waits, and an outage
told apart from a bug.

asyncpg waits 60 s for a connection by default and forever for a statement; with the
server gone, every request would hang that long before failing with a 500 (issue 11).
:func:`create_pool` bounds both, and :func:`unavailable_on_outage` turns what an
outage raises into :class:`~servicekit.http.DependencyUnavailable` (a 503 with
``Retry-After`` over HTTP, an uncommitted message in a Kafka handler). The pool
replaces broken connections by itself, so a service recovers when the server is back.

A connection goes back to the pool without asyncpg's reset query (``pg_advisory_unlock_all();
CLOSE ALL; UNLISTEN *; RESET ALL``), one more round trip and four commands per
statement run through the pool: a quarter of all the statements the stack ran per job
(issue 21). asyncpg still rolls back a transaction left open and drops the listener
callbacks; the rest is session state that the services' statements do not take, except
where one says so with :func:`takes_session_state` (a session advisory lock, a
``LISTEN``), and such a connection gets the full reset when it is released.
``tests/structure/test_session_state.py`` keeps the two together.

A transaction that starts by taking advisory locks (one job's, a batch of jobs', the
fair-use counters') begins and locks in one round trip (:func:`locked`), where
``conn.transaction()`` and the lock statement took two.
"""

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar, ParamSpec, TypeVar

import asyncpg

from servicekit.http import DependencyUnavailable
from servicekit.resources import Resource
from servicekit.settings import DatabaseSettings

__all__ = [
    "DEPENDENCY",
    "PRUNE_BATCH",
    "RETRY_AFTER_SECONDS",
    "PostgresResource",
    "connect",
    "create_pool",
    "create_schema",
    "delete_older",
    "is_outage",
    "locked",
    "open_pool",
    "takes_session_state",
    "unavailable_on_outage",
]

log = logging.getLogger(__name__)

DEPENDENCY = "postgresql"
RETRY_AFTER_SECONDS = 5

P = ParamSpec("P")
R = TypeVar("R")

_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError (connect or statement) is one
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection lost mid-query
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the server cannot be reached or cannot serve now, rather
    than that a statement is wrong."""
    if isinstance(exc, _OUTAGES):
        return True
    # A connection (or the pool) closed under a caller: asyncpg says so only in words.
    if isinstance(exc, asyncpg.InterfaceError):
        return any(word in str(exc) for word in ("closed", "closing"))
    # A server going away sends its FATAL error before it closes the socket; a statement
    # begun on the connection in between finds the protocol still consuming that error
    # (or failed) and cannot start. Two statements at once on one connection, a bug, is
    # the InterfaceError above ("another operation is in progress"), never this one.
    return isinstance(exc, asyncpg.InternalClientError) and str(exc).startswith(
        "cannot switch to state"
    )


def unavailable_on_outage(
    func: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Decorates an adapter method: an outage leaves it as ``DependencyUnavailable``."""

    @functools.wraps(func)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await func(*args, **kwargs)
        except Exception as exc:
            if is_outage(exc):
                raise DependencyUnavailable(
                    DEPENDENCY, RETRY_AFTER_SECONDS, f"{type(exc).__name__}: {exc}"
                ) from exc
            raise

    return guarded


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (``standard_conforming_strings``, on since
    PostgreSQL 9.1: a quote is doubled, nothing else is special)."""
    if "\x00" in text:
        raise ValueError("a lock key cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


@asynccontextmanager
async def locked(
    conn: "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]",
    keys: Iterable[str],
) -> AsyncIterator[None]:
    """A transaction that holds ``pg_advisory_xact_lock(hashtext(key))`` for each of
    ``keys`` (taken in sorted order, so that two of them never wait on each other),
    begun and locked in one round trip: the keys go in as literals, since a statement
    with parameters cannot follow ``BEGIN`` in one message. Committed at the end of the
    block, rolled back if it raises; the locks go with either."""
    names = ", ".join(_literal(key) for key in sorted(set(keys)))
    await conn.execute(
        f"BEGIN; SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(ARRAY[{names}]::text[]) k"
    )
    try:
        yield
    except BaseException:
        # A broken connection cannot roll back; the pool closes it on release, and a
        # live one it releases inside a transaction is rolled back by asyncpg anyway.
        with contextlib.suppress(Exception):
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


_SESSION_STATE: set[int] = set()
"""Backend pids of pooled connections that took session state (see the module)."""


def takes_session_state(
    conn: "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]",
) -> None:
    """Say that ``conn``, a pooled connection, takes session state (a session advisory
    lock, ``LISTEN``, a plain ``SET``): its release resets it in full."""
    _SESSION_STATE.add(conn.get_server_pid())


async def _reset_if_needed(conn: "asyncpg.Connection[Any]") -> None:
    pid = conn.get_server_pid()
    if pid in _SESSION_STATE:
        _SESSION_STATE.discard(pid)
        await conn.execute(conn.get_reset_query())


async def create_pool(
    dsn: str, *, max_size: int, timeout_seconds: float, min_size: int = 0
) -> "asyncpg.Pool[asyncpg.Record]":
    """A pool whose connects and statements each give up after ``timeout_seconds``, and
    whose connections are reset on release only when they took session state.

    No connection floor by default: asyncpg would keep re-opening it through an outage,
    logging a traceback each time; connections are made on demand and kept anyway."""
    pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
        dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        timeout=timeout_seconds,
        command_timeout=timeout_seconds,
        reset=_reset_if_needed,
    )
    return pool


async def connect(dsn: str, *, timeout_seconds: float) -> "asyncpg.Connection[asyncpg.Record]":
    """One connection outside a pool (e.g. for ``LISTEN``), with the same bounds."""
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        dsn, timeout=timeout_seconds, command_timeout=timeout_seconds
    )
    return conn


async def open_pool(
    stack: AsyncExitStack,
    settings: DatabaseSettings,
    *,
    max_size: int | None = None,
    min_size: int = 0,
) -> "asyncpg.Pool[asyncpg.Record]":
    """A service's pool, from its settings (``database_pool_size`` unless ``max_size``),
    closed when ``stack`` closes: what an adapter's :meth:`Resource.open` opens."""
    pool = await create_pool(
        settings.database_dsn,
        max_size=max_size or settings.database_pool_size,
        timeout_seconds=settings.database_timeout_seconds,
        min_size=min_size,
    )
    stack.push_async_callback(pool.close)
    return pool


async def create_schema(
    pool: "asyncpg.Pool[asyncpg.Record]", schema: str, ddl: str, *, attempts: int = 6
) -> None:
    """Run a service's idempotent ``ddl``, its ``{schema}`` placeholders filled with
    ``schema`` (``database_schema``: one rule for every service, docs/architecture.md §8).

    The schema name is a plain lowercase identifier (``DatabaseSettings`` refuses any
    other), so it needs no quoting; it is interpolated because identifiers cannot be
    bind parameters. ``CREATE ... IF NOT EXISTS`` is not race-free between replicas
    starting together, so an advisory lock on the schema's name serialises them. A
    replica starting beside running ones (a rolling deploy, a restart) can still meet
    their row locks: ``CREATE INDEX IF NOT EXISTS`` and ``ALTER TABLE ... IF NOT EXISTS``
    lock their table before they find nothing to do, and PostgreSQL breaks such a
    deadlock by aborting one side. The DDL is idempotent, so it is tried again, a few
    times, each wait for a lock bounded."""
    for attempt in range(attempts):
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '10s'")
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{schema}.schema")
                await conn.execute(ddl.format(schema=schema))
            return
        except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError) as exc:
            if attempt == attempts - 1:
                raise
            log.info("schema %s: %s; trying again", schema, type(exc).__name__)
            await asyncio.sleep(random.uniform(0.05, 0.2) * 2**attempt)


class PostgresResource(Resource):
    """An adapter over one pool of its service's database (the settings' DSN, pool
    size, timeout and ``database_schema``): entering it opens the pool, closed again on
    leaving, and sets up the schema from :attr:`ddl` (:func:`create_schema`)."""

    ddl: ClassVar[str] = ""
    """The adapter's idempotent schema, with ``{schema}`` placeholders."""

    def __init__(
        self, settings: DatabaseSettings, *, max_size: int | None = None, min_size: int = 0
    ) -> None:
        super().__init__()
        self.settings = settings
        self.schema = settings.database_schema
        self._sizes = (max_size, min_size)
        self._pool_or_none: asyncpg.Pool[asyncpg.Record] | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        max_size, min_size = self._sizes
        self._pool_or_none = await open_pool(
            stack, self.settings, max_size=max_size, min_size=min_size
        )
        stack.callback(setattr, self, "_pool_or_none", None)
        await self.create_schema()

    @property
    def is_open(self) -> bool:
        return self._pool_or_none is not None

    @property
    def _pool(self) -> "asyncpg.Pool[asyncpg.Record]":
        if self._pool_or_none is None:
            raise self.not_open()
        return self._pool_or_none

    def not_open(self) -> Exception:
        """What a call raises before the adapter is entered or after it was left."""
        return RuntimeError(f"enter the {type(self).__name__} (async with) before using it")

    @unavailable_on_outage
    async def create_schema(self) -> None:
        await create_schema(self._pool, self.schema, self.ddl)


PRUNE_BATCH = 1000
"""Rows one :func:`delete_older` statement deletes at most."""


async def delete_older(
    pool: "asyncpg.Pool[asyncpg.Record]",
    table: str,
    column: str,
    seconds: float,
    *,
    where: str = "TRUE",
    key: str = "job_id",
    batch: int = PRUNE_BATCH,
) -> int:
    """Delete the rows of ``table`` whose ``column`` is more than ``seconds`` old and that
    match ``where``, a batch per statement until one is short; how many. Replicas that
    sweep at once skip each other's rows (``SKIP LOCKED``) instead of waiting for them.
    The locking select is a materialised CTE, evaluated once: as a subquery in ``IN`` it
    may be evaluated again and lock more than a batch. ``table``, ``column``, ``where``
    and ``key`` are the caller's SQL, never a user's."""
    statement = f"""WITH old AS MATERIALIZED (
            SELECT {key} FROM {table}
            WHERE ({where}) AND {column} < now() - make_interval(secs => $1)
            LIMIT $2 FOR UPDATE SKIP LOCKED)
        DELETE FROM {table} t USING old WHERE t.{key} = old.{key}"""
    deleted = 0
    while True:
        status = await pool.execute(statement, float(seconds), batch)
        count = int(status.rsplit(" ", 1)[-1])  # "DELETE <n>"
        deleted += count
        if count < batch:
            return deleted
