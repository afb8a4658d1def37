"""The running reference analysis server is no open proxy (issue 19 point 7): only the
bridge's signed requests start an analysis, audio longer than it analyses fails the
job with `audio_too_long`, and an analysis past the bridge's deadline is stopped."""

import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import av
import httpx
import numpy as np
import pytest

from devstack import StackInfo
from servicekit.webhooks import signed_headers
from tests.support.sse import events
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

OTHER_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LW5vdC10aGUtc3RhY2tzLW9uZQ=="
JSON = {"content-type": "application/json"}


@pytest.fixture
def analyzer_url(service_urls: dict[str, str]) -> str:
    if "reference-analyzer" not in service_urls:
        pytest.skip("the stack uses an external analysis server")
    return service_urls["reference-analyzer"]


def analyze_body(job_id: str, **fields: Any) -> bytes:
    """A well-formed request; its URLs are never fetched or called in these tests."""
    return json.dumps(
        {
            "job_id": job_id,
            "audio_url": "http://127.0.0.1:9/audio?X-Amz-Signature=x",
            "content_type": "audio/wav",
            "size": 1000,
            "sha256": "0" * 64,
            "webhook_url": f"http://127.0.0.1:9/tokens/webhook/analysis-complete?job_id={job_id}",
            **fields,
        }
    ).encode()


def silent_flac(seconds: float, sample_rate: int = 8000) -> bytes:
    """A FLAC of digital silence (a few hundred KiB for an hour), encoded block by block."""
    buffer = io.BytesIO()
    block = np.zeros((1, 65536), dtype=np.int16)
    total = round(seconds * sample_rate)
    with av.open(buffer, mode="w", format="flac") as out:
        stream: Any = out.add_stream("flac", rate=sample_rate, layout="mono")
        stream.codec_context.format = "s16"
        for start in range(0, total, block.shape[1]):
            count = min(block.shape[1], total - start)
            frame = av.AudioFrame.from_ndarray(block[:, :count].copy(), format="s16", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("how", ["unsigned", "forged", "stale"])
async def test_an_unsigned_forged_or_stale_analyze_gets_401_and_starts_nothing(
    stack: StackInfo, analyzer_url: str, how: str
) -> None:
    job_id = str(uuid.uuid4())
    body = analyze_body(job_id)
    secret = stack.env["WEBHOOK_SIGNING_SECRET"]
    now = int(time.time())
    headers = {
        "unsigned": {},
        "forged": signed_headers(OTHER_SECRET, "msg_e2e", now, body),
        "stale": signed_headers(secret, "msg_e2e", now - 3600, body),
    }[how]
    async with httpx.AsyncClient(base_url=analyzer_url, timeout=30) as client:
        answer = await client.post("/analyze", content=body, headers=JSON | headers)
        seen = await client.get(f"/jobs/{job_id}")
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthorized"
    assert seen.status_code == 404  # no trace of it: nothing fetched, nothing started


async def test_an_analysis_past_its_deadline_is_stopped_and_sends_nothing(
    stack: StackInfo, analyzer_url: str
) -> None:
    job_id = str(uuid.uuid4())
    deadline = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    # It would pause an hour before downloading; the deadline comes first.
    pause = {"reference.mode": "slow", "reference.delay_seconds": "3600"}
    body = analyze_body(job_id, deadline=deadline, metadata=pause)
    headers = signed_headers(stack.env["WEBHOOK_SIGNING_SECRET"], "msg_e2e", int(time.time()), body)
    async with httpx.AsyncClient(base_url=analyzer_url, timeout=30) as client:
        answer = await client.post("/analyze", content=body, headers=JSON | headers)
        assert answer.status_code == 202, answer.text

        async def stopped() -> dict[str, Any] | None:
            view: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
            return view if view["stopped"] else None

        view = await eventually(stopped, 30, what="the run to stop at its deadline")
    assert (view["running"], view["finished"], view["final"]) == (0, 1, None)
    assert "completed" not in view["delivered"] and "failed" not in view["delivered"]


async def test_audio_longer_than_the_server_analyses_fails_the_job_with_audio_too_long(
    edge_url: str, analyzer_url: str
) -> None:
    audio = silent_flac(3601)  # the reference analysis server's limit is an hour
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=edge_url, timeout=60) as client:
        accepted = await client.post(
            "/tokens/t1/upload-audio", files={"file": ("long.flac", audio, "audio/flac")}
        )
        assert accepted.status_code == 202, accepted.text
        async with client.stream("GET", accepted.json()["progress_url"], timeout=120) as stream:
            async for event in events(stream):
                seen.append(event.json())
                if seen[-1]["status"] in ("completed", "failed"):
                    break
    final = seen[-1]
    assert final["status"] == "failed", final
    assert final["error"]["code"] == "audio_too_long"
    assert "3600 s" in final["error"]["message"] and "3601.00 s" in final["error"]["message"]
