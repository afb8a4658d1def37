"""A notifier running in-process (real uvicorn on a free port) against the real Kafka
and PostgreSQL, with its own schema and consumer group so that runs are independent."""

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import uvicorn
from faststream.kafka import KafkaBroker
from pydantic import SecretStr

from notifier.app import create_app
from notifier.settings import Settings
from servicekit.kafka import make_broker
from servicekit.tokens import JobTokens

SECRET = "notifier-integration-test-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def notifier_settings(infra) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=infra["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=infra["DATABASE_URL"],
        database_schema=f"notifier_test_{run}",
        consumer_group=f"notifier-test-{run}",
        http_port=_free_port(),
        job_token_secret=SecretStr(SECRET),
        sse_heartbeat_seconds=0.5,
    )


@pytest.fixture(scope="session")
def tokens(notifier_settings) -> JobTokens:
    return JobTokens(SECRET, 600)


@pytest.fixture(scope="session")
async def notifier_url(notifier_settings) -> AsyncIterator[str]:
    settings = notifier_settings
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=settings.http_port,
        log_config=None,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 90
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the notifier stopped during start")
        assert asyncio.get_running_loop().time() < deadline, "the notifier did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.http_port}"
    finally:
        server.should_exit = True
        await task
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {settings.database_schema} CASCADE")
        finally:
            await conn.close()


@pytest.fixture
async def client(notifier_url) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=notifier_url, timeout=15) as http:
        yield http


@pytest.fixture(scope="session")
async def producer(notifier_settings) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(notifier_settings, "notifier-tests", "test producer")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture(scope="session")
async def db(notifier_settings, notifier_url) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(notifier_settings.database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()
