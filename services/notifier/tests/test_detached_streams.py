"""Streams written by the protocol itself (``servicekit.detached``, issue 14), on a real
uvicorn server in this process over real sockets; the history is in memory (what is
tested here is the connection: flow control, its reuse after a stream, pipelining).
Ids, replay, heartbeats and the drain against the real Kafka and PostgreSQL are in
test_service.py, test_event_ids.py, test_replicas.py and test_database_outage.py."""

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from notifier_testing import MemoryHistory, services_of, serving_from_memory
from pydantic import SecretStr

from contracts import JobStatus
from notifier.projection import JobSnapshot
from notifier.settings import Settings
from notifier.streams import Stream, framed
from servicekit.compat.uvicorn_protocols import DetachingHttpToolsProtocol
from servicekit.tokens import JobTokens
from tests.support.processes import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

SECRET = "notifier-detached-test-secret-32-bytes"
QUEUE = 4
END = b"\r\n0\r\n\r\n"


def snapshot(job_id: str, event_id: int, status: JobStatus, result: Any = None) -> JobSnapshot:
    return JobSnapshot(
        job_id, event_id, status, min(event_id, 100), None, result, None, datetime.now(UTC)
    )


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, Any, MemoryHistory]]:
    """A notifier on a free port, served as ``python -m notifier`` serves it; its port,
    uvicorn server and history."""
    settings = Settings(
        job_token_secret=SecretStr(SECRET), http_port=free_port(), sse_queue_size=QUEUE
    )
    async with serving_from_memory(settings) as (server, history):
        yield settings.http_port, server, history


def request(job: str) -> bytes:
    token = JobTokens(SECRET, 600).issue(job)
    path = f"/tokens/analysis-progress/{job}?access_token={token}"
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def connect(port: int, receive_buffer: int | None = None) -> Any:
    sock = socket.socket()
    if receive_buffer is not None:
        # Before connecting, so that the window the client announces is small too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


async def read_to_the_end(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while not body.endswith(END):
        data = await reader.read(1 << 20)
        assert data, "the stream ended before its last chunk"
        body += data
    return bytes(body)


def ids(body: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"^id: (\d+)$", body, re.MULTILINE)]


def the_stream(server: Any) -> tuple[DetachingHttpToolsProtocol, Stream]:
    [protocol] = [c for c in server.server_state.connections if c.detached is not None]
    assert isinstance(protocol.detached.listener, Stream)
    return protocol, protocol.detached.listener


async def test_a_slow_reader_gets_no_more_than_the_buffer_and_then_every_event_in_order(
    served,
) -> None:
    port, server, history = served
    job = str(uuid.uuid4())
    history.add(snapshot(job, 1, JobStatus.UPLOADING))
    reader, writer = await connect(port, receive_buffer=4096)
    writer.write(request(job))
    await reader.readuntil(b"id: 1\n")
    reader._transport.pause_reading()  # the client stops reading

    big = {"blob": "x" * 65536}
    count = 200  # 13 MB: more than the kernel's socket buffers hold
    for event_id in range(2, count + 2):
        final = event_id == count + 1
        event = snapshot(job, event_id, JobStatus.COMPLETED if final else JobStatus.UPLOADING, big)
        history.add(event)
        services_of(server.config.app).fanout.publish(event)

    protocol, live = the_stream(server)
    assert protocol.detached is not None and protocol.detached.paused
    _, high = protocol.transport.get_write_buffer_limits()
    # Written up to the transport's high-water mark, not one event further...
    assert protocol.transport.get_write_buffer_size() <= high + len(framed(event))
    # ...and live events held in the bounded buffer, the rest left to the history.
    assert live.pending() <= QUEUE and live.lagged

    reader._transport.resume_reading()
    body = await asyncio.wait_for(read_to_the_end(reader), 60)
    assert ids(body) == list(range(2, count + 2)), "every event once, in order"
    assert b'"status":"completed"' in body.rsplit(b"id: ", 1)[1]
    services = services_of(server.config.app)
    assert services.slots.open == 0 and services.fanout.subscriber_count() == 0
    writer.close()


async def test_after_a_stream_ends_its_connection_serves_the_next_request(served) -> None:
    port, server, history = served
    job = str(uuid.uuid4())
    history.add(snapshot(job, 1, JobStatus.ANALYZING))
    reader, writer = await connect(port)
    writer.write(request(job))
    await reader.readuntil(b"id: 1\n")
    final = snapshot(job, 2, JobStatus.COMPLETED)
    history.add(final)
    services_of(server.config.app).fanout.publish(final)
    assert ids(await asyncio.wait_for(reader.readuntil(END), 30)) == [2]
    # The reconnect of an EventSource, on the same connection: the final was seen.
    writer.write(request(job).replace(b"Host: x", b"Host: x\r\nLast-Event-ID: 2"))
    assert await asyncio.wait_for(reader.readline(), 30) == b"HTTP/1.1 204 No Content\r\n"
    writer.close()


async def test_a_request_pipelined_behind_a_stream_is_answered_after_its_end(served) -> None:
    port, server, history = served
    job = str(uuid.uuid4())
    history.add(snapshot(job, 1, JobStatus.ANALYZING))
    reader, writer = await connect(port)
    writer.write(request(job) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"id: 1\n")
    assert head.count(b"HTTP/1.1 ") == 1
    services_of(server.config.app).fanout.publish(snapshot(job, 2, JobStatus.FAILED))
    rest = await asyncio.wait_for(reader.readuntil(END), 30)
    assert ids(rest) == [2] and b"HTTP/1.1 " not in rest, "nothing interleaved"
    assert await asyncio.wait_for(reader.readline(), 30) == b"HTTP/1.1 200 OK\r\n"
    writer.close()


async def test_a_client_that_hangs_up_frees_its_stream(served) -> None:
    port, server, history = served
    job = str(uuid.uuid4())
    history.add(snapshot(job, 1, JobStatus.UPLOADING))
    reader, writer = await connect(port)
    writer.write(request(job))
    await reader.readuntil(b"id: 1\n")
    services = services_of(server.config.app)
    assert services.slots.open == 1
    writer.close()
    await eventually(lambda: services.slots.open == 0, what="the stream to be freed")
    assert services.fanout.subscriber_count() == 0
    assert not [c for c in server.server_state.connections if c.detached is not None]


async def test_a_client_that_hangs_up_before_the_stream_began_leaves_nothing(served) -> None:
    port, server, history = served
    job = str(uuid.uuid4())
    history.add(snapshot(job, 1, JobStatus.UPLOADING))
    gate = asyncio.Event()
    current = history.current

    async def slow_current(job_id: str) -> JobSnapshot | None:
        await gate.wait()  # the database answers after the client left
        found: JobSnapshot | None = await current(job_id)
        return found

    history.current = slow_current
    _, writer = await connect(port)
    writer.write(request(job))
    services = services_of(server.config.app)
    await eventually(lambda: services.fanout.subscriber_count() == 1, what="the request")
    writer.close()
    await eventually(lambda: not server.server_state.connections, what="the hang-up")
    gate.set()
    await eventually(lambda: services.fanout.subscriber_count() == 0, what="the stream to leave")
    assert services.slots.open == 0
