"""Helpers of the notifier's integration tests: what a client sees of a stream."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from contracts import AudioFeatures, JobStatus
from notifier import streams
from notifier.app import create_app
from notifier.deps import Services
from notifier.fanout import FanOut
from notifier.ports import History
from notifier.projection import JobSnapshot
from notifier.settings import Settings
from notifier.slots import StreamSlots
from servicekit.serve import server as build_server
from servicekit.service import service_of
from tests.support.waiting import eventually

PROGRESS = "/tokens/analysis-progress/{}"
FEATURES = AudioFeatures(
    duration_seconds=1.0, sample_rate=8000, channels=1, frames=8000,
    rms_dbfs=-10.0, peak_dbfs=-3.0, silence_ratio=0.0,
)  # fmt: skip
LIFECYCLE = [
    (JobStatus.ACCEPTED, 0),
    (JobStatus.UPLOADING, 20),
    (JobStatus.UPLOADED, 50),
    (JobStatus.ANALYZING, 75),
    (JobStatus.COMPLETED, 100),
]


# Owners: JWTs of an identity provider, verified with one static key (UPLOAD_JWT_KEY).
ISSUER = "https://id.example.test/"
AUDIENCE = "audiopipe"
_OWNER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OWNER_AUTH: dict[str, Any] = {
    "upload_jwt_key": _OWNER_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode(),
    "upload_jwt_issuer": ISSUER,
    "upload_jwt_audience": AUDIENCE,
}
"""Settings with ``UPLOAD_AUTH=jwt`` (implied by them), for :func:`owner`'s tokens."""


def owner(subject: str) -> dict[str, str]:
    """The headers of a request by ``subject``, with its bearer JWT."""
    claims = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, _OWNER_KEY, algorithm='RS256')}"}


class MemoryResponse:
    """What ``servicekit.detached.DetachedResponse`` is to a stream, in memory: the
    bodies of the chunks written, in order, then None for the end."""

    def __init__(self) -> None:
        self.bodies: asyncio.Queue[str | None] = asyncio.Queue()
        self.paused = False
        self.keep_alive = True
        self.ended = False

    def write(self, framed: bytes) -> None:
        while framed:
            size, _, rest = framed.partition(b"\r\n")
            length = int(size, 16)
            assert length and rest[length : length + 2] == b"\r\n", "a chunk, framed"
            self.bodies.put_nowait(rest[:length].decode())
            framed = rest[length + 2 :]

    def end(self, framed: bytes = b"") -> None:
        assert not self.ended
        self.write(framed)
        self.ended = True
        self.bodies.put_nowait(None)


async def job_stream(
    store: History,
    fanout: FanOut,
    job_id: str,
    *,
    after: int | None,
    heartbeat_seconds: float,
    retry_ms: int,
    lifetime_seconds: float = 3600.0,
) -> AsyncIterator[str]:
    """One job's SSE text as the route serves it: subscribe, read the start, hand the
    stream its response (as the protocol does), read what it writes; closing the
    iterator is the client hanging up."""
    services: Any = SimpleNamespace(
        history=store,
        fanout=fanout,
        slots=StreamSlots(100, per_job=100, per_client=100),
        heartbeats=streams.Heartbeats(heartbeat_seconds, lifetime_seconds),
        settings=SimpleNamespace(sse_retry_ms=retry_ms),
    )
    live = streams.Stream(job_id, services)
    live.admit("127.0.0.1")
    fanout.join(live)
    response = MemoryResponse()
    try:
        live.begin = await streams.start(store, job_id, after)
        live.attached(response)
        while (body := await response.bodies.get()) is not None:
            yield body
    finally:
        if not response.ended:
            live.lost()
        assert services.slots.open == 0, "the stream freed its slot"
        assert not services.slots.counted(), "and its job's and address's"


@dataclass
class Stream:
    """What an EventSource would see of a ``text/event-stream`` response."""

    retry: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    ended: bool = False


async def follow(lines: AsyncIterator[str], stream: Stream, stop: int | None = None) -> Stream:
    """Read until the server ends the stream, or until ``stop`` events were read."""
    event_id, data = None, list[str]()
    async for line in lines:
        if line == "":
            if data:
                assert event_id is not None
                stream.events.append((int(event_id), json.loads("\n".join(data))))
                if stop is not None and len(stream.events) >= stop:
                    return stream
            data = []
        elif line.startswith(":"):
            stream.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(": ")
            assert name != "event", "events must use the default type"
            if name == "id":
                event_id = value
            elif name == "data":
                data.append(value)
            elif name == "retry":
                stream.retry.append(int(value))
    stream.ended = True
    return stream


async def projected(client, job, auth, status: JobStatus) -> dict[str, Any]:
    async def check():
        response = await client.get(f"/jobs/{job}", headers=auth)
        return (
            response.json()
            if response.status_code == 200 and (response.json()["status"] == status)
            else None
        )

    state: dict[str, Any] = await eventually(check)
    return state


async def history(db, schema: str, job: str) -> list[Any]:
    return list(
        await db.fetch(
            f"SELECT * FROM {schema}.job_events WHERE job_id = $1 ORDER BY seq", uuid.UUID(job)
        )
    )


@asynccontextmanager
async def running(settings: Settings, **config) -> AsyncIterator[str]:
    """A notifier (real uvicorn, as ``python -m notifier`` runs it) in this event loop,
    on ``settings.http_port``; its base URL while it runs."""
    async with running_server(settings, **config) as (url, _):
        yield url


@asynccontextmanager
async def running_server(settings: Settings, **config) -> AsyncIterator[tuple[str, Any]]:
    """As :func:`running`, with the uvicorn server (its app: ``server.config.app``)."""
    app = create_app(settings)
    options: dict[str, Any] = {"ws": "none", "timeout_graceful_shutdown": 2} | config
    server = build_server(app, settings, detached=True, **options)
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 90
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the notifier stopped during start")
        assert asyncio.get_running_loop().time() < deadline, "the notifier did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.http_port}", server
    finally:
        server.should_exit = True
        await task


def services_of(app: Any) -> Services:
    """What the notifier's routes and streams are given (``notifier.deps``)."""
    return service_of(app).get(Services)


async def drop_schema(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.database_schema} CASCADE")
    finally:
        await conn.close()


class MemoryHistory:
    """Every applied event of every job, as the projection's read side answers them;
    ``reads`` counts what was asked of it."""

    def __init__(self) -> None:
        self.events: dict[str, list[JobSnapshot]] = {}
        self.reads = 0

    def add(self, event: JobSnapshot) -> None:
        self.events.setdefault(event.job_id, []).append(event)

    async def current(self, job_id: str) -> JobSnapshot | None:
        self.reads += 1
        events = self.events.get(job_id)
        return events[-1] if events else None

    async def applied_after(self, job_id: str, event_id: int) -> list[JobSnapshot]:
        self.reads += 1
        return [e for e in self.events.get(job_id, []) if e.event_id > event_id]


@asynccontextmanager
async def serving_from_memory(settings: Settings) -> AsyncIterator[tuple[Any, MemoryHistory]]:
    """The notifier app served as ``python -m notifier`` serves it (real uvicorn and
    sockets, the detached protocol) on ``settings.http_port``, its history in memory
    (no Kafka, no database: lifespan off); the uvicorn server and the history."""
    app = create_app(settings)
    history = services_of(app).history = MemoryHistory()
    server = build_server(app, settings, detached=True, lifespan="off")
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), what="the notifier to start")
    assert server.started
    try:
        yield server, history
    finally:
        server.should_exit = True
        await task
