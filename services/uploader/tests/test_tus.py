"""tus 1.0 (issue 13): tus-js-client from npm in Node, interrupted and resumed on
another gateway replica, and the checksum, termination and expiration extensions,
through real gateway and uploader processes."""

import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from uploader_rig import PART_BYTES, UploadRig, audio_bytes

from tests.support.tus import tus_client_dir
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def tus_client() -> Path:
    if not shutil.which("node"):
        pytest.skip("node is needed for tus-js-client")
    return tus_client_dir() / "upload.mjs"


async def node(script: Path, *args: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        "node", str(script), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert process.returncode == 0, (events, err.decode()[-2000:])
    return events


def first(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(e for e in events if e["event"] == kind)


async def test_tus_js_client_resumes_on_another_replica_and_the_bytes_are_stored(
    rig: UploadRig, tus_client: Path, tmp_path: Path
):
    one = await rig.service("gateway", name="gateway-1")
    two = await rig.service("gateway", name="gateway-2")
    await rig.service("uploader")
    data = audio_bytes(2 * PART_BYTES + 4321)
    path = tmp_path / "a.wav"
    path.write_bytes(data)

    stopped = await node(
        tus_client,
        "--endpoint", f"{one.url}/tokens/t1/upload-audio",
        "--file", str(path),
        "--stop-at", str(PART_BYTES + 100_000),
    )  # fmt: skip
    created = first(stopped, "created")
    assert created["status"] == 201
    job = created["body"]
    assert created["url"].endswith(job["access_token"])  # the upload URL may append
    sent = first(stopped, "stopped")["sent"]
    upload_path = "/uploads/" + created["url"].split("/uploads/", 1)[1]

    resumed = await node(
        tus_client,
        "--endpoint", f"{two.url}/tokens/t1/upload-audio",
        "--file", str(path),
        "--upload-url", f"{two.url}{upload_path}",
    )  # fmt: skip
    offset = first(resumed, "head")["offset"]
    assert 0 < offset <= sent
    assert first(resumed, "success")
    await eventually(
        lambda: "uploaded" in rig.status.statuses(job["job_id"]), within=120, what="stored"
    )
    body_sha, recorded = (await rig.objects())[f"audio/{job['job_id']}"]
    assert body_sha == recorded == hashlib.sha256(data).hexdigest()


async def test_tus_checksum_termination_expiration_and_bad_requests(rig: UploadRig):
    gateway = await rig.service("gateway")
    await rig.service("uploader")
    data = audio_bytes(100_000)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        options = await http.options("/tokens/t1/upload-audio")
        assert options.status_code == 204
        assert "checksum" in options.headers["tus-extension"]
        assert options.headers["tus-checksum-algorithm"] == "sha256"

        old = await http.post("/tokens/t1/upload-audio", headers={"Tus-Resumable": "0.2.2"})
        assert old.status_code == 412
        assert old.headers["tus-version"] == "1.0.0"
        no_length = await http.post("/tokens/t1/upload-audio", headers=TUS)
        assert no_length.status_code == 400

        created = await http.post(
            "/tokens/t1/upload-audio",
            headers={
                **TUS,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": "filename YS53YXY=",  # a.wav
            },
        )
        assert created.status_code == 201
        assert created.json()["filename"] == "a.wav"
        assert "upload-expires" in created.headers
        location = created.headers["location"]

        def patch(body: bytes, offset: int, **headers: str) -> httpx.Request:
            return http.build_request(
                "PATCH",
                location,
                content=body,
                headers={
                    **TUS,
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                    **headers,
                },
            )

        good = "sha256 " + base64.b64encode(hashlib.sha256(data[:5000]).digest()).decode()
        bad = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
        mismatch = await http.send(patch(data[:5000], 0, **{"Upload-Checksum": bad}))
        assert mismatch.status_code == 460
        assert mismatch.json()["error"]["code"] == "checksum_mismatch"
        head = await http.head(location, headers=TUS)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == "0"
        assert head.headers["upload-length"] == str(len(data))

        ok = await http.send(patch(data[:5000], 0, **{"Upload-Checksum": good}))
        assert ok.status_code == 204
        assert ok.headers["upload-offset"] == "5000"
        conflict = await http.send(patch(data[10:20], 10))
        assert conflict.status_code == 409
        assert conflict.headers["upload-offset"] == "5000"
        wrong_type = await http.send(patch(data[5000:], 5000, **{"Content-Type": "text/plain"}))
        assert wrong_type.status_code == 415

        gone = await http.delete(location, headers=TUS)
        assert gone.status_code == 204
        assert (await http.head(location, headers=TUS)).status_code == 404
        again = await http.send(patch(data[5000:], 5000))
        assert again.status_code == 404
        job_id = created.json()["job_id"]
    await eventually(
        lambda: "failed" in rig.status.statuses(job_id), within=60, what="the job failed"
    )
