"""PostgreSQL going away under a running notifier (issue 11): 503 JSON with Retry-After
instead of 500s or cut bodies, streams that end cleanly or carry on, no event lost by
the consumer, and recovery without a restart.

The notifier reaches the database through a TCP proxy this module owns, so the
session's PostgreSQL, which other tests share, is never stopped.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import TopicPartition
from notifier_testing import (
    LIFECYCLE,
    PROGRESS,
    Stream,
    drop_schema,
    follow,
    history,
    running_server,
    services_of,
)
from pydantic import SecretStr

from contracts import JobStatus, JobStatusChanged, topics
from notifier.settings import Settings
from tests.support.kafka import committed_offset, publish_event, start_group_at_end
from tests.support.processes import free_port
from tests.support.tcp_proxy import TcpProxy, tcp_proxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def proxy(infra) -> AsyncIterator[TcpProxy]:
    database = urlsplit(infra["DATABASE_URL"])
    async with tcp_proxy(database.hostname or "127.0.0.1", database.port or 5432) as proxy:
        yield proxy


@pytest.fixture(scope="module")
async def proxied(notifier_settings, proxy) -> AsyncIterator[tuple[str, object, Settings]]:
    """A notifier of its own (schema, group) whose database is behind ``proxy``: its
    base URL, its app and its settings."""
    run = uuid.uuid4().hex[:10]
    run_schema = f"notifier_outage_{run}"
    direct = urlsplit(notifier_settings.database_dsn)
    netloc = direct.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}"
    settings = notifier_settings.model_copy(
        update={
            "database_url": SecretStr(direct._replace(netloc=netloc).geturl()),
            "database_schema": run_schema,
            "consumer_group": f"notifier-outage-{run}",
            "http_port": free_port(),
            "database_timeout_seconds": 1.0,
            "listen_check_seconds": 0.5,
        }
    )
    await start_group_at_end(
        settings.kafka_bootstrap_servers, settings.consumer_group, topics.JOB_STATUS
    )
    try:
        async with running_server(settings) as (url, server):
            yield url, server.config.app, settings
    finally:
        await proxy.restore()
        await drop_schema(notifier_settings.model_copy(update={"database_schema": run_schema}))


@pytest.fixture
async def http(proxied, proxy) -> AsyncIterator[httpx.AsyncClient]:
    url, _, _ = proxied
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        yield client
    # Whatever a test did, the next one starts with the database back and seen.
    await proxy.restore()
    await eventually(lambda: _ready(url), what="the notifier to be ready again")


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        return (await client.get("/readyz")).status_code == 200


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "unavailable"
    assert "postgresql" in response.json()["error"]["message"]


async def test_with_the_database_down_every_route_that_needs_it_is_503_then_recovers(
    http, proxy, proxied, publish, job, auth
):
    services = services_of(proxied[1])
    await publish(JobStatus.ACCEPTED, 0)
    await eventually(lambda: _status(http, f"/jobs/{job}", auth, 200))
    await proxy.cut()

    assert_unavailable(await http.get(f"/jobs/{job}", headers=auth))
    # Refused before the stream starts: a JSON answer, not a 200 whose body breaks off.
    assert_unavailable(await http.get(PROGRESS.format(job), headers=auth))
    resume = {**auth, "Last-Event-ID": "1"}
    assert_unavailable(await http.get(PROGRESS.format(job), headers=resume))
    assert (await http.get("/readyz")).status_code == 503
    # The refused streams left nothing behind: no subscription, no stream slot.
    assert not services.fanout.has_subscribers(job)
    assert services.slots.open == 0

    await proxy.restore()
    snapshot = await eventually(lambda: _status(http, f"/jobs/{job}", auth, 200))
    assert snapshot.json()["status"] == "accepted"


async def test_a_database_that_stops_answering_is_a_503_after_the_bound_not_a_hang(
    http, proxy, job, auth
):
    assert (await http.get(f"/jobs/{job}", headers=auth)).status_code == 404
    proxy.black_hole()  # connections stay open, and nothing comes back
    # database_timeout_seconds is 1 here; the client would give up after 20.
    assert_unavailable(await http.get(f"/jobs/{job}", headers=auth))
    assert_unavailable(await http.get(PROGRESS.format(job), headers=auth))


async def test_an_open_stream_outlives_the_outage_and_nothing_published_meanwhile_is_lost(
    http, proxy, producer, publish, job, auth, db, proxied, caplog
):
    settings: Settings = proxied[2]
    await publish(*LIFECYCLE[0])
    following = asyncio.create_task(_event_source(http, job, auth))
    await eventually(lambda: _status(http, f"/jobs/{job}", auth, 200))
    await proxy.cut()
    during = [
        await publish_event(
            producer,
            topics.JOB_STATUS,
            JobStatusChanged(job_id=job, status=status, progress=progress),
            source="tests",
            ce_id=f"{job}:{status}",
        )
        for status, progress in LIFECYCLE[1:3]
    ]
    # The consumer got them, could not record them, and committed nothing past them.
    await eventually(
        lambda: any("they come again" in r.getMessage() for r in caplog.records),
        what="the consumer to fail on the outage",
    )
    first = during[0]
    assert first is not None
    partition = TopicPartition(topics.JOB_STATUS, first.partition)
    committed = await committed_offset(
        settings.kafka_bootstrap_servers, settings.consumer_group, partition
    )
    assert committed is not None and committed <= first.offset
    await proxy.restore()
    for status, progress in LIFECYCLE[3:]:
        await publish(status, progress)

    events, connections = await asyncio.wait_for(following, 60)
    # One sequence: every applied event once, in order, whatever reconnects it took.
    assert [i for i, _ in events] == [1, 2, 3, 4, 5]
    assert [data["status"] for _, data in events] == [s.value for s, _ in LIFECYCLE]
    assert connections >= 1
    final = (await http.get(f"/jobs/{job}", headers=auth)).json()
    assert (final["event_id"], final["status"]) == (5, "completed")
    # Recorded once each, after the database came back.
    rows = await history(db, settings.database_schema, job)
    assert [r["event_id"] for r in rows] == [1, 2, 3, 4, 5]
    assert len({r["ce_id"] for r in rows}) == 5


async def test_a_stream_that_must_read_while_the_database_is_down_ends_cleanly(
    http, proxy, proxied, publish, job, auth
):
    _, app, _ = proxied
    await publish(*LIFECYCLE[0])
    await eventually(lambda: _status(http, f"/jobs/{job}", auth, 200))
    async with http.stream("GET", PROGRESS.format(job), headers=auth) as response:
        lines = response.aiter_lines()
        before = await asyncio.wait_for(follow(lines, Stream(), stop=1), 20)
        await proxy.cut()
        # What the listener does after a lost notification: re-read the history.
        services_of(app).fanout.resync_all()
        stream = await asyncio.wait_for(follow(lines, before), 20)
    assert stream.ended  # a proper end of the chunked body: EventSource reconnects
    assert any("database" in comment for comment in stream.comments)
    assert [i for i, _ in stream.events] == [1]

    await proxy.restore()
    resume = {**auth, "Last-Event-ID": "1"}
    await eventually(lambda: _ready(str(http.base_url)))
    async with http.stream("GET", PROGRESS.format(job), headers=resume) as response:
        assert response.status_code == 200
        reading = asyncio.create_task(follow(response.aiter_lines(), Stream()))
        for status, progress in LIFECYCLE[1:]:
            await publish(status, progress)
        rest = await asyncio.wait_for(reading, 30)
    assert [i for i, _ in rest.events] == [2, 3, 4, 5]
    assert rest.ended


async def _status(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], status: int
) -> httpx.Response | None:
    response = await http.get(path, headers=headers)
    return response if response.status_code == status else None


async def _event_source(
    http: httpx.AsyncClient, job: str, auth: dict[str, str]
) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """What a browser's EventSource does: follow, and after a clean end before the
    final event reconnect with Last-Event-ID (here also after a 503, which a browser
    would only get past through the edge's retries). The events and connections."""
    events: list[tuple[int, dict[str, Any]]] = []
    connections = 0
    while not events or events[-1][1]["status"] not in ("completed", "failed"):
        headers = dict(auth)
        if events:
            headers["Last-Event-ID"] = str(events[-1][0])
        async with http.stream("GET", PROGRESS.format(job), headers=headers) as response:
            if response.status_code != 200:
                assert response.status_code == 503
                await response.aread()
                await asyncio.sleep(0.2)
                continue
            connections += 1
            stream = await follow(response.aiter_lines(), Stream())
            assert stream.ended
            events += stream.events
    return events, connections


async def test_a_notifier_started_while_the_database_is_down_waits_for_it_then_serves(
    notifier_settings, publish, job, auth, caplog
):
    """PostgreSQL down at start (issue 23): the notifier does not exit. It is alive and
    not ready, says what it waits for in /readyz and in its log, answers 503 where it
    needs the database, and once the database answers it starts and projects what was
    published meanwhile (servicekit.service, docs/architecture.md §15)."""
    direct = urlsplit(notifier_settings.database_dsn)
    run = uuid.uuid4().hex[:10]
    async with tcp_proxy(direct.hostname or "127.0.0.1", direct.port or 5432) as database:
        await database.cut()
        netloc = direct.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{database.port}"
        settings = notifier_settings.model_copy(
            update={
                "database_url": SecretStr(direct._replace(netloc=netloc).geturl()),
                "database_schema": f"notifier_late_{run}",
                "consumer_group": f"notifier-late-{run}",
                "http_port": free_port(),
                "start_retry_max_seconds": 1.0,
            }
        )
        bootstrap = settings.kafka_bootstrap_servers
        await start_group_at_end(bootstrap, settings.consumer_group, topics.JOB_STATUS)
        try:
            async with (
                running_server(settings) as (url, _),
                httpx.AsyncClient(base_url=url, timeout=20) as http,
            ):
                assert (await http.get("/healthz")).status_code == 200
                waiting = await http.get("/readyz")
                assert waiting.status_code == 503
                assert waiting.json()["error"]["message"].startswith("waiting for PostgreSQL: ")
                assert any(
                    r.name == "servicekit.service" and "waiting for PostgreSQL" in r.getMessage()
                    for r in caplog.records
                )
                refused = await http.get(f"/jobs/{job}", headers=auth)
                assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
                assert refused.json()["error"]["code"] == "unavailable"
                await publish(JobStatus.ACCEPTED, 0)  # waits in Kafka meanwhile

                await database.restore()
                await eventually(lambda: _ready(url), what="the notifier to start")
                snapshot = await eventually(lambda: _status(http, f"/jobs/{job}", auth, 200))
                assert snapshot.json()["status"] == "accepted"
        finally:
            await drop_schema(settings)
