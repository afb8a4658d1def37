"""Service logs are JSON lines that name the job and its trace, and never carry
credentials (issue 7): no presigned URL signature, no job access token, no webhook
capability."""

import json
from pathlib import Path

import httpx
import pytest

from devstack import Stack
from tests.support.audio import sine_wav
from tests.support.stack import ROOT
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

# Both notifier replicas: whichever owns the job's partition logs its projection.
SERVICES = (
    "gateway",
    "uploader",
    "analyzer-bridge",
    "notifier",
    "notifier-2",
    "reference-analyzer",
)


def log_lines(name: str) -> list[str]:
    """The lines of the service's current run: devstack appends to one file per service
    and writes a plain "=== <time> starting <name>" banner before each start."""
    path: Path = Stack(root=ROOT).paths.log(name)
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("=== ")]
    return [line for line in lines[starts[-1] + 1 if starts else 0 :] if line.strip()]


async def test_logs_are_json_with_job_and_trace_ids_and_no_credentials(edge_url: str) -> None:
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        answer = await client.post(
            "/tokens/t1/upload-audio", files={"file": ("l.wav", sine_wav(0.5), "audio/wav")}
        )
        job = answer.json()

        async def done() -> bool:
            state = await client.get(
                job["status_url"], params={"access_token": job["access_token"]}
            )
            return state.status_code == 200 and state.json()["status"] == "completed"

        await eventually(done, within=60, every=0.2, what="the job to complete")

    about_job = []
    for name in SERVICES:
        for line in log_lines(name):
            assert "X-Amz-Signature" not in line, (name, line)
            assert job["access_token"] not in line, (name, line)
            assert "token=ey" not in line, (name, line)  # a webhook capability in a URL
            if name != "reference-analyzer":  # a stand-in with its own plain log format
                record = json.loads(line)
                assert {"time", "level", "service", "message"} <= record.keys()
                if record.get("job_id") == job["job_id"]:
                    about_job.append(record)
    services = {r["service"] for r in about_job}
    assert {"gateway", "uploader", "analyzer-bridge", "notifier"} <= services
    assert all(r.get("trace_id") for r in about_job), [r for r in about_job if "trace_id" not in r]
    # The notifier's lines are in the job's trace, the one its upload began.
    upload_traces = {r["trace_id"] for r in about_job if r["service"] == "gateway"}
    assert {r["trace_id"] for r in about_job if r["service"] == "notifier"} <= upload_traces
