"""Notifiers running in-process (real uvicorn on free ports) against the real Kafka and
PostgreSQL, with their own schema and consumer group so that runs are independent."""

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from faststream.kafka import KafkaBroker
from pydantic import SecretStr

from contracts import JobError, JobStatus, JobStatusChanged, topics
from notifier.settings import Settings
from servicekit.kafka import make_broker
from servicekit.tokens import COOKIE_NAME, JobTokens
from tests.support.kafka import publish_event

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
from notifier_testing import FEATURES, OWNER_AUTH, drop_schema, running

from tests.support.kafka import start_group_at_end
from tests.support.processes import free_port

SECRET = "notifier-integration-test-secret-0123456789"


@pytest.fixture(scope="session")
def notifier_settings(infra) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=infra["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=infra["DATABASE_URL"],
        database_schema=f"notifier_test_{run}",
        consumer_group=f"notifier-test-{run}",
        http_port=free_port(),
        job_token_secret=SecretStr(SECRET),
        sse_heartbeat_seconds=0.5,
        listen_reconnect_seconds=0.1,
        # Owners exist (UPLOAD_AUTH=jwt, implied): notifier_testing.owner signs their JWTs.
        **OWNER_AUTH,
    )


@pytest.fixture(scope="session")
def tokens(notifier_settings) -> JobTokens:
    return JobTokens(SECRET, 600)


@pytest.fixture(scope="session")
async def notifier_url(notifier_settings) -> AsyncIterator[str]:
    settings = notifier_settings
    await start_group_at_end(
        settings.kafka_bootstrap_servers, settings.consumer_group, topics.JOB_STATUS
    )
    await start_group_at_end(
        settings.kafka_bootstrap_servers, settings.deletion_consumer_group, topics.JOB_DELETED
    )
    try:
        async with running(notifier_settings) as url:
            yield url
    finally:
        await drop_schema(notifier_settings)


@pytest.fixture(scope="session")
async def second_notifier_url(notifier_settings, notifier_url) -> AsyncIterator[str]:
    """Another replica: same database schema and consumer group, its own port."""
    settings = notifier_settings.model_copy(update={"http_port": free_port()})
    async with running(settings) as url:
        yield url


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
    pool = await asyncpg.create_pool(notifier_settings.database_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def job() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def publish(producer, job):
    """Publish a status of ``job``; the ce_id defaults to a fresh one."""

    async def _publish(status: JobStatus, progress: int, ce_id: str | None = None, **extra):
        if status is JobStatus.COMPLETED:
            extra.setdefault("result", FEATURES)
        if status is JobStatus.FAILED:
            extra.setdefault("error", JobError(code="analysis_timeout", message="too slow"))
        event = JobStatusChanged(job_id=job, status=status, progress=progress, **extra)
        ce_id = ce_id or f"{job}:{uuid.uuid4().hex}"
        await publish_event(producer, topics.JOB_STATUS, event, source="tests", ce_id=ce_id)
        return ce_id

    return _publish


@pytest.fixture
def auth(tokens, job) -> dict[str, str]:
    return {"Cookie": f"{COOKIE_NAME}={tokens.issue(job)}"}
