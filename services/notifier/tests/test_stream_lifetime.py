"""A stream's maximum lifetime (issue 19 point 4) against the real Kafka and PostgreSQL:
past ``SSE_MAX_STREAM_SECONDS`` the stream ends cleanly after an event, and a client
that reconnects as ``EventSource`` does (``Last-Event-ID``) resumes exactly: no gap,
no duplicate, across as many lifetimes as the job takes."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from notifier_testing import (
    LIFECYCLE,
    PROGRESS,
    Stream,
    drop_schema,
    follow,
    projected,
    running_server,
    services_of,
)

from contracts import JobStatus, topics
from tests.support.kafka import start_group_at_end
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

LIFETIME = 1.0
LIFETIME_OVER = "this stream reached its maximum lifetime; reconnect to resume"


@pytest.fixture(scope="module")
async def short_lived(notifier_settings) -> AsyncIterator[Any]:
    """A notifier of its own (schema, consumer group) whose streams live a second; its
    app's services."""
    run = uuid.uuid4().hex[:10]
    settings = notifier_settings.model_copy(
        update={
            "http_port": free_port(),
            "database_schema": f"notifier_lifetime_{run}",
            "consumer_group": f"notifier-lifetime-{run}",
            "sse_max_stream_seconds": LIFETIME,
            "sse_heartbeat_seconds": 0.2,
        }
    )
    await start_group_at_end(
        settings.kafka_bootstrap_servers, settings.consumer_group, topics.JOB_STATUS
    )
    try:
        async with running_server(settings) as (url, server):
            yield url, services_of(server.config.app)
    finally:
        await drop_schema(settings)


@pytest.fixture
async def short_client(short_lived) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=short_lived[0], timeout=15) as http:
        yield http


async def connect(client, job, auth, last: int | None) -> tuple[int, Stream]:
    """One connection of an EventSource: its status and what it read until the end."""
    headers = auth | ({"Last-Event-ID": str(last)} if last is not None else {})
    async with client.stream("GET", PROGRESS.format(job), headers=headers) as response:
        if response.status_code != 200:
            return response.status_code, Stream()
        return 200, await follow(response.aiter_lines(), Stream())


async def test_a_stream_ends_at_its_lifetime_and_a_reconnect_resumes_exactly(
    short_lived, short_client, publish, job, auth
):
    services = short_lived[1]
    for state, progress in LIFECYCLE[:2]:
        await publish(state, progress)
    await projected(short_client, job, auth, JobStatus.UPLOADING)

    # Nothing happens for a lifetime: the server ends the stream, cleanly.
    status, first = await asyncio.wait_for(connect(short_client, job, auth, None), 30)
    assert status == 200 and first.ended
    assert [i for i, _ in first.events] == [2], "the current state"
    assert first.comments[-1] == LIFETIME_OVER
    assert services.slots.open == 0, "its slots are free"

    # Events committed while the client was away come with the reconnect; the rest
    # live, over as many connections as lifetimes pass.
    for state, progress in LIFECYCLE[2:4]:
        await publish(state, progress)
    await projected(short_client, job, auth, JobStatus.ANALYZING)
    connections = [first]
    last = first.events[-1][0]
    finishing: asyncio.Task[Any] | None = None
    while True:
        status, stream = await asyncio.wait_for(connect(short_client, job, auth, last), 30)
        if status == 204:  # the final event was seen: EventSource stops
            break
        assert status == 200 and stream.ended
        connections.append(stream)
        if stream.events:
            last = stream.events[-1][0]
        if finishing is None:
            finishing = asyncio.create_task(publish(*LIFECYCLE[4]))
    assert finishing is not None
    await finishing

    ids = [i for stream in connections for i, _ in stream.events]
    assert ids == [2, 3, 4, 5], "no gap, no duplicate"
    statuses = [data["status"] for stream in connections for _, data in stream.events]
    assert statuses == [s for s, _ in LIFECYCLE[1:]]
    # Every connection but the last was ended by its lifetime; the last by the final event.
    assert all(s.comments and s.comments[-1] == LIFETIME_OVER for s in connections[:-1])
    assert connections[-1].events[-1][1]["status"] == "completed"
