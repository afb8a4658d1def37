"""The five images, run as the manifests say (non-root, read-only root filesystem, no
capabilities, memory and CPU limits, ENVIRONMENT=production with secrets made for this
run), behind the edge: what a team's first `kubectl apply -k` or `docker compose up`
depends on. One set of containers serves every check of this module, in order; the
two that stop a container (kill, SIGTERM) start it again and wait for it."""

import asyncio
import hashlib
import json
import time
import uuid

import httpx
import pytest

from analyzer_bridge.capability import WEBHOOK_PATH, Capabilities
from deploy.images import NAMES, image_name
from servicekit.settings import DEV_JOB_TOKEN_SECRET
from servicekit.webhooks import signed_headers
from tests.containers.conftest import Deployment, container_env
from tests.containers.manifests import container_settings
from tests.support.audio import sine_wav
from tests.support.sse import events
from tests.support.waiting import eventually

pytestmark = pytest.mark.containers

DRAFT = {"Upload-Draft-Interop-Version": "8"}
CREATE = "/tokens/t1/upload-audio"


@pytest.mark.parametrize("name", NAMES)
def test_container_runs_unprivileged_on_a_read_only_root_with_its_memory_limit(
    deployment: Deployment, name: str
) -> None:
    settings = container_settings(name)
    status = deployment.containers.process_status(name)
    assert status["Uid"].split() == [str(settings.user)] * 4
    assert status["Gid"].split() == [str(settings.group)] * 4
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"] == "1"

    written = deployment.containers.exec(name, "touch", "/app/written")
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    assert deployment.containers.exec(name, "touch", "/tmp/written").returncode == 0

    limit = deployment.containers.exec(
        name, "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    ).stdout.split()
    unit = {"m": 1 << 20, "g": 1 << 30}[settings.memory[-1]]
    assert str(int(settings.memory[:-1]) * unit) in limit


@pytest.mark.parametrize("name", NAMES)
def test_probes_answer_what_the_manifest_asks(deployment: Deployment, name: str) -> None:
    settings = container_settings(name)
    for kind, path in settings.probes.items():
        answer = httpx.get(deployment.url(name) + path, timeout=5)
        # A Kubernetes httpGet probe succeeds on 200-399.
        assert 200 <= answer.status_code < 400, f"{kind} {path}: {answer.status_code}"


def test_an_image_in_production_refuses_a_development_secret(deployment: Deployment) -> None:
    settings = container_settings("gateway")
    env = container_env(settings, deployment.stack, deployment.secrets, deployment.ports)
    env["JOB_TOKEN_SECRET"] = DEV_JOB_TOKEN_SECRET
    env["HTTP_PORT"] = "0"
    env_file = deployment.containers.env_dir / "refused.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    result = deployment.containers.cli(
        "run", "--rm", "--network", "none", "--read-only", "--cap-drop=ALL",
        "--env-file", str(env_file), image_name("gateway"),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "development default or an example's value in production" in (
        result.stdout + result.stderr
    )


async def _upload(client: httpx.AsyncClient, seconds: float = 2.0) -> dict[str, str]:
    audio = sine_wav(seconds=seconds, sample_rate=22050, channels=2)
    accepted = await client.post(CREATE, files={"file": ("tone.wav", audio, "audio/wav")})
    assert accepted.status_code == 202, accepted.text
    job: dict[str, str] = accepted.json()
    assert job["sha256"] == hashlib.sha256(audio).hexdigest()
    return job


async def _final_status(edge_url: str, job: dict[str, str], within: float = 120) -> str:
    """The job's last status on the seed's SSE route, through the edge."""
    path = f"/tokens/analysis-progress/{job['job_id']}"
    async with (
        httpx.AsyncClient(base_url=edge_url, timeout=within) as client,
        client.stream("GET", path, params={"access_token": job["access_token"]}) as stream,
    ):
        assert stream.status_code == 200
        async for event in events(stream):
            status: str = event.json()["status"]
            if status in ("completed", "failed"):
                return status
    return "stream ended"


async def test_an_upload_through_the_edge_reaches_completed(deployment: Deployment) -> None:
    async with httpx.AsyncClient(base_url=deployment.edge_url, timeout=30) as client:
        job = await _upload(client)
    # The reference analyzer signs its webhooks; the bridge (production) accepts only
    # signed ones: completed means a signed webhook was verified.
    assert await _final_status(deployment.edge_url, job) == "completed"


async def test_a_resumable_upload_resumes_through_the_edge(deployment: Deployment) -> None:
    audio = sine_wav(seconds=3.0, sample_rate=22050, channels=1)
    half = len(audio) // 2
    async with httpx.AsyncClient(base_url=deployment.edge_url, timeout=30) as client:
        created = await client.post(
            CREATE,
            content=audio[:half],
            headers={**DRAFT, "Upload-Complete": "?0", "Content-Type": "application/octet-stream"},
        )
        assert created.status_code in (201, 202), created.text
        location = created.headers["location"]
        assert location.startswith("/uploads/")
        head = await client.head(location, headers=DRAFT)
        assert head.status_code == 204
        offset = int(head.headers["upload-offset"])
        assert offset == half
        done = await client.patch(
            location,
            content=audio[offset:],
            headers={
                **DRAFT,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": str(offset),
                "Upload-Complete": "?1",
            },
        )
    assert done.status_code == 202, done.text
    job = done.json()
    assert job["sha256"] == hashlib.sha256(audio).hexdigest()
    assert await _final_status(deployment.edge_url, job) == "completed"


async def test_a_webhook_with_a_forged_signature_is_refused(deployment: Deployment) -> None:
    job_id = str(uuid.uuid4())
    token = Capabilities(deployment.secrets["WEBHOOK_CAPABILITY_SECRET"], 600).issue(job_id)
    url = f"{WEBHOOK_PATH}?job_id={job_id}&token={token}"
    body = json.dumps({"job_id": job_id, "status": "progress", "progress": 10}).encode()
    now = int(time.time())
    forged_secret = "whsec_" + "Zm9yZ2VkLXNlY3JldC1mb3ItdGhlLWNvbnRhaW5lci10ZXN0"
    json_type = {"content-type": "application/json"}
    real = deployment.secrets["WEBHOOK_SIGNING_SECRET"]
    async with httpx.AsyncClient(base_url=deployment.edge_url, timeout=30) as client:
        forged = await client.post(
            url,
            content=body,
            headers={**json_type, **signed_headers(forged_secret, "f", now, body)},
        )
        signed = await client.post(
            url, content=body, headers={**json_type, **signed_headers(real, "s", now, body)}
        )
    assert forged.status_code == 401, forged.text
    # The right signature passes the check and meets the job lookup (never requested).
    assert signed.status_code == 404, signed.text


async def test_killing_the_uploader_during_uploads_loses_no_accepted_job(
    deployment: Deployment,
) -> None:
    async with httpx.AsyncClient(base_url=deployment.edge_url, timeout=60) as client:
        jobs = await asyncio.gather(*(_upload(client, seconds=4.0) for _ in range(6)))
    # Accepted (in Kafka) and not yet stored: the uploader dies with work in hand.
    deployment.containers.kill("uploader")
    assert deployment.containers.state("uploader")["exit_code"] == "137"
    deployment.containers.start("uploader")
    deployment.wait_ready(["uploader"])
    finals = await asyncio.gather(*(_final_status(deployment.edge_url, job) for job in jobs))
    assert finals == ["completed"] * len(jobs)


async def test_sigterm_drains_the_notifier_and_it_exits_cleanly(deployment: Deployment) -> None:
    # A stream that stays open: a resumable upload created and not finished.
    async with httpx.AsyncClient(base_url=deployment.edge_url, timeout=30) as client:
        created = await client.post(
            CREATE,
            content=sine_wav(seconds=2.0)[:8192],
            headers={**DRAFT, "Upload-Complete": "?0", "Content-Type": "application/octet-stream"},
        )
        assert created.status_code in (201, 202), created.text
        job = created.json()
    url = f"{deployment.url('notifier')}/tokens/analysis-progress/{job['job_id']}"
    ended = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=120) as client,
            client.stream("GET", url, params={"access_token": job["access_token"]}) as stream,
        ):
            assert stream.status_code == 200
            async for _ in stream.aiter_bytes():
                opened.set()
        ended.set()

    opened = asyncio.Event()
    reader = asyncio.create_task(read())
    await eventually(lambda: opened.is_set(), within=30, what="the stream's first bytes")
    # SIGTERM, as a pod's deletion sends; SIGKILL only after the grace period.
    stopping = asyncio.create_task(asyncio.to_thread(deployment.containers.stop, "notifier"))
    await asyncio.wait_for(ended.wait(), timeout=60)
    await stopping
    await reader
    state = deployment.containers.state("notifier")
    assert state["exit_code"] == "0", deployment.containers.logs("notifier")[-2000:]
    deployment.containers.start("notifier")
    deployment.wait_ready(["notifier"])
