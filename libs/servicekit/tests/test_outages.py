"""A dependency outage is a 503 in the one error shape with Retry-After, never a 500,
and a PostgreSQL that does not answer is told apart from a wrong statement (issue 11)."""

import asyncpg
import pytest
from fastapi.testclient import TestClient

from servicekit.http import DependencyUnavailable, create_app
from servicekit.postgres import create_pool, is_outage, unavailable_on_outage
from tests.support.processes import free_port

pytestmark = pytest.mark.unit


def _app_raising(exc: Exception) -> TestClient:
    async def down() -> bool:
        raise exc

    app = create_app(title="t", description="t", readiness=[down])

    @app.get("/thing")
    async def thing() -> dict[str, str]:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_an_unavailable_dependency_is_a_503_with_retry_after():
    answer = _app_raising(DependencyUnavailable("kafka", retry_after=7, detail="no leader")).get(
        "/thing"
    )
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "7"
    assert answer.json() == {
        "error": {"code": "unavailable", "message": "kafka is unavailable; retry later"}
    }


def test_readiness_says_not_ready_when_a_check_finds_its_dependency_down():
    answer = _app_raising(DependencyUnavailable("postgresql")).get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "not_ready"


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.InterfaceError("pool is closing"),
        # A statement begun between the server's FATAL goodbye and the socket's end.
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        asyncpg.InternalClientError('cannot switch to state 15; protocol is in the "failed" state'),
    ],
)
def test_what_an_outage_raises_counts_as_one(exc):
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        asyncpg.exceptions.DataError("value out of range"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.InternalClientError("PoolConnectionHolder.release() called on a free holder"),
        ValueError("a bug"),
    ],
)
def test_a_wrong_statement_or_a_bug_is_no_outage(exc):
    assert not is_outage(exc)


async def test_a_pool_without_a_server_fails_fast_as_unavailable():
    pool = await create_pool(
        f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        max_size=1,
        min_size=0,
        timeout_seconds=2,
    )

    @unavailable_on_outage
    async def query() -> object:
        return await pool.fetchval("SELECT 1")

    try:
        with pytest.raises(DependencyUnavailable) as raised:
            await query()
    finally:
        await pool.close()
    assert raised.value.dependency == "postgresql"
    assert raised.value.retry_after > 0


async def test_a_wrong_statement_passes_through_unchanged():
    @unavailable_on_outage
    async def broken() -> None:
        raise asyncpg.exceptions.UndefinedTableError("relation does not exist")

    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        await broken()
