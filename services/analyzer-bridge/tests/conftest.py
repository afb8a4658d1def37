"""Fixtures for the analyzer-bridge's real-service tests.

Each test gets its own topics, PostgreSQL schema and consumer group, so tests neither
see each other's jobs nor touch the shared stack's real topics and tables.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from analyzer_bridge.app import create_app
from analyzer_bridge.settings import Settings
from contracts import topics
from servicekit.kafka import make_broker
from servicekit.s3 import ensure_bucket, s3_client
from servicekit.settings import S3Settings
from tests.support.inprocess import bound_socket, serving

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
from analyzer_bridge_testing import (
    AUDIO,
    AUDIO_KEY,
    BUCKET,
    AnalysisServerApp,
    Bridge,
    EventLog,
    FakeAnalysisServer,
)


@pytest.fixture(scope="session")
async def stored_audio(infra: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
    settings = S3Settings(
        s3_endpoint_url=infra["S3_ENDPOINT_URL"],
        s3_access_key_id=infra.get("S3_ACCESS_KEY_ID", "audiopipe"),
        s3_secret_access_key=infra.get("S3_SECRET_ACCESS_KEY", "audiopipe-secret"),
    )
    async with s3_client(settings) as client:
        await ensure_bucket(client, BUCKET)
        await client.put_object(Bucket=BUCKET, Key=AUDIO_KEY, Body=AUDIO)
        yield BUCKET, AUDIO_KEY
        await client.delete_object(Bucket=BUCKET, Key=AUDIO_KEY)


@pytest.fixture
async def producer(infra: dict[str, str]) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(
        Settings(kafka_bootstrap_servers=infra["KAFKA_BOOTSTRAP_SERVERS"]), "tests", "tests"
    )
    await broker.start()
    yield broker
    await broker.stop()


StartBridge = Callable[..., contextlib.AbstractAsyncContextManager[Bridge]]


@dataclass(frozen=True)
class Namespace:
    """A test's own PostgreSQL schema, topics and consumer-group prefix."""

    name: str
    topics: dict[str, str]
    """Settings field (``audio_stored_topic``, ...) → this test's topic."""


@pytest.fixture
async def namespace(infra: dict[str, str]) -> AsyncIterator[Namespace]:
    """A fresh namespace; its schema and topics are dropped after the test."""
    ns = f"abt_{uuid.uuid4().hex[:10]}"
    yield Namespace(
        ns,
        {
            "audio_stored_topic": f"{ns}.{topics.AUDIO_STORED}",
            "analysis_result_topic": f"{ns}.{topics.ANALYSIS_RESULT}",
            "job_status_topic": f"{ns}.{topics.JOB_STATUS}",
            "job_deleted_topic": f"{ns}.{topics.JOB_DELETED}",
        },
    )
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    conn = await asyncpg.connect(infra["DATABASE_URL"])
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {ns} CASCADE")
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(ns)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest.fixture
async def db(infra: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(infra["DATABASE_URL"], min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def start_bridge(
    infra: dict[str, str],
    producer: KafkaBroker,
    stored_audio: tuple[str, str],
    namespace: Namespace,
    db: asyncpg.Pool,
) -> StartBridge:
    """Start bridges on this test's own topics and schema; settings may be overridden.
    ``server`` is the analysis server to serve (a fresh fake one by default)."""
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    ns = namespace.name

    @contextlib.asynccontextmanager
    async def start(
        server: AnalysisServerApp | None = None, group: str | None = None, **overrides: Any
    ) -> AsyncIterator[Bridge]:
        server = server or FakeAnalysisServer()
        async with serving(server.app, bound_socket()) as server_url:
            server.url = server_url
            sock = bound_socket()
            host, port = sock.getsockname()
            values: dict[str, Any] = {
                "kafka_bootstrap_servers": bootstrap,
                "kafka_topic_partitions": 1,
                "s3_endpoint_url": infra["S3_ENDPOINT_URL"],
                "s3_access_key_id": infra.get("S3_ACCESS_KEY_ID", "audiopipe"),
                "s3_secret_access_key": infra.get("S3_SECRET_ACCESS_KEY", "audiopipe-secret"),
                "database_url": infra["DATABASE_URL"],
                "database_schema": ns,
                "consumer_group": f"{ns}-{group or uuid.uuid4().hex[:6]}",
                "analysis_server_url": server_url,
                "public_base_url": f"http://{host}:{port}",
                "deadline_sweep_interval_seconds": 0.2,
                "retry_base_delay_seconds": 0.05,
                "retry_max_delay_seconds": 0.5,
                **namespace.topics,
                **overrides,
            }
            settings = Settings(**values)
            async with serving(create_app(settings), sock) as url:
                events = EventLog(
                    bootstrap, [settings.analysis_result_topic, settings.job_status_topic]
                )
                await events.start()
                try:
                    yield Bridge(url, settings, server, events, producer, db)
                finally:
                    await events.stop()

    return start
