"""The upload path under crashes, redelivery and rebalancing, on the real broker and S3
(issue 3: "a 202 is a promise", exactly-once effect)."""

import asyncio
import hashlib
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka.partitioner import murmur2
from faststream.kafka import KafkaBroker
from uploader_rig import PART_BYTES, UploadRig, audio_bytes, send_chunk

from contracts import UploadFinished, UploadStarted, headers, topics
from servicekit.kafka import ce_headers
from servicekit.s3 import ensure_bucket, s3_client
from tests.support.kafka import publish_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def sizes(n: int) -> list[int]:
    rng = random.Random(n)
    return [rng.randrange(PART_BYTES + MiB, 2 * PART_BYTES + 3 * MiB) for _ in range(n)]


async def assert_each_stored_once(rig: UploadRig, jobs: list[dict[str, str]]) -> None:
    objects = await rig.objects()
    assert sorted(objects) == sorted(f"audio/{j['job_id']}" for j in jobs)
    for job in jobs:
        body_sha, recorded_sha = objects[f"audio/{job['job_id']}"]
        assert body_sha == recorded_sha == job["sha256"]
        assert len(rig.status.distinct(job["job_id"], "uploaded")) == 1
        assert "failed" not in rig.status.statuses(job["job_id"])
    assert await rig.multipart_uploads() == []


async def test_uploader_killed_mid_run_of_20_uploads_loses_and_duplicates_nothing(rig: UploadRig):
    gateway = await rig.service("gateway")
    first = await rig.service("uploader", name="uploader-1")
    files = [audio_bytes(size) for size in sizes(20)]
    uploads = [asyncio.create_task(rig.upload(gateway, data)) for data in files]

    def uploaded() -> int:
        return sum(1 for job in rig.status.seen if "uploaded" in rig.status.statuses(job))

    await eventually(lambda: uploaded() >= 1, within=120, what="a first stored upload")
    first.kill()
    assert uploaded() < 20, "the crash should land mid-run"

    jobs = await asyncio.gather(*uploads)  # the gateway does not depend on the uploader
    await rig.service("uploader", name="uploader-2")
    await eventually(lambda: uploaded() == 20, within=180, what="all 20 uploads stored")
    await assert_each_stored_once(rig, jobs)


async def test_two_uploaders_share_the_work_and_a_rebalance_loses_nothing(rig: UploadRig):
    gateway = await rig.service("gateway")
    one = await rig.service("uploader", name="uploader-a")
    files = [audio_bytes(size) for size in sizes(16)]
    uploads = [asyncio.create_task(rig.upload(gateway, data)) for data in files[:8]]
    await eventually(
        lambda: any("uploaded" in rig.status.statuses(j) for j in rig.status.seen),
        within=120,
        what="the first uploader at work",
    )
    two = await rig.service("uploader", name="uploader-b")  # joins: partitions rebalance
    uploads += [asyncio.create_task(rig.upload(gateway, data)) for data in files[8:]]
    jobs = await asyncio.gather(*uploads)
    await eventually(
        lambda: all("uploaded" in rig.status.statuses(j["job_id"]) for j in jobs),
        within=180,
        what="all 16 uploads stored",
    )
    await assert_each_stored_once(rig, jobs)
    assert "stored " in one.log() and "stored " in two.log(), "both uploaders did work"


async def test_chunks_and_finished_marker_delivered_twice_store_one_object(
    rig: UploadRig, producer: KafkaBroker
):
    await rig.service("uploader")
    job_id = str(uuid.uuid4())
    data = audio_bytes(PART_BYTES + 3 * MiB)
    chunks = [data[i : i + MiB] for i in range(0, len(data), MiB)]
    started = UploadStarted(
        job_id=job_id, token_id="t", filename="a.wav", content_type="audio/wav", chunk_size=MiB
    )
    finished = UploadFinished(
        job_id=job_id,
        chunk_count=len(chunks),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    await publish_event(producer, topics.AUDIO_UPLOAD, started, source="t", ce_id=f"{job_id}:s")
    for seq, chunk in enumerate(chunks):
        await send_chunk(producer, job_id, seq, chunk)
        await send_chunk(producer, job_id, seq, chunk)
    for _ in range(2):
        await publish_event(
            producer, topics.AUDIO_UPLOAD, finished, source="t", ce_id=f"{job_id}:f"
        )
    await eventually(lambda: "uploaded" in rig.status.statuses(job_id), what="the upload stored")
    await assert_each_stored_once(rig, [{"job_id": job_id, "sha256": finished.sha256}])


def job_on_partition(partition: int, partitions: int = 6) -> str:
    """A job id that the producer's default partitioner puts on ``partition``."""
    while True:
        job_id = str(uuid.uuid4())
        if (murmur2(job_id.encode()) & 0x7FFFFFFF) % partitions == partition:
            return job_id


async def publish_upload(producer: KafkaBroker, job_id: str, data: bytes) -> str:
    """One upload of one chunk on ``audio.upload`` as the gateway sends it; its sha256."""
    started = UploadStarted(
        job_id=job_id, token_id="t", filename="a.wav", content_type="audio/wav", chunk_size=MiB
    )
    await publish_event(producer, topics.AUDIO_UPLOAD, started, source="t", ce_id=f"{job_id}:s")
    await send_chunk(producer, job_id, 0, data)
    sha256 = hashlib.sha256(data).hexdigest()
    finished = UploadFinished(job_id=job_id, chunk_count=1, size=len(data), sha256=sha256)
    await publish_event(producer, topics.AUDIO_UPLOAD, finished, source="t", ce_id=f"{job_id}:f")
    return sha256


async def put_decoy(rig: UploadRig, job_id: str, sha256: str) -> None:
    """Another body at the job's key, recorded as if it were the job's bytes: what the
    uploader finds when it asks S3 whether the job is stored already."""
    async with s3_client(rig.s3_settings) as s3:
        await ensure_bucket(s3, rig.bucket)
        await s3.put_object(
            Bucket=rig.bucket, Key=f"audio/{job_id}", Body=b"decoy", Metadata={"sha256": sha256}
        )


async def test_a_replayed_upload_found_in_s3_is_announced_not_stored_again(
    rig: UploadRig, producer: KafkaBroker
):
    # Published before the uploader is assigned its partition: as after a crash between
    # storing and committing, it may be stored already, so S3 is asked (and believed).
    job_id = str(uuid.uuid4())
    data = audio_bytes(MiB // 2)
    await put_decoy(rig, job_id, hashlib.sha256(data).hexdigest())
    await publish_upload(producer, job_id, data)
    await rig.service("uploader")
    await eventually(lambda: "uploaded" in rig.status.statuses(job_id), what="the announcement")
    objects = await rig.objects()
    assert objects[f"audio/{job_id}"][0] == hashlib.sha256(b"decoy").hexdigest()


async def test_an_upload_appended_after_the_assignment_is_stored_without_asking_s3(
    rig: UploadRig, producer: KafkaBroker
):
    # A first job on the partition shows the uploader the partition's end; a job
    # appended after it cannot have been stored by anyone before, so it is stored
    # without the look in S3 (a decoy there would otherwise be taken for it).
    await rig.service("uploader")
    first = job_on_partition(2)
    await publish_upload(producer, first, audio_bytes(MiB // 2))
    await eventually(lambda: "uploaded" in rig.status.statuses(first), what="the first job")
    job_id = job_on_partition(2)
    data = audio_bytes(MiB // 2)
    sha256 = hashlib.sha256(data).hexdigest()
    await put_decoy(rig, job_id, sha256)
    await publish_upload(producer, job_id, data)
    await eventually(lambda: "uploaded" in rig.status.statuses(job_id), what="the second job")
    objects = await rig.objects()
    assert objects[f"audio/{job_id}"] == (sha256, sha256)


async def test_a_chunk_missing_before_the_marker_stores_nothing_one_part_or_many(
    rig: UploadRig, producer: KafkaBroker
):
    # The gateway sends the finished marker without waiting for the last chunk's
    # acknowledgement; a chunk the broker lost while it took the marker must leave no
    # object, whether the file would be one PutObject or a multipart upload.
    await rig.service("uploader")
    jobs = {}
    for name, size, lose in (
        ("whole", 300 * 1024, None),
        ("one part", 300 * 1024, 1),
        ("many parts", PART_BYTES + 2 * MiB, 3),
    ):
        job_id = str(uuid.uuid4())
        data = audio_bytes(size)
        chunks = [data[i : i + 128 * 1024] for i in range(0, len(data), 128 * 1024)]
        started = UploadStarted(
            job_id=job_id,
            token_id="t",
            filename="a.wav",
            content_type="audio/wav",
            chunk_size=128 * 1024,
        )
        await publish_event(producer, topics.AUDIO_UPLOAD, started, source="t", ce_id=f"{job_id}:s")
        for seq, chunk in enumerate(chunks):
            if seq != lose:
                await send_chunk(producer, job_id, seq, chunk)
        finished = UploadFinished(
            job_id=job_id,
            chunk_count=len(chunks),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        await publish_event(
            producer, topics.AUDIO_UPLOAD, finished, source="t", ce_id=f"{job_id}:f"
        )
        jobs[name] = (job_id, finished.sha256)
    for name, expected in (("whole", "uploaded"), ("one part", "failed"), ("many parts", "failed")):
        job_id = jobs[name][0]

        def reached(job_id: str = job_id, expected: str = expected) -> bool:
            return expected in rig.status.statuses(job_id)

        await eventually(reached, what=f"{name} {expected}")
    await assert_each_stored_once(rig, [{"job_id": jobs["whole"][0], "sha256": jobs["whole"][1]}])


async def test_a_poison_message_is_dead_lettered_and_the_partition_moves_on(
    rig: UploadRig, producer: KafkaBroker
):
    await rig.service("uploader")
    job_id = str(uuid.uuid4())
    await producer.publish(
        b"{broken",
        topics.AUDIO_UPLOAD,
        key=job_id.encode(),
        headers=ce_headers("audiopipe.upload.started", f"{job_id}:s", "tests", job_id),
    )
    gateway = await rig.service("gateway")
    job = await rig.upload(gateway, audio_bytes(MiB))
    await eventually(lambda: "uploaded" in rig.status.statuses(job["job_id"]), what="next job")

    from aiokafka import AIOKafkaConsumer, TopicPartition

    dlq = AIOKafkaConsumer(bootstrap_servers=rig.infra["KAFKA_BOOTSTRAP_SERVERS"])
    await dlq.start()
    try:
        part = TopicPartition(topics.dead_letter(topics.AUDIO_UPLOAD), 0)
        dlq.assign([part])
        await dlq.seek_to_beginning(part)

        async def parked() -> list[dict[str, bytes]]:
            batch = await dlq.getmany(part, timeout_ms=500)
            return [dict(r.headers) for r in batch.get(part, []) if r.key == job_id.encode()]

        [parked_headers] = await eventually(parked, what="the poison message in the DLQ")
        assert parked_headers[headers.DLQ_REASON].startswith(b"invalid")
    finally:
        await dlq.stop()


async def test_a_slow_large_upload_shows_increasing_uploading_progress(rig: UploadRig):
    gateway = await rig.service("gateway")
    await rig.service("uploader", PROGRESS_INTERVAL_SECONDS="0.2")
    data = audio_bytes(4 * PART_BYTES)
    head = (
        b'--bb\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n"
    )
    tail = b"\r\n--bb--\r\n"

    async def slowly() -> AsyncIterator[bytes]:
        # A client on a slow link: the body arrives over a couple of seconds.
        yield head
        for i in range(0, len(data), MiB):
            yield data[i : i + MiB]
            await asyncio.sleep(0.1)
        yield tail

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        answer = await http.post(
            "/tokens/t1/upload-audio",
            content=slowly(),
            headers={
                "Content-Type": "multipart/form-data; boundary=bb",
                "Content-Length": str(len(head) + len(data) + len(tail)),
            },
        )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    await eventually(lambda: "uploaded" in rig.status.statuses(job_id), what="stored")
    statuses = rig.status.statuses(job_id)
    uploading = [s for s in statuses if s == "uploading"]
    assert len(uploading) >= 2, statuses
