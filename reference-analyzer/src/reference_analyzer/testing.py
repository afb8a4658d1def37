"""Test helpers for this package and for the tests of its callers (the bridge).

- :func:`sine` and :func:`encode` generate audio files in memory (every format the
  decoder reads, with PyAV's encoders);
- :class:`AudioServer` stands in for S3's presigned GET URLs;
- :class:`WebhookReceiver` records webhooks and lets a test wait for them;
- :class:`HostRouter` routes an ``httpx`` client to in-memory ASGI apps by host;
- :class:`SignedRequests` signs an ``httpx`` client's requests as the bridge signs
  ``POST /analyze``;
- :func:`serve` runs any ASGI app (e.g. :func:`~reference_analyzer.app.create_app`)
  with uvicorn on 127.0.0.1.
"""

import asyncio
import contextlib
import hashlib
import io
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import av
import httpx
import numpy as np
import numpy.typing as npt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts import AnalysisRequest
from servicekit import webhooks


def sine(
    *,
    seconds: float = 1.0,
    sample_rate: int = 8000,
    frequency: float = 440.0,
    amplitude: float = 0.5,
    channels: int = 1,
) -> npt.NDArray[np.float64]:
    """A sine wave, frames x channels, the same on every channel."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    mono = amplitude * np.sin(2 * np.pi * frequency * t)
    return np.repeat(mono[:, None], channels, axis=1)


# (format, subtype) -> FFmpeg muxer, encoder, encoder sample format (None: its default).
# The names follow the features' `format`/`subtype`; MP4 is written as .m4a (`ipod`).
ENCODINGS: Final[dict[tuple[str, str], tuple[str, str, str | None]]] = {
    ("WAV", "PCM_16"): ("wav", "pcm_s16le", None),
    ("WAV", "PCM_24"): ("wav", "pcm_s24le", None),
    ("WAV", "PCM_32"): ("wav", "pcm_s32le", None),
    ("WAV", "FLOAT"): ("wav", "pcm_f32le", None),
    ("AIFF", "PCM_16"): ("aiff", "pcm_s16be", None),
    ("AIFF", "PCM_24"): ("aiff", "pcm_s24be", None),
    ("FLAC", "PCM_16"): ("flac", "flac", "s16"),
    ("MP3", "MP3"): ("mp3", "libmp3lame", None),
    ("OGG", "VORBIS"): ("ogg", "vorbis", None),
    ("OGG", "OPUS"): ("ogg", "libopus", None),
    ("WEBM", "OPUS"): ("webm", "libopus", None),
    ("WEBM", "VORBIS"): ("webm", "vorbis", None),
    ("MP4", "AAC"): ("ipod", "aac", None),
}


MEDIARECORDER_WEBM: Final = {"live": "1"}
"""WebM as a browser's MediaRecorder writes it: no duration, no cues (FFmpeg's `live`)."""


def encode(
    samples: npt.NDArray[np.floating],
    sample_rate: int,
    format: str = "WAV",
    subtype: str = "PCM_16",
    *,
    muxer_options: Mapping[str, str] | None = None,
    start_seconds: float = 0.0,
) -> bytes:
    """The bytes of an audio file holding ``samples`` (frames x channels, or frames),
    encoded with PyAV; ``(format, subtype)`` is a key of :data:`ENCODINGS`.
    ``muxer_options`` go to FFmpeg's muxer, e.g. :data:`MEDIARECORDER_WEBM`;
    ``start_seconds`` is the first sample's timestamp (a capture begun mid-stream)."""
    muxer, codec, sample_format = ENCODINGS[(format.upper(), subtype.upper())]
    frames = np.asarray(samples, dtype=np.float32)
    if frames.ndim == 1:
        frames = frames[:, None]
    layout = {1: "mono", 2: "stereo"}.get(frames.shape[1], f"{frames.shape[1]}c")
    buffer = io.BytesIO()
    options = dict(muxer_options or {})
    with av.open(buffer, mode="w", format=muxer, container_options=options) as out:
        stream: Any = out.add_stream(codec, rate=sample_rate, layout=layout)
        if sample_format:
            stream.codec_context.format = sample_format
        if codec == "vorbis":  # FFmpeg's own Vorbis encoder counts as experimental
            stream.codec_context.options = {"strict": "experimental"}
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(frames).reshape(1, -1), format="flt", layout=layout
        )
        frame.sample_rate = sample_rate
        frame.pts = round(start_seconds * sample_rate)
        # The encoder re-cuts the frame to its own frame size and sample format.
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


def analysis_request(
    audio_url: str, data: bytes, webhook_url: str, job_id: str | None = None, **metadata: str
) -> AnalysisRequest:
    """An ``AnalysisRequest`` for ``data`` served at ``audio_url``."""
    return AnalysisRequest(
        job_id=job_id or str(uuid.uuid4()),
        audio_url=audio_url,
        content_type="application/octet-stream",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        webhook_url=webhook_url,
        metadata=metadata,
    )


class AudioServer:
    """Serves audio bytes at unguessable paths, like presigned S3 GET URLs."""

    def __init__(self, base_url: str = "http://audio.test") -> None:
        self.base_url = base_url
        self.files: dict[str, bytes] = {}
        self.requests: dict[str, int] = {}
        self.fail_first: dict[str, int] = {}
        self.app = Starlette(routes=[Route("/bucket/{name}", self._get, methods=["GET"])])

    def add(self, data: bytes, *, fail_first: int = 0) -> str:
        """Serve ``data``; the first ``fail_first`` GETs answer 500. Returns its URL."""
        name = uuid.uuid4().hex
        self.files[name] = data
        self.requests[name] = 0
        self.fail_first[name] = fail_first
        return f"{self.base_url}/bucket/{name}?X-Amz-Signature=secret-{name}"

    async def _get(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:
            return Response(status_code=404)
        self.requests[name] += 1
        if self.requests[name] <= self.fail_first[name]:
            return Response(status_code=500)
        return Response(self.files[name], media_type="application/octet-stream")


@dataclass(frozen=True)
class Delivery:
    """One webhook attempt as received."""

    job_id: str
    headers: dict[str, str]
    body: bytes
    status_code: int

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class WebhookReceiver:
    """Records every webhook attempt at ``/hooks/{job_id}``; answers 204, or 503 with
    ``Retry-After: 0`` to the first ``fail_first[job_id]`` attempts of a job. The first
    attempt of a job in ``hold`` is answered only once its event is set (a slow
    receiver)."""

    base_url: str = "http://hooks.test"
    attempts: list[Delivery] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/hooks/{job_id}", self._post, methods=["POST"])])

    def url(self, job_id: str) -> str:
        return f"{self.base_url}/hooks/{job_id}?token=capability-{job_id}"

    async def _post(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        body = await request.body()
        if job_id in self.hold:
            await self.hold.pop(job_id).wait()
        failing = self.fail_first.get(job_id, 0) > 0
        if failing:
            self.fail_first[job_id] -= 1
        status_code = 503 if failing else 204
        async with self._changed:
            self.attempts.append(Delivery(job_id, dict(request.headers), body, status_code))
            self._changed.notify_all()
        return Response(status_code=status_code, headers={"Retry-After": "0"} if failing else {})

    def delivered(self, job_id: str) -> list[Delivery]:
        """The webhooks of a job answered with 204, in order of arrival."""
        return [d for d in self.attempts if d.job_id == job_id and d.status_code == 204]

    def finals(self, job_id: str) -> list[Delivery]:
        return [d for d in self.delivered(job_id) if d.json["status"] != "progress"]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; re-checked on every webhook received.
        Bound it with ``asyncio.timeout``."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def wait_final(self, job_id: str, count: int = 1) -> list[Delivery]:
        """Wait for ``count`` final webhooks of a job; returns all its deliveries."""
        await self.wait_for(lambda: len(self.finals(job_id)) >= count)
        return self.delivered(job_id)


class HostRouter(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that sends each request to the ASGI app of its host."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self._transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError("no such host", request=request)
        return await transport.handle_async_request(request)


class SignedRequests(httpx.Auth):
    """Standard Webhooks headers on every request of an ``httpx`` client (its body
    signed with ``secret`` by :mod:`servicekit.webhooks`), a fresh ``webhook-id`` each:
    what the reference server asks of ``POST /analyze`` when it has a secret."""

    requires_request_body = True

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        msg_id = f"msg_{uuid.uuid4().hex}"
        signed = webhooks.signed_headers(self._secret, msg_id, int(time.time()), request.content)
        request.headers.update(signed)
        yield request


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and yield its base URL.

    The socket is bound and listening before uvicorn starts, so the URL works at once
    (early connections wait in the backlog): no polling for readiness."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
