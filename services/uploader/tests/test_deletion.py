"""A deleted job (``job.deleted``) in the uploader, on the real broker, S3 and PostgreSQL
with real uploader processes (docs/architecture.md §8, issue 20): its object, its open
multipart upload, its checkpoint and what it holds in memory go, a tombstone stays, its
later messages store nothing, twice is harmless, and a kill -9 in the middle of
deletions leaves nothing in S3 once the uploader is back."""

import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from faststream.kafka import KafkaBroker
from uploader_rig import PART_BYTES, UploadRig, audio_bytes, send_chunk

from contracts import (
    DeletionReason,
    Erase,
    JobDeleted,
    UploadFinished,
    UploadStarted,
    topics,
)
from tests.support.kafka import publish_event, read_topic
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
STORED = 150
"""Objects deleted in a run that the uploader is killed in the middle of."""


@pytest.fixture
async def db(rig: UploadRig) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(rig.infra["DATABASE_URL"], min_size=1, max_size=2)
    yield pool
    await pool.close()


async def send_upload(
    producer: KafkaBroker,
    job_id: str,
    data: bytes,
    *,
    resumable: bool = False,
    start: int = 0,
    end: int | None = None,
    finish: bool = True,
) -> None:
    """The gateway's messages of an upload of ``data``: ``started`` (when ``start`` is
    0), the chunks of bytes ``start`` to ``end``, and ``finished``."""
    end = len(data) if end is None else end
    if start == 0:
        started = UploadStarted(
            job_id=job_id,
            token_id="t",
            filename="a.wav",
            content_type="audio/wav",
            chunk_size=MiB,
            size_hint=len(data),
            resumable=resumable,
        )
        await publish_event(
            producer, topics.AUDIO_UPLOAD, started, source="tests", ce_id=f"{job_id}:started"
        )
    for at in range(start, end, MiB):
        piece = data[at : min(at + MiB, end)]
        await send_chunk(producer, job_id, at // MiB, piece, at if resumable else None)
    if finish:
        finished = UploadFinished(
            job_id=job_id,
            chunk_count=-(-len(data) // MiB),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        await publish_event(
            producer, topics.AUDIO_UPLOAD, finished, source="tests", ce_id=f"{job_id}:finished"
        )


async def delete(
    producer: KafkaBroker,
    job_id: str,
    reason: DeletionReason = DeletionReason.REQUESTED,
    erase: Erase = Erase.JOB,
) -> None:
    event = JobDeleted(job_id=job_id, reason=reason, erase=erase)
    await publish_event(
        producer, topics.JOB_DELETED, event, source="tests", ce_id=f"{job_id}:deleted:{erase}"
    )


async def tombstone(db: asyncpg.Pool, job_id: str) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT FROM uploader.deleted_jobs WHERE job_id = $1)", job_id
        )
    )


async def checkpoint(db: asyncpg.Pool, job_id: str) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT FROM uploader.checkpoints WHERE job_id = $1)", job_id
        )
    )


async def buffered_bytes(uploader: ServiceProcess) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{uploader.url}/metrics")).text
    found = re.search(r"^audiopipe_uploader_buffered_bytes\S* (\S+)$", text, re.MULTILINE)
    assert found, "no buffered bytes metric"
    return float(found.group(1))


async def test_a_deleted_job_loses_its_object_and_its_replayed_messages_store_nothing(
    rig: UploadRig, producer: KafkaBroker, db: asyncpg.Pool
) -> None:
    uploader = await rig.service("uploader")
    job_id = str(uuid.uuid4())
    data = audio_bytes(PART_BYTES + 2 * MiB)  # a multipart upload
    await send_upload(producer, job_id, data)
    await eventually(lambda: "uploaded" in rig.status.statuses(job_id), what="stored")
    assert f"audio/{job_id}" in await rig.objects()

    await delete(producer, job_id)

    async def object_gone() -> bool:
        return f"audio/{job_id}" not in await rig.keys()

    await eventually(object_gone, what="the object deleted")
    assert await tombstone(db, job_id)

    # Twice is harmless; a replay of the whole upload (a crash, a rebalance) stores nothing.
    await delete(producer, job_id)
    await send_upload(producer, job_id, data)
    await eventually(lambda: uploader.log().count("job erased") == 2, what="the second erasure")
    await eventually(
        lambda: "upload of a deleted job; skipping it" in uploader.log(), what="the replay"
    )
    assert await rig.objects() == {}
    assert await rig.multipart_uploads() == []
    assert len(rig.status.distinct(job_id, "uploaded")) == 1
    assert uploader.process is not None and uploader.process.poll() is None


async def test_a_deletion_that_overtakes_the_upload_stores_nothing(
    rig: UploadRig, producer: KafkaBroker, db: asyncpg.Pool
) -> None:
    # job.deleted is another topic than audio.upload: a deletion may be consumed before
    # the upload's own messages (an uploader behind, or one restarting).
    uploader = await rig.service("uploader")
    job_id = str(uuid.uuid4())
    await delete(producer, job_id)
    await eventually(lambda: tombstone(db, job_id), what="the tombstone")
    await send_upload(producer, job_id, audio_bytes(300_000))
    other = str(uuid.uuid4())
    await send_upload(producer, other, audio_bytes(300_000))
    await eventually(lambda: "uploaded" in rig.status.statuses(other), what="the other stored")
    await eventually(
        lambda: "upload of a deleted job; skipping it" in uploader.log(), what="skipped"
    )
    assert list(await rig.objects()) == [f"audio/{other}"]
    assert rig.status.statuses(job_id) == []


async def test_a_deletion_during_uploads_drops_them_and_aborts_their_multipart_uploads(
    rig: UploadRig, producer: KafkaBroker, db: asyncpg.Pool
) -> None:
    uploader = await rig.service("uploader")
    resumable, one_shot = str(uuid.uuid4()), str(uuid.uuid4())
    data = audio_bytes(3 * PART_BYTES)
    held = PART_BYTES + 2 * MiB  # a part in S3 and 2 MiB in memory for each
    await send_upload(producer, resumable, data, resumable=True, end=held, finish=False)
    await send_upload(producer, one_shot, data, end=held, finish=False)

    async def both_in_progress() -> bool:
        return len(await rig.multipart_uploads()) == 2 and await checkpoint(db, resumable)

    await eventually(both_in_progress, within=60, what="two multipart uploads, a checkpoint")
    assert await buffered_bytes(uploader) >= 2 * 2 * MiB

    await delete(producer, resumable)
    await delete(producer, one_shot)

    async def erased() -> bool:
        return (
            await rig.multipart_uploads() == []
            and not await checkpoint(db, resumable)
            and await tombstone(db, resumable)
            and await tombstone(db, one_shot)
        )

    await eventually(erased, within=60, what="both erased")
    # What the uploader held of them is let go; the rest of their messages store nothing.
    assert await buffered_bytes(uploader) == 0
    await send_upload(producer, resumable, data, resumable=True, start=held)
    await send_upload(producer, one_shot, data, start=held)
    other = str(uuid.uuid4())
    await send_upload(producer, other, audio_bytes(300_000))
    await eventually(lambda: "uploaded" in rig.status.statuses(other), what="the next job")
    assert list(await rig.objects()) == [f"audio/{other}"]
    assert await rig.multipart_uploads() == []
    for job_id in (resumable, one_shot):
        assert "uploaded" not in rig.status.statuses(job_id)


async def test_an_uploader_killed_in_the_middle_of_deletions_finishes_them_when_back(
    rig: UploadRig, producer: KafkaBroker, db: asyncpg.Pool
) -> None:
    first = await rig.service("uploader", name="uploader-1")
    stored = [str(uuid.uuid4()) for _ in range(STORED)]
    for job_id in stored:
        await send_upload(producer, job_id, audio_bytes(20_000))
    open_jobs = [str(uuid.uuid4()) for _ in range(2)]
    for job_id in open_jobs:
        data = audio_bytes(2 * PART_BYTES)
        await send_upload(producer, job_id, data, end=PART_BYTES + MiB, finish=False)

    async def ready() -> bool:
        return len(await rig.keys()) == STORED and len(await rig.multipart_uploads()) == 2

    await eventually(ready, within=120, what="the objects stored and 2 uploads open")

    for job_id in [*open_jobs, *stored]:
        await delete(producer, job_id)

    async def under_way() -> bool:
        return len(await rig.keys()) < STORED

    await eventually(under_way, within=60, every=0.005, what="the deletions under way")
    first.kill()
    left = len(await rig.keys())

    await rig.service("uploader", name="uploader-2")

    async def nothing_left() -> bool:
        return await rig.keys() == [] and await rig.multipart_uploads() == []

    await eventually(nothing_left, within=120, what="nothing left in S3")
    for job_id in [*open_jobs, *stored]:
        assert await tombstone(db, job_id)
    assert left > 0, "the kill came after every deletion: it proved nothing"


async def test_two_uploaders_sweep_expired_audio_once_and_announce_it(
    rig: UploadRig, producer: KafkaBroker, db: asyncpg.Pool
) -> None:
    retention = {"AUDIO_RETENTION_SECONDS": "3", "AUDIO_RETENTION_SWEEP_SECONDS": "0.3"}
    await rig.service("uploader", name="uploader-a", **retention)
    await rig.service("uploader", name="uploader-b", **retention)
    jobs = [str(uuid.uuid4()) for _ in range(6)]
    for job_id in jobs:
        await send_upload(producer, job_id, audio_bytes(200_000))
    await eventually(
        lambda: all("uploaded" in rig.status.statuses(j) for j in jobs), within=60, what="stored"
    )

    async def all_expired() -> bool:
        # Listed, not read: a key listed can be erased before it is read.
        return await rig.keys() == []

    await eventually(all_expired, within=60, what="the audio past its retention erased")

    records = [
        r
        for r in await read_topic(rig.infra["KAFKA_BOOTSTRAP_SERVERS"], topics.JOB_DELETED)
        if (r.key or b"").decode() in jobs
    ]
    announced = [json.loads(r.value or b"{}") for r in records]
    # One sweep at a time (the advisory lock), and it deletes what it announced.
    assert sorted(a["job_id"] for a in announced) == sorted(jobs)
    assert {(a["reason"], a["erase"]) for a in announced} == {("retention", "audio")}
    # Each uploader's own consumer erases the rest, as for any deletion.
    for job_id in jobs:

        async def buried(job_id: str = job_id) -> bool:
            return await tombstone(db, job_id)

        await eventually(buried, what="the tombstone")
