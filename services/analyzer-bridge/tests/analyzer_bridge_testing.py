"""Helpers of the analyzer-bridge's real-service tests: a fake analysis server, the
reference analysis server, uvicorn in-process on a free port, and a reader of the
events the bridge publishes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request, Response
from faststream.kafka import KafkaBroker

from analyzer_bridge.settings import Settings
from contracts import AnalysisRequest, AudioStored, Event
from reference_analyzer.app import create_app as create_reference_app
from reference_analyzer.settings import Settings as ReferenceSettings
from reference_analyzer.testing import encode, sine
from servicekit import webhooks
from tests.support.kafka import publish_event
from tests.support.waiting import eventually

# Real audio, so that the reference analysis server can check and decode it.
AUDIO = encode(sine(seconds=0.5, sample_rate=8000), 8000)
AUDIO_SHA256 = hashlib.sha256(AUDIO).hexdigest()
SIGNING_SECRET = "whsec_" + base64.b64encode(b"analyzer-bridge-test-signing-key").decode()
BUCKET = "analyzer-bridge-tests"
AUDIO_KEY = f"{uuid.uuid4()}/take.wav"


async def wait_until(condition: Callable[[], Any], within: float = 30.0, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy; fail after ``within`` seconds."""
    return await eventually(condition, within, what=what or str(condition))


# --- analysis servers ---------------------------------------------------------------


class AnalysisServerApp(Protocol):
    """What the ``start_bridge`` fixture serves as the analysis server."""

    app: Any
    url: str


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


class FakeAnalysisServer:
    """Answers ``POST /analyze`` from a per-job script (202 when nothing is scripted)
    and posts webhooks to the URL a request carried, signed when given a secret."""

    def __init__(self, signing_secret: str | None = None) -> None:
        self.requests: list[tuple[float, AnalysisRequest]] = []
        self.script: dict[str, list[Scripted]] = {}
        self.signing_secret = signing_secret
        self.url = ""
        self.app = FastAPI()
        self.app.post("/analyze")(self._analyze)

    async def _analyze(self, request: Request) -> Response:
        body = AnalysisRequest.model_validate_json(await request.body())
        self.requests.append((time.monotonic(), body))
        answers = self.script.get(body.job_id)
        answer = answers.pop(0) if answers else Scripted(202, body={"status": "accepted"})
        return Response(
            json.dumps(answer.body),
            status_code=answer.status,
            headers=answer.headers,
            media_type="application/json",
        )

    def requests_for(self, job_id: str) -> list[AnalysisRequest]:
        return [r for _, r in self.requests if r.job_id == job_id]

    async def send(
        self,
        job_id: str,
        body: dict[str, Any] | bytes,
        *,
        webhook_id: str | None = None,
        headers: dict[str, str] | None = None,
        url: str | None = None,
    ) -> httpx.Response:
        """POST a webhook for ``job_id`` to the URL of its last request."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = dict(headers or {})
        if self.signing_secret and headers is None:
            sent = webhooks.signed_headers(
                self.signing_secret, webhook_id or f"msg_{uuid.uuid4().hex}", int(time.time()), raw
            )
        elif webhook_id:
            sent[webhooks.ID_HEADER] = webhook_id
        target = url or self.requests_for(job_id)[-1].webhook_url
        async with httpx.AsyncClient() as client:
            return await client.post(
                target, content=raw, headers={**sent, "content-type": "application/json"}
            )


class ReferenceServer:
    """The reference analysis server (``reference_analyzer``), quick to retry and signing
    with :data:`SIGNING_SECRET`; its test modes come from the request metadata. Each
    ``serve`` runs its lifespan anew, so what it has seen starts from nothing."""

    def __init__(self, client: httpx.AsyncClient | None = None, **settings: Any) -> None:
        values: dict[str, Any] = {
            "webhook_signing_secret": SIGNING_SECRET,
            "retry_backoff_seconds": 0.05,
            "retry_max_delay_seconds": 0.5,
            "retry_after_seconds": 1,
            "block_frames": 4096,
            "progress_interval_seconds": 0,  # every step: the tests follow its forwarding
            **settings,
        }
        self.settings = ReferenceSettings.model_validate(values)
        self.app = create_reference_app(self.settings, client=client)
        self.url = ""

    async def job(self, job_id: str, wait: float = 30) -> dict[str, Any]:
        """What the server saw of a job (``GET /jobs/{id}``), once no run of it is busy."""
        async with httpx.AsyncClient(base_url=self.url, timeout=wait + 10) as client:
            response = await client.get(f"/jobs/{job_id}", params={"wait": wait})
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    async def requests(self, job_id: str) -> int:
        """``POST /analyze`` calls for a job since the server (re)started."""
        async with httpx.AsyncClient(base_url=self.url) as client:
            response = await client.get(f"/jobs/{job_id}")
        if response.status_code == 404:
            return 0
        assert response.status_code == 200, response.text
        return int(response.json()["requests"])


# --- events on Kafka ----------------------------------------------------------------


@dataclass
class Seen:
    topic: str
    headers: dict[str, str]
    value: dict[str, Any]


class EventLog:
    """Everything published on some topics since they were created."""

    def __init__(self, bootstrap: str, names: list[str]) -> None:
        self.seen: list[Seen] = []
        self._consumer = AIOKafkaConsumer(
            *names, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self._consumer:
            headers = {k: v.decode() for k, v in record.headers}
            try:
                value = json.loads(record.value)
            except ValueError:
                value = {"raw": record.value.decode(errors="replace")}
            self.seen.append(Seen(record.topic, headers, value))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def of(self, job_id: str, topic: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.headers.get("ce_subject") == job_id and (topic is None or s.topic == topic)
        ]


async def barrier(producer: KafkaBroker, events: EventLog, topic: str) -> None:
    """Return once ``events`` read everything published on ``topic`` before the call
    (one partition: a marker published now is read after all of it)."""
    marker = str(uuid.uuid4())
    await producer.publish(b"{}", topic, key=marker.encode(), headers={"ce_subject": marker})
    await wait_until(lambda: events.of(marker), 30, "the barrier")


# --- the bridge under test ----------------------------------------------------------


def stored(job_id: str) -> AudioStored:
    """``audio.stored`` for the test audio (the ``stored_audio`` fixture puts it in S3)."""
    return AudioStored(
        job_id=job_id,
        bucket=BUCKET,
        key=AUDIO_KEY,
        size=len(AUDIO),
        sha256=AUDIO_SHA256,
        content_type="audio/wav",
        filename="take.wav",
    )


async def wait_for(
    condition: Callable[[], Awaitable[Any]], within: float = 30.0, what: str = ""
) -> Any:
    """Poll an async ``condition`` until it is truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.05)


@dataclass
class Bridge:
    url: str
    settings: Settings
    server: Any  # FakeAnalysisServer or ReferenceServer
    events: EventLog
    producer: KafkaBroker
    pool: asyncpg.Pool

    @property
    def status_topic(self) -> str:
        return self.settings.job_status_topic

    @property
    def result_topic(self) -> str:
        return self.settings.analysis_result_topic

    def stored(self, job_id: str | None = None) -> AudioStored:
        return stored(job_id or str(uuid.uuid4()))

    async def publish(self, event: Event, topic: str | None = None) -> None:
        await publish_event(
            self.producer,
            topic or self.settings.audio_stored_topic,
            event,
            source="tests",
            ce_id=f"{event.job_id}:stored",
        )

    async def row(self, job_id: str) -> dict[str, Any] | None:
        r = await self.pool.fetchrow(
            f"SELECT * FROM {self.settings.database_schema}.analyses WHERE job_id = $1", job_id
        )
        return dict(r) if r else None

    async def barrier(self) -> None:
        """Return once everything published before it on the status topic was read."""
        await barrier(self.producer, self.events, self.status_topic)

    def statuses(self, job_id: str) -> list[tuple[str, int]]:
        return [
            (s.value["status"], s.value["progress"])
            for s in self.events.of(job_id, self.status_topic)
        ]

    def finals(self, job_id: str) -> list[Seen]:
        return [
            s
            for s in self.events.of(job_id, self.status_topic)
            if s.value["status"] in ("completed", "failed")
        ]

    async def final(self, job_id: str, within: float = 30) -> dict[str, Any]:
        """The final ``job.status`` of a job, once published."""
        finals = await wait_until(lambda: self.finals(job_id), within, "the final status")
        value: dict[str, Any] = finals[0].value
        return value

    async def accepted(self, job_id: str) -> AnalysisRequest:
        """Publish ``audio.stored`` for the job and wait for the analysis request."""
        await self.publish(self.stored(job_id))
        await wait_until(lambda: self.server.requests_for(job_id), 30, "the /analyze request")
        await wait_until(lambda: self.events.of(job_id, self.status_topic), 30, "analyzing")
        request: AnalysisRequest = self.server.requests_for(job_id)[-1]
        return request
