"""A second analysis server, written from the analysis contract alone
(docs/architecture.md §7, §6).

It stands for an analysis server built apart from this project: it imports nothing
of audiopipe (no ``contracts``, no ``servicekit``), signs its webhooks and verifies the
bridge's signature on ``POST /analyze`` itself as Standard Webhooks says (401 when it
does not verify), reports its own result shape, and behaves as such servers do in
practice: its first answer to a job is a 503, it calls back before its 202, and it
sends its final callback twice and a stale progress callback after it.

Its result is not the reference server's: ``{"duration_s", "sample_rate", "channels",
"rms_dbfs", "labels"}``, computed from a 16-bit PCM WAV with the standard library, or
any object (or non-object) given as ``result`` for tests of what the bridge refuses.
"""

from __future__ import annotations

import array
import asyncio
import base64
import hashlib
import hmac
import io
import json
import math
import time
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_NOT_GIVEN: Any = object()


@dataclass
class Delivery:
    """One webhook call and the answer it got."""

    kind: str
    status_code: int
    body: Any


@dataclass
class Job:
    job_id: str
    requests: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers: HMAC-SHA256 over ``id.timestamp.body`` with the
    base64 key after ``whsec_`` (https://www.standardwebhooks.com/, "Signature scheme")."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }


def verified(secret: str, headers: Any, body: bytes, tolerance: int = 300) -> bool:
    """Whether ``body`` carries a valid Standard Webhooks signature under ``secret``
    ("Verifying webhooks": any ``v1`` entry matches, the timestamp within 5 minutes)."""
    webhook_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp", "")
    if not webhook_id or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, webhook_id, int(timestamp), body)["webhook-signature"]
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(entry, expected) for entry in offered)


def features(wav: bytes) -> dict[str, Any]:
    """This server's own result for a 16-bit PCM WAV."""
    with wave.open(io.BytesIO(wav)) as reader:
        rate, channels, frames = reader.getframerate(), reader.getnchannels(), reader.getnframes()
        if reader.getsampwidth() != 2:
            raise ValueError("only 16-bit PCM")
        samples = array.array("h", reader.readframes(frames))
    mean_square = sum(s * s for s in samples) / max(len(samples), 1)
    rms = math.sqrt(mean_square) / 32768
    return {
        "duration_s": round(frames / rate, 3),
        "sample_rate": rate,
        "channels": channels,
        "rms_dbfs": round(20 * math.log10(rms), 2) if rms > 0 else -120.0,
        "labels": ["tone"] if rms > 0.01 else ["silence"],
    }


class MinimalAnalyzer:
    """``POST /analyze``: 503 on a job's first call, then 202, with webhooks around it.

    ``result`` replaces the computed result (any JSON value, even a non-object);
    ``final_before_accept`` sends the final callback before answering 202, not after.
    """

    def __init__(
        self,
        signing_secret: str,
        *,
        result: Any = _NOT_GIVEN,
        final_before_accept: bool = False,
    ) -> None:
        self.signing_secret = signing_secret
        self.result = result
        self.final_before_accept = final_before_accept
        self.jobs: dict[str, Job] = {}
        self.refused = 0
        """``POST /analyze`` calls answered 401 (no valid signature)."""
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(routes=[Route("/analyze", self._analyze, methods=["POST"])])

    def job(self, job_id: str) -> Job:
        return self.jobs.setdefault(job_id, Job(job_id))

    async def finished(self, job_id: str, within: float = 30) -> Job:
        """The job once every callback of it was answered."""
        job = self.job(job_id)
        await asyncio.wait_for(job.done.wait(), within)
        return job

    async def _analyze(self, request: Request) -> JSONResponse:
        raw = await request.body()
        if not verified(self.signing_secret, request.headers, raw):
            self.refused += 1
            return JSONResponse({"message": "bad signature"}, status_code=401)
        body = json.loads(raw)
        job_id, webhook_url = body["job_id"], body["webhook_url"]
        job = self.job(job_id)
        job.requests += 1
        if job.requests == 1:
            return JSONResponse(
                {"message": "warming up"}, status_code=503, headers={"Retry-After": "0"}
            )
        async with httpx.AsyncClient() as client:
            audio = await client.get(body["audio_url"])
        audio.raise_for_status()
        result = features(audio.content) if self.result is _NOT_GIVEN else self.result
        # Before the 202: the bridge must take a callback for a job it is still asking about.
        await self._post(job, webhook_url, {"status": "progress", "progress": 10})
        if self.final_before_accept:
            await self._finish(job, webhook_url, result)
        else:
            task = asyncio.create_task(self._finish(job, webhook_url, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return JSONResponse({"accepted": job_id}, status_code=202)

    async def _finish(self, job: Job, webhook_url: str, result: Any) -> None:
        try:
            await self._post(job, webhook_url, {"status": "progress", "progress": 80})
            final = {"status": "completed", "result": result}
            final_id = f"msg_{uuid.uuid4().hex}"
            await self._post(job, webhook_url, final, final_id)
            await self._post(job, webhook_url, final, final_id)  # a retry
            # Reordered: a progress callback that was overtaken by the final one.
            await self._post(job, webhook_url, {"status": "progress", "progress": 50})
        finally:
            job.done.set()

    async def _post(
        self,
        job: Job,
        url: str,
        payload: dict[str, Any],
        webhook_id: str | None = None,
    ) -> None:
        body = json.dumps({"job_id": job.job_id, **payload}).encode()
        headers = sign(
            self.signing_secret, webhook_id or f"msg_{uuid.uuid4().hex}", int(time.time()), body
        )
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                url, content=body, headers={**headers, "content-type": "application/json"}
            )
        try:
            answer_body = answer.json()
        except ValueError:
            answer_body = answer.text
        job.deliveries.append(Delivery(payload["status"], answer.status_code, answer_body))
