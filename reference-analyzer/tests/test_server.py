"""The reference server over real HTTP on 127.0.0.1, with the audio served by a tiny
stand-in for S3's presigned URLs and the webhooks received by a tiny stand-in for the
bridge, each on its own port."""

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass

import httpx
import pytest

from reference_analyzer.app import create_app
from reference_analyzer.testing import (
    AudioServer,
    SignedRequests,
    WebhookReceiver,
    analysis_request,
    encode,
    serve,
    sine,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@dataclass
class Stack:
    client: httpx.AsyncClient
    audio: AudioServer
    hooks: WebhookReceiver

    def request(self, data, job_id, **metadata):
        url = self.audio.add(data)
        return analysis_request(url, data, self.hooks.url(job_id), job_id, **metadata)


@pytest.fixture(scope="module")
async def stand_ins():
    """Shared by the tests of this module; each test uses its own job ids."""
    audio, hooks = AudioServer(), WebhookReceiver()
    async with serve(audio.app) as audio_url, serve(hooks.app) as hooks_url:
        audio.base_url, hooks.base_url = audio_url, hooks_url
        yield audio, hooks


@pytest.fixture
async def stack(stand_ins, settings_for, signing_secret):
    audio, hooks = stand_ins
    async with (
        serve(create_app(settings_for())) as url,
        httpx.AsyncClient(base_url=url, auth=SignedRequests(signing_secret)) as client,
    ):
        yield Stack(client, audio, hooks)


@pytest.mark.parametrize(("format", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16")])
async def test_end_to_end_progress_then_completed_and_signed(stack, verify, format, subtype):
    data = encode(sine(seconds=3, sample_rate=44_100, channels=2), 44_100, format, subtype)
    request = stack.request(data, f"e2e-{format}")
    response = await stack.client.post("/analyze", json=request.model_dump())
    assert response.status_code == 202
    deliveries = await stack.hooks.wait_final(request.job_id)

    statuses = [d.json["status"] for d in deliveries]
    assert statuses[-1] == "completed"
    assert set(statuses[:-1]) == {"progress"}
    progress = [d.json["progress"] for d in deliveries[:-1]]
    assert progress == sorted(set(progress))
    result = deliveries[-1].json["result"]
    assert result["duration_seconds"] == 3.0
    assert result["sample_rate"] == 44_100
    assert result["channels"] == 2
    assert result["format"] == format
    # A 440 Hz sine peaking at -6 dBFS on both channels; K-weighting takes 0.7 dB off.
    assert result["integrated_lufs"] == pytest.approx(-6.7, abs=0.1)
    assert result["true_peak_dbtp"] == pytest.approx(-6.0, abs=0.1)
    assert all(verify(d.headers, d.body) for d in deliveries)


async def test_reject_answers_400_json(stack):
    request = stack.request(b"x", "rejected", **{"reference.mode": "reject"})
    response = await stack.client.post("/analyze", json=request.model_dump())
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "analysis_rejected"


async def test_fail_first_two_then_accepted(stack):
    data = encode(sine(), 8000)
    request = stack.request(data, "flaky", **{"reference.fail_first": "2"})
    answers = [await stack.client.post("/analyze", json=request.model_dump()) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 202]
    assert all(a.headers["retry-after"] == "1" for a in answers[:2])
    deliveries = await stack.hooks.wait_final("flaky")
    assert deliveries[-1].json["status"] == "completed"


async def test_silent_never_calls_back(stack):
    data = encode(sine(), 8000)
    request = stack.request(data, "quiet", **{"reference.mode": "silent"})
    assert (await stack.client.post("/analyze", json=request.model_dump())).status_code == 202
    job = (await stack.client.get("/jobs/quiet", params={"wait": 30})).json()
    assert (job["running"], job["finished"]) == (0, 1)
    assert job["final"]["status"] == "completed"  # the work was done ...
    assert [a for a in stack.hooks.attempts if a.job_id == "quiet"] == []  # ... nothing sent


async def test_twice_replays_the_final_webhook(stack, verify):
    data = encode(sine(), 8000)
    request = stack.request(data, "echo", **{"reference.mode": "twice"})
    assert (await stack.client.post("/analyze", json=request.model_dump())).status_code == 202
    await stack.hooks.wait_final("echo", count=2)
    first, second = stack.hooks.finals("echo")
    assert first.json["status"] == "completed"
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert verify(first.headers, first.body)
    assert verify(second.headers, second.body)


async def test_python_dash_m_serves_with_settings_from_the_environment(
    stand_ins, verify, signing_secret
):
    audio, hooks = stand_ins
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REFERENCE_ANALYZER_", "HTTP_"))
    }
    env |= {
        "HTTP_PORT": "0",
        "WEBHOOK_SIGNING_SECRET": signing_secret,
        "REFERENCE_ANALYZER_LOG_LEVEL": "DEBUG",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reference_analyzer", env=env, stderr=asyncio.subprocess.PIPE
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        async with asyncio.timeout(60):
            while not (match := re.search(r"Uvicorn running on (http://\S+)", "".join(lines))):
                line = await process.stderr.readline()
                assert line, "".join(lines)
                lines.append(line.decode())
        drain = asyncio.create_task(_drain(process.stderr, lines))

        data = encode(sine(seconds=2, sample_rate=22_050), 22_050)
        request = analysis_request(audio.add(data), data, hooks.url("cli"), "cli")
        signed = SignedRequests(signing_secret)
        async with httpx.AsyncClient(base_url=match.group(1), auth=signed) as client:
            assert (await client.get("/readyz")).status_code == 200
            response = await client.post("/analyze", json=request.model_dump())
            assert response.status_code == 202
            deliveries = await hooks.wait_final("cli")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()
    await drain

    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert process.returncode in (0, -signal.SIGTERM)
    assert deliveries[-1].json["result"]["duration_seconds"] == 2.0
    assert all(verify(d.headers, d.body) for d in deliveries)
    logs = "".join(lines)
    assert "Application shutdown complete" in logs
    assert "job_id=cli" in logs
    assert "X-Amz-Signature" not in logs  # neither ours nor httpx's lines leak the URL
    assert "capability-" not in logs


async def _drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode())
