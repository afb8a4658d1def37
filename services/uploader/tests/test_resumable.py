"""Resumable uploads (issue 13) through real gateway and uploader processes on the real
broker, S3 and PostgreSQL: the IETF draft with a client written to it, resumes after a
dropped connection, on another replica and after kill -9, expiry and bad input."""

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from draft_client import INTEROP, Cut, DraftClient, cut_after
from uploader_rig import PART_BYTES, UploadRig, audio_bytes

from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


async def stored(rig: UploadRig, job_id: str, data: bytes) -> None:
    await eventually(
        lambda: "uploaded" in rig.status.statuses(job_id), within=120, what="the upload stored"
    )
    body_sha, recorded = (await rig.objects())[f"audio/{job_id}"]
    assert body_sha == recorded == hashlib.sha256(data).hexdigest()


async def test_draft_upload_cut_mid_chunk_resumes_on_another_replica(rig: UploadRig):
    first = await rig.service("gateway", name="gateway-1")
    second = await rig.service("gateway", name="gateway-2")
    await rig.service("uploader")
    data = audio_bytes(2 * PART_BYTES + 123_457)
    created = await DraftClient(first.url).create(data)
    assert created.status_code == 201, created.text
    assert created.headers["upload-complete"] == "?0"
    assert "max-size=" in created.headers["upload-limit"]
    location = created.headers["location"]
    job = created.json()
    assert location.endswith(job["access_token"])  # the URL that may append

    cut_at = PART_BYTES + 300_001  # inside a 512 KiB chunk
    with pytest.raises((httpx.HTTPError, Cut)):
        await DraftClient(first.url).append(location, 0, cut_after(data, cut_at), complete=False)

    # Any replica answers the offset from PostgreSQL; it ends the interrupted append
    # first, so it is the number of bytes Kafka acknowledged.
    head = await DraftClient(second.url).offset(location)
    assert head.status_code == 204
    offset = int(head.headers["upload-offset"])
    assert 0 < offset <= cut_at
    assert head.headers["upload-complete"] == "?0"
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["cache-control"] == "no-store"

    done = await DraftClient(second.url).append(location, offset, data[offset:], complete=True)
    assert done.status_code == 202, done.text
    assert done.headers["upload-complete"] == "?1"
    body = done.json()
    assert body["job_id"] == job["job_id"]
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    await stored(rig, job["job_id"], data)
    assert "accepted" in rig.status.statuses(job["job_id"])
    assert await rig.multipart_uploads() == []


async def test_gateway_killed_mid_append_resumes_on_the_other_and_stores_the_bytes_sent(
    rig: UploadRig,
):
    first = await rig.service("gateway", name="gateway-1")
    second = await rig.service("gateway", name="gateway-2")
    await rig.service("uploader")
    data = audio_bytes(3 * PART_BYTES + 77)
    created = await DraftClient(first.url).create(data)
    location = created.headers["location"]
    job_id = created.json()["job_id"]
    sent_enough = asyncio.Event()
    hold = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 64 * 1024):
            if start >= PART_BYTES + 1000:
                sent_enough.set()
                await hold.wait()
            yield data[start : start + 64 * 1024]

    append = asyncio.create_task(DraftClient(first.url).append(location, 0, body(), False))
    await sent_enough.wait()

    async def some_acknowledged() -> bool:
        head = await DraftClient(second.url).offset(location)
        return int(head.headers.get("upload-offset", 0)) > 0

    # HEAD on the second replica ends the first one's append: the offset is stored.
    await eventually(some_acknowledged, within=60, what="bytes acknowledged")
    first.kill()
    hold.set()
    with pytest.raises(httpx.HTTPError):
        await append

    offset = int((await DraftClient(second.url).offset(location)).headers["upload-offset"])
    done = await DraftClient(second.url).append(location, offset, data[offset:], complete=True)
    assert done.status_code == 202, done.text
    assert done.json()["sha256"] == hashlib.sha256(data).hexdigest()
    await stored(rig, job_id, data)


async def test_bad_requests_get_the_protocols_status_and_change_nothing(rig: UploadRig):
    gateway = await rig.service("gateway")
    await rig.service("uploader")
    client = DraftClient(gateway.url)
    data = audio_bytes(300_000)
    created = await client.create(data)
    location, job = created.headers["location"], created.json()
    assert (await client.append(location, 0, data[:1000], complete=False)).status_code == 204

    wrong = await client.append(location, 5, data[5:9], complete=False)
    assert wrong.status_code == 409
    assert wrong.headers["upload-offset"] == "1000"
    assert wrong.json()["expected-offset"] == 1000
    assert wrong.json()["error"]["code"] == "offset_mismatch"

    path = location.split("?")[0]
    async with client.client() as http:
        assert (await http.head(path, headers=INTEROP)).status_code == 401
        other = (await client.create(data)).json()["access_token"]
        assert (await http.head(f"{path}?access_token={other}")).status_code == 403
        foreign = await http.delete(f"{path}?access_token={other}")
        assert foreign.status_code == 403
        assert foreign.json()["error"]["code"] == "wrong_job"
        # The progress URL's token reads the job; it neither appends, nor cancels, nor
        # ends an append in progress with a HEAD (issue 19).
        shared = job["progress_url"].split("access_token=")[1]
        for method in ("HEAD", "DELETE", "PATCH"):
            refused = await http.request(method, f"{path}?access_token={shared}", headers=INTEROP)
            assert refused.status_code == 403, method
            assert "insufficient_scope" in refused.headers["www-authenticate"]
        unknown = await http.head(
            "/uploads/00000000-0000-4000-8000-000000000000?access_token=x", headers=INTEROP
        )
        assert unknown.status_code == 404
        changed = await http.patch(
            location,
            content=data[1000:2000],
            headers={
                **INTEROP,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": "1000",
                "Upload-Complete": "?0",
                "Upload-Length": "999999",
            },
        )
        assert changed.status_code == 400
        assert changed.json()["error"]["code"] == "inconsistent_length"
        wrong_type = await http.patch(
            location,
            content=b"x",
            headers={**INTEROP, "Upload-Offset": "1000", "Upload-Complete": "?0"},
        )
        assert wrong_type.status_code == 415
    beyond = await client.append(location, 1000, data[1000:] + b"extra", complete=False)
    assert beyond.status_code == 413
    assert (await client.offset(location)).headers["upload-offset"] == "1000"

    done = await client.append(location, 1000, data[1000:], complete=True)
    assert done.status_code == 202
    again = await client.append(location, len(data), b"more", complete=True)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "upload_complete"
    await stored(rig, job["job_id"], data)


async def test_digest_mismatch_fails_the_job_and_stores_nothing(rig: UploadRig):
    gateway = await rig.service("gateway")
    await rig.service("uploader")
    client = DraftClient(gateway.url)
    data = audio_bytes(200_000)
    created = await client.create(data)
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    done = await client.append(created.headers["location"], 0, tampered, complete=True)
    assert done.status_code == 400
    assert done.json()["error"]["code"] == "digest_mismatch"
    job_id = created.json()["job_id"]
    await eventually(
        lambda: "failed" in rig.status.statuses(job_id), within=60, what="the job failed"
    )
    assert f"audio/{job_id}" not in await rig.objects()


async def test_cancelled_upload_is_gone_and_its_job_failed(rig: UploadRig):
    gateway = await rig.service("gateway")
    await rig.service("uploader")
    client = DraftClient(gateway.url)
    data = audio_bytes(PART_BYTES + 4096)
    created = await client.create(data)
    location = created.headers["location"]
    assert (await client.append(location, 0, data[:PART_BYTES], complete=False)).status_code == 204
    async with client.client() as http:
        assert (await http.delete(location)).status_code == 204
    assert (await client.offset(location)).status_code == 404
    job_id = created.json()["job_id"]
    await eventually(
        lambda: "failed" in rig.status.statuses(job_id), within=60, what="the job failed"
    )
    await eventually(lambda: _no_uploads(rig), within=60, what="the multipart upload aborted")


async def _no_uploads(rig: UploadRig) -> bool:
    return await rig.multipart_uploads() == []


@pytest.mark.parametrize(
    "limits",
    [
        {"UPLOAD_EXPIRY_SECONDS": "2"},
        # Issue 19: a maximum age from creation, which neither appends nor HEADs extend.
        {"UPLOAD_EXPIRY_SECONDS": "3600", "UPLOAD_MAX_AGE_SECONDS": "2"},
    ],
    ids=["idle", "max-age"],
)
async def test_idle_upload_expires_with_upload_expired(rig: UploadRig, limits: dict[str, str]):
    gateway = await rig.service("gateway", UPLOAD_EXPIRY_SWEEP_SECONDS="0.2", **limits)
    await rig.service("uploader")
    client = DraftClient(gateway.url)
    data = audio_bytes(PART_BYTES + 4096)
    created = await client.create(data)
    # The upload's remaining lifetime (draft -11 "Limits"): 2 s, a second may have gone.
    assert re.search(r"max-age=[12]$", created.headers["upload-limit"])
    location = created.headers["location"]
    assert (await client.append(location, 0, data[:PART_BYTES], complete=False)).status_code == 204
    job_id = created.json()["job_id"]
    await eventually(
        lambda: "failed" in rig.status.statuses(job_id), within=60, what="the upload expired"
    )
    assert (await client.offset(location)).status_code == 410
    await eventually(lambda: _no_uploads(rig), within=60, what="the multipart upload aborted")


async def test_curl_uploads_in_one_request_following_the_draft(rig: UploadRig, tmp_path):
    import json
    import shutil
    import subprocess

    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    gateway = await rig.service("gateway")
    await rig.service("uploader")
    data = audio_bytes(PART_BYTES + 999)
    path = tmp_path / "c.wav"
    path.write_bytes(data)
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "curl", "-sS", "-X", "POST", "--data-binary", f"@{path}",
            "-H", "Upload-Draft-Interop-Version: 8", "-H", "Upload-Complete: ?1",
            "-H", 'Content-Disposition: inline; filename="c.wav"',
            "-w", "\n%{http_code}", f"{gateway.url}/tokens/t1/upload-audio",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "202", done.stdout
    job = json.loads(body)
    assert job["filename"] == "c.wav"
    assert job["sha256"] == hashlib.sha256(data).hexdigest()
    await stored(rig, job["job_id"], data)


async def test_a_long_open_upload_does_not_hold_back_other_jobs_commits(rig: UploadRig):
    """Item 3 of issue 13: once its first part is checkpointed, an open resumable upload
    no longer holds its partition's committed offset; after a kill -9 of the uploader,
    a job that finished meanwhile on the same partition is not replayed, and the open
    upload continues from its checkpoint."""
    import asyncpg
    from aiokafka import TopicPartition
    from aiokafka.partitioner import murmur2

    from contracts import topics
    from tests.support.kafka import committed_offset, end_offset, partitions_of

    gateway = await rig.service("gateway")
    first = await rig.service("uploader", name="uploader-1")
    client = DraftClient(gateway.url)
    data = audio_bytes(PART_BYTES + 200_000)
    created = await client.create(data)
    location, job_id = created.headers["location"], created.json()["job_id"]
    ok = await client.append(location, 0, data[:PART_BYTES], complete=False)
    assert ok.status_code == 204

    async def checkpointed() -> bool:
        conn = await asyncpg.connect(rig.infra["DATABASE_URL"])
        try:
            size = await conn.fetchval(
                "SELECT size FROM uploader.checkpoints WHERE job_id = $1", job_id
            )
        except asyncpg.UndefinedTableError:
            size = None
        finally:
            await conn.close()
        return bool(size == PART_BYTES)

    await eventually(checkpointed, within=60, what="the first part checkpointed")
    count = len(await partitions_of(rig.infra["KAFKA_BOOTSTRAP_SERVERS"], topics.AUDIO_UPLOAD))

    def partition(key: str) -> int:
        return int(murmur2(key.encode()) & 0x7FFFFFFF) % count

    neighbour = None
    for _ in range(40):  # one-shot uploads until one shares the open upload's partition
        job = await rig.upload(gateway, audio_bytes(100_000))
        if partition(job["job_id"]) == partition(job_id):
            neighbour = job["job_id"]
            break
    assert neighbour is not None
    await eventually(
        lambda: "uploaded" in rig.status.statuses(neighbour), within=60, what="neighbour stored"
    )
    # Committed past the neighbour (offsets go together once a second), though the
    # resumable upload before it on the partition is still open.
    bootstrap = rig.infra["KAFKA_BOOTSTRAP_SERVERS"]
    shared = TopicPartition(topics.AUDIO_UPLOAD, partition(job_id))
    end = await end_offset(bootstrap, shared)

    async def committed_past_the_neighbour() -> bool:
        committed = await committed_offset(bootstrap, rig.group, shared)
        return committed is not None and committed >= end

    await eventually(committed_past_the_neighbour, within=30, what="the neighbour committed")
    first.kill()
    await rig.service("uploader", name="uploader-2")
    done = await client.append(location, PART_BYTES, data[PART_BYTES:], complete=True)
    assert done.status_code == 202, done.text
    await stored(rig, job_id, data)
    assert rig.status.statuses(neighbour).count("uploaded") == 1
