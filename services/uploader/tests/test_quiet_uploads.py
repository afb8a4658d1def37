"""Slow clients against real gateway and uploader processes on the real broker, S3 and
PostgreSQL (issue 19 point 3): a one-shot upload whose body goes quiet, or only
trickles, is cut with 408; its job fails `upload_timeout` and its partition moves on. A
resumable append that goes quiet keeps what Kafka acknowledged and resumes."""

import asyncio
import hashlib

import httpx
import pytest
from draft_client import INTEROP, DraftClient
from uploader_rig import UploadRig, audio_bytes

from contracts import topics
from tests.support.audio import wav_form
from tests.support.kafka import committed_offset, topic_ends
from tests.support.slow_client import SlowRequest
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
IDLE = {"UPLOAD_BODY_IDLE_SECONDS": "1"}
BOUNDARY = "slow"


def form_headers(size: int) -> dict[str, str]:
    return {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(size),
    }


def timed_out_jobs(rig: UploadRig) -> list[str]:
    return [job for job, code in rig.status.errors.items() if code == "upload_timeout"]


async def committed_at_end(rig: UploadRig) -> bool:
    """The uploader's group has committed every partition of audio.upload to its end:
    no job holds its partition."""
    bootstrap = rig.infra["KAFKA_BOOTSTRAP_SERVERS"]
    ends = await topic_ends(bootstrap, topics.AUDIO_UPLOAD)
    for partition, end in ends.items():
        if await committed_offset(bootstrap, rig.group, partition) != end:
            return False
    return True


async def test_a_one_shot_upload_gone_quiet_is_cut_its_job_fails_and_its_partition_moves_on(
    rig: UploadRig,
):
    gateway = await rig.service("gateway", **IDLE)
    await rig.service("uploader")
    body = wav_form(8 * MiB, BOUNDARY)
    slow = await SlowRequest.send(
        gateway.url, "POST", "/tokens/t1/upload-audio", form_headers(len(body)), body[:MiB]
    )
    status, fields, answer = await slow.answer()
    assert status == 408
    assert answer["error"]["code"] == "upload_timeout"
    assert fields["connection"] == "close"
    assert await slow.closed_by_server()
    slow.close()

    (job_id,) = await eventually(lambda: timed_out_jobs(rig), within=60, what="the job failed")
    assert rig.status.statuses(job_id)[-1] == "failed"
    assert f"audio/{job_id}" not in await rig.objects()
    await eventually(lambda: committed_at_end(rig), within=60, what="the partition committed")
    assert await rig.multipart_uploads() == []


async def test_a_one_shot_upload_that_only_trickles_is_cut_too(rig: UploadRig):
    gateway = await rig.service("gateway", **IDLE, UPLOAD_BODY_MIN_BYTES_PER_SECOND="4096")
    body = wav_form(MiB, BOUNDARY)
    slow = await SlowRequest.send(
        gateway.url, "POST", "/tokens/t1/upload-audio", form_headers(len(body)), body[:1000]
    )
    trickling = asyncio.create_task(slow.trickle(b"\1" * 100, every=0.1))  # 1000 B/s
    status, _, answer = await slow.answer()
    trickling.cancel()
    slow.close()
    assert status == 408
    assert answer["error"]["code"] == "upload_timeout"


async def test_a_resumable_append_gone_quiet_keeps_its_bytes_and_resumes(rig: UploadRig):
    gateway = await rig.service("gateway", **IDLE)
    await rig.service("uploader")
    client = DraftClient(gateway.url)
    data = audio_bytes(3 * MiB)
    created = await client.create(data)
    location = created.headers["location"]
    sent = 2 * MiB + 12345
    slow = await SlowRequest.send(
        gateway.url,
        "PATCH",
        location,
        {
            **INTEROP,
            "Content-Type": "application/partial-upload",
            "Upload-Offset": "0",
            "Upload-Complete": "?1",
            "Content-Length": str(len(data)),
        },
        data[:sent],
    )
    status, fields, answer = await slow.answer()
    slow.close()
    assert status == 408
    assert answer["error"]["code"] == "upload_timeout"
    offset = int(fields["upload-offset"])
    assert 0 < offset <= sent

    head = await client.offset(location)
    assert int(head.headers["upload-offset"]) == offset
    done = await client.append(location, offset, data[offset:], complete=True)
    assert done.status_code == 202, done.text
    job_id = created.json()["job_id"]
    await eventually(
        lambda: "uploaded" in rig.status.statuses(job_id), within=120, what="the upload stored"
    )
    body_sha, recorded = (await rig.objects())[f"audio/{job_id}"]
    assert body_sha == recorded == hashlib.sha256(data).hexdigest()
    async with httpx.AsyncClient() as http:  # the gateway answers on as before
        assert (await http.get(f"{gateway.url}/readyz")).status_code == 200
