"""The uploader's data lifecycle in memory (docs/architecture.md §8): what a tombstone
stops, what an erasure drops, which objects the audio retention erases and announces,
and which multipart uploads the stale sweep spares."""

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from uploader_testing import PART, FakeCheckpoints, FakeEvents, FakeStore

from contracts import JobDeleted, UploadFinished, UploadStarted
from uploader.assembly import Assembler
from uploader.erasure import Erasure
from uploader.offsets import CommitTracker
from uploader.ports import JobErased
from uploader.retention import Retention, job_of
from uploader.sweeper import sweep

pytestmark = pytest.mark.unit

JOB = str(uuid.uuid4())


def started(job_id: str = JOB, resumable: bool = False) -> UploadStarted:
    return UploadStarted(
        job_id=job_id,
        token_id="t",
        filename="a.wav",
        content_type="audio/wav",
        chunk_size=4,
        resumable=resumable,
    )


def finished(data: bytes, chunks: int, job_id: str = JOB) -> UploadFinished:
    return UploadFinished(
        job_id=job_id, chunk_count=chunks, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


def setup() -> tuple[Assembler, FakeStore, FakeEvents, FakeCheckpoints]:
    store, events, database = FakeStore(), FakeEvents(), FakeCheckpoints()
    assembler = Assembler(
        store, events, "b", "audio/", PART, checkpoints=database, tombstones=database
    )
    return assembler, store, events, database


async def test_an_upload_of_a_deleted_job_opens_nothing() -> None:
    a, store, events, database = setup()
    await database.record(JOB)
    assert not await a.started(started())
    await a.chunk(JOB, 0, b"RIFFdata")
    await a.finished(finished(b"RIFFdata", 1))
    assert a.jobs == {} and store.objects == {} and events.events == []


async def test_a_job_deleted_while_it_was_stored_loses_its_object_and_is_not_announced() -> None:
    a, store, events, database = setup()
    data = bytes(range(8))
    await a.started(started())
    await a.chunk(JOB, 0, data)
    await database.record(JOB)  # the erasure ran on another replica meanwhile
    await a.finished(finished(data, 1))
    assert store.objects == {}
    assert "uploaded" not in events.statuses()
    assert not any(ce_id.endswith(":stored") for ce_id, _ in events.events)


async def test_a_refused_checkpoint_says_the_job_was_erased() -> None:
    a, store, _, database = setup()
    data = bytes(range(PART + 2))
    await a.started(started(resumable=True))
    await database.record(JOB)
    await a.chunk(JOB, 0, data, 0)
    with pytest.raises(JobErased):
        await a._settle(a.jobs[JOB])
    await a.erased_meanwhile(JOB)
    assert a.jobs == {} and database.saved == {}
    assert store.uploads == {}  # its multipart upload aborted
    assert a.memory.held == 0


async def test_an_erasure_drops_the_open_job_and_everything_the_uploader_stored() -> None:
    a, store, events, database = setup()
    tracker, lock = CommitTracker(), asyncio.Lock()
    erasure = Erasure(a, tracker, lock, database, database, store, events, "audio/")
    data = bytes(range(PART + 3))
    await a.started(started(resumable=True))
    tracker.opened("p0", JOB, 7)
    await a.chunk(JOB, 0, data, 0)
    await a._settle(a.jobs[JOB])
    assert database.saved and store.uploads and a.memory.held == 3
    tracker.processed("p0", 9)

    await erasure.erase(JOB)
    assert await database.deleted(JOB)
    assert a.jobs == {} and a.memory.held == 0
    assert store.uploads == {} and database.saved == {}
    assert tracker.safe_offset("p0") == 10  # it holds the partition no longer
    await erasure.erase(JOB)  # twice: nothing more to do
    assert await database.deleted(JOB)


class Lock:
    def __init__(self, free: bool = True) -> None:
        self.free = free

    @contextlib.asynccontextmanager
    async def held(self, name: str) -> AsyncIterator[bool]:
        yield self.free


async def test_the_retention_announces_then_erases_old_audio_only() -> None:
    store, events, database = FakeStore(), FakeEvents(), FakeCheckpoints()
    now = datetime.now(UTC)
    old, young = str(uuid.uuid4()), str(uuid.uuid4())
    for key, age in ((f"audio/{old}", 10), (f"audio/{young}", 1), ("audio/not-a-job", 10)):
        store.objects[key] = (b"x", {})
        store.modified[key] = now - timedelta(days=age)
    retention = Retention(
        store,
        events,
        Lock(),
        database,
        prefix="audio/",
        audio_seconds=5 * 24 * 3600,
        tombstone_seconds=1,
        interval_seconds=1,
        now=lambda: now,
    )
    assert await retention.sweep() == [old]
    assert sorted(store.objects) == sorted(["audio/not-a-job", f"audio/{young}"])
    [(ce_id, event)] = events.events
    assert isinstance(event, JobDeleted)
    assert (event.job_id, event.reason, event.erase) == (old, "retention", "audio")
    assert ce_id == f"{old}:deleted:audio"

    elsewhere = Retention(
        store, events, Lock(free=False), database, prefix="audio/", audio_seconds=1,
        tombstone_seconds=1, interval_seconds=1,
    )  # fmt: skip
    assert await elsewhere.sweep_audio() == []  # another replica sweeps now
    off = Retention(
        store, events, Lock(), database, prefix="audio/", audio_seconds=0,
        tombstone_seconds=1, interval_seconds=1,
    )  # fmt: skip
    assert await off.sweep_audio() == []
    assert job_of(f"audio/{old}", "audio/") == old
    assert job_of(f"audio/{old.upper()}", "audio/") is None


async def test_the_stale_sweep_spares_resumable_uploads_up_to_their_maximum_age() -> None:
    store = FakeStore()
    young = await store.start("audio/young", "audio/wav")
    resumable = await store.start("audio/resumable", "audio/wav")
    owned = await store.start("audio/owned", "audio/wav")
    forgotten: list[str] = []

    async def forget(job_id: str) -> None:
        forgotten.append(job_id)

    checkpointed = {resumable: "job-r"}

    async def sweep_at(hours: float) -> list[str]:
        return await sweep(
            store,
            "audio/",
            timedelta(minutes=30),
            {owned},
            lambda: datetime.now(UTC) + timedelta(hours=hours),
            checkpointed=checkpointed,
            resumable_older_than=timedelta(hours=30),
            forget=forget,
        )

    # An hour on: only the stale upload nobody owns is aborted.
    assert await sweep_at(1) == ["audio/young"] and young not in store.uploads
    # Past the maximum age and the margin: the checkpointed one goes, its checkpoint too.
    assert await sweep_at(31) == ["audio/resumable"] and forgotten == ["job-r"]
    assert list(store.uploads) == [owned]
