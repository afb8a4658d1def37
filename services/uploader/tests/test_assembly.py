import hashlib

import pytest
from uploader_testing import PART, FakeEvents, FakeStore

from contracts import (
    JobStatusChanged,
    UploadAborted,
    UploadFinished,
    UploadStarted,
)
from uploader.assembly import Assembler

pytestmark = pytest.mark.unit


def started(job_id: str = "j1") -> UploadStarted:
    return UploadStarted(
        job_id=job_id, token_id="t", filename="a.wav", content_type="audio/wav", chunk_size=4
    )


def finished(data: bytes, chunks: int, job_id: str = "j1") -> UploadFinished:
    return UploadFinished(
        job_id=job_id, chunk_count=chunks, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


def setup() -> tuple[Assembler, FakeStore, FakeEvents]:
    store, outbox = FakeStore(), FakeEvents()
    return Assembler(store, outbox, "bucket", "audio/", PART), store, outbox


async def feed(a: Assembler, data: bytes, job_id: str = "j1") -> int:
    chunks = [data[i : i + 4] for i in range(0, len(data), 4)]
    for n, chunk in enumerate(chunks):
        await a.chunk(job_id, n, chunk)
    return len(chunks)


async def test_chunks_become_one_verified_object_with_its_checksum() -> None:
    a, store, outbox = setup()
    data = bytes(range(37))
    await a.started(started())
    n = await feed(a, data)
    await a.finished(finished(data, n))
    body, metadata = store.objects["audio/j1"]
    assert body == data
    assert metadata["sha256"] == hashlib.sha256(data).hexdigest()
    assert outbox.statuses() == ["uploaded"]
    assert a.jobs == {}


async def test_duplicate_chunks_and_markers_change_nothing() -> None:
    a, store, outbox = setup()
    data = bytes(range(30))
    assert await a.started(started())
    assert not await a.started(started())
    await feed(a, data)
    n = await feed(a, data)
    await a.finished(finished(data, n))
    await a.finished(finished(data, n))
    assert store.objects["audio/j1"][0] == data
    assert outbox.statuses() == ["uploaded"]


async def test_a_replay_after_the_object_was_stored_only_reannounces_it() -> None:
    a, store, outbox = setup()
    data = bytes(range(25))
    await a.started(started())
    n = await feed(a, data)
    await a.finished(finished(data, n))
    before = dict(store.objects)
    # The consumer restarted before committing: the whole job comes again.
    await a.started(started())
    await feed(a, data)
    await a.finished(finished(data, n))
    assert store.objects == before
    assert store.uploads == {}
    ids = [ce_id for ce_id, _ in outbox.events]
    assert ids.count("j1:stored") == 2  # same ce_id: readers drop the second


async def test_a_checksum_mismatch_fails_the_job_and_aborts_the_upload() -> None:
    a, store, outbox = setup()
    data = bytes(range(25))
    await a.started(started())
    n = await feed(a, data)
    await a.finished(finished(data[:-1] + b"x", n))
    assert "audio/j1" not in store.objects
    assert store.aborted == ["u0"] and store.uploads == {}
    failed = outbox.events[-1][1]
    assert isinstance(failed, JobStatusChanged) and failed.error
    assert failed.error.code == "checksum_mismatch"


async def test_a_missing_chunk_is_detected() -> None:
    a, _, outbox = setup()
    await a.started(started())
    await a.chunk("j1", 0, b"abcd")
    await a.chunk("j1", 2, b"ijkl")
    await a.finished(finished(b"abcdefghijkl", 3))
    assert outbox.statuses() == ["failed"]


async def test_a_file_within_one_part_is_one_put_with_its_metadata_and_no_multipart() -> None:
    a, store, outbox = setup()
    data = bytes(range(PART - 1))
    await a.started(started())
    n = await feed(a, data)
    assert store.objects == {} and store.uploads == {}, "nothing is written before the end"
    await a.finished(finished(data, n))
    assert store.puts == ["audio/j1"] and store.uploads == {} and store.aborted == []
    body, metadata = store.objects["audio/j1"]
    assert body == data
    assert metadata == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": str(len(data)),
        "job-id": "j1",
    }
    assert outbox.statuses() == ["uploaded"]


async def test_a_file_beyond_one_part_begins_the_multipart_upload_with_its_first_part() -> None:
    a, store, _ = setup()
    data = bytes(range(PART * 2 + 3))
    await a.started(started())
    assert store.uploads == {}
    n = await feed(a, data)
    await a.finished(finished(data, n))
    assert store.puts == [] and store.objects["audio/j1"][0] == data


@pytest.mark.parametrize("size", [PART - 2, PART * 2 + 3])
async def test_a_chunk_lost_before_the_marker_stores_nothing(size: int) -> None:
    # The gateway sends the marker behind the last chunk without waiting for it: a chunk
    # the broker lost while taking the marker must not leave an object.
    a, store, outbox = setup()
    data = bytes(range(size))
    await a.started(started())
    chunks = [data[i : i + 4] for i in range(0, len(data), 4)]
    for n, chunk in enumerate(chunks):
        if n != len(chunks) - 1:
            await a.chunk("j1", n, chunk)
    await a.finished(finished(data, len(chunks)))
    assert store.objects == {} and store.uploads == {}
    failed = outbox.events[-1][1]
    assert isinstance(failed, JobStatusChanged) and failed.error
    assert failed.error.code == "checksum_mismatch"


async def test_abort_drops_the_multipart_upload() -> None:
    a, store, outbox = setup()
    await a.started(started())
    await feed(a, bytes(30))
    await a.aborted(UploadAborted(job_id="j1", reason="client went away"))
    assert store.aborted == ["u0"] and store.objects == {} and outbox.events == []


async def test_an_abort_behind_a_stored_finished_marker_removes_the_object() -> None:
    # The broker took the finished marker, died before acknowledging it, and delivered
    # it after its restart: the gateway had answered 503 and sent the abort behind it.
    a, store, outbox = setup()
    data = bytes(range(30))
    await a.started(started())
    n = await feed(a, data)
    await a.finished(finished(data, n))
    assert "audio/j1" in store.objects
    await a.aborted(UploadAborted(job_id="j1", reason="kafka_unavailable"))
    assert store.objects == {}
    assert outbox.statuses() == ["uploaded"]
    # A replay of the abort finds nothing more to do.
    await a.aborted(UploadAborted(job_id="j1", reason="kafka_unavailable"))
    assert store.objects == {} and outbox.statuses() == ["uploaded"]


async def test_an_abort_for_an_unknown_job_changes_nothing() -> None:
    a, store, outbox = setup()
    await a.aborted(UploadAborted(job_id="j9", reason="client went away"))
    assert store.objects == {} and outbox.events == []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def slow_setup() -> tuple[Assembler, FakeStore, FakeEvents, Clock]:
    store, outbox, clock = FakeStore(), FakeEvents(), Clock()
    return Assembler(store, outbox, "bucket", "audio/", PART, 1.0, clock), store, outbox, clock


def sized(job_id: str = "j1", size: int = 100) -> UploadStarted:
    return started(job_id).model_copy(update={"size_hint": size})


async def test_a_long_upload_reports_increasing_progress_at_a_bounded_rate() -> None:
    a, _, outbox, clock = slow_setup()
    data = bytes(range(100))
    await a.started(sized())
    for n in range(25):  # 4 bytes a chunk; a part every 10 bytes; 0.3 s between chunks
        clock.now += 0.3
        await a.chunk("j1", n, data[n * 4 : n * 4 + 4])
    progress = [e.progress for _, e in outbox.events if isinstance(e, JobStatusChanged)]
    assert len(progress) >= 3
    assert progress == sorted(set(progress))
    assert len(progress) <= 25 * 0.3 / 1.0 + 1  # at most one a second
    await a.finished(finished(data, 25))
    statuses = outbox.statuses()
    assert statuses[-1] == "uploaded"
    assert set(statuses[:-1]) == {"uploading"}


async def test_a_short_upload_reports_no_progress_before_it_finishes() -> None:
    a, _, outbox, _ = slow_setup()
    await a.started(sized())
    await feed(a, bytes(30))
    assert outbox.events == []


async def test_only_an_upload_quiet_for_an_interval_says_its_audio_is_being_stored() -> None:
    # Progress by time, not by step: a short upload goes from `accepted` to `uploaded`;
    # one whose last word is an interval old says `uploading` first, then `uploaded`.
    a, _, outbox, clock = slow_setup()
    data = bytes(range(30))
    await a.started(sized("quick"))
    clock.now += 0.9
    await a.finished(finished(data, await feed(a, data, "quick"), "quick"))
    assert outbox.statuses() == ["uploaded"]

    await a.started(sized("slow"))
    n = await feed(a, data, "slow")
    clock.now += 1.0
    await a.finished(finished(data, n, "slow"))
    assert outbox.statuses() == ["uploaded", "uploading", "uploaded"]
    (storing,) = [e for _, e in outbox.events if getattr(e, "status", None) == "uploading"]
    assert isinstance(storing, JobStatusChanged) and storing.detail == "storing the audio"


async def test_an_aborted_upload_whose_progress_was_shown_ends_failed() -> None:
    a, store, outbox, clock = slow_setup()
    await a.started(sized())
    clock.now += 5
    await feed(a, bytes(40))
    assert outbox.statuses() == ["uploading"]
    await a.aborted(UploadAborted(job_id="j1", reason="incomplete_body"))
    failed = outbox.events[-1][1]
    assert isinstance(failed, JobStatusChanged)
    assert failed.error is not None
    assert failed.error.code == "upload_aborted"
    assert store.aborted == ["u0"]


async def test_resumed_chunks_placed_by_offset_skip_bytes_already_held() -> None:
    """An interrupted append sent bytes the gateway never recorded; the resumed one
    sends them again from the recorded offset, cut at other places (issue 13)."""
    a, store, _ = setup()
    data = bytes(range(50))
    await a.started(started())
    await a.chunk("j1", 0, data[0:10], 0)
    await a.chunk("j1", 1, data[10:22], 10)  # never recorded by the gateway
    await a.chunk("j1", 1, data[10:16], 10)  # the resumed append, from offset 10
    await a.chunk("j1", 2, data[16:30], 16)
    await a.chunk("j1", 4, data[40:50], 40)  # beyond what is held: comes again
    await a.chunk("j1", 3, data[30:50], 30)
    await a.finished(finished(data, 4))
    body, metadata = store.objects["audio/j1"]
    assert body == data
    assert metadata["sha256"] == hashlib.sha256(data).hexdigest()


async def test_a_checkpointed_upload_is_rebuilt_by_another_assembler() -> None:
    """Item 3 of issue 13: a restarted uploader continues a resumable upload from its
    checkpoint (parts, bytes, digest state) without its older chunks."""
    from uploader_testing import FakeCheckpoints

    store, outbox, checkpoints = FakeStore(), FakeEvents(), FakeCheckpoints()
    a = Assembler(store, outbox, "bucket", "audio/", PART, checkpoints=checkpoints)
    data = bytes(range(35))
    await a.started(started())
    await a.chunk("j1", 0, data[0:12], 0, position=5)
    await a.chunk("j1", 1, data[12:14], 12, position=6)
    await a._settle(a.jobs["j1"])
    assert checkpoints.saved["j1"].size == PART
    assert a.holds() == {"j1": 5}  # bytes 10..14 are not in a saved part yet

    b = Assembler(store, outbox, "bucket", "audio/", PART, checkpoints=checkpoints)
    await b.chunk("j1", 0, data[0:12], 0, position=5)  # replayed from the hold
    await b.chunk("j1", 1, data[12:35], 12, position=6)
    await b.finished(finished(data, 2))
    body, metadata = store.objects["audio/j1"]
    assert body == data
    assert metadata["sha256"] == hashlib.sha256(data).hexdigest()
    assert checkpoints.saved == {}


async def test_a_one_shot_upload_never_waits_for_the_checkpoint_database() -> None:
    """With PostgreSQL down, checkpoints cannot be read; a one-shot upload does not need
    them (issue 11: an outage of one dependency stalls nothing that does not use it)."""
    from uploader_testing import FakeCheckpoints

    from uploader.ports import StorageError

    class DatabaseDown(FakeCheckpoints):
        async def load(self, job_id: str):
            raise StorageError("checkpoint not read: the database is down")

    store, outbox = FakeStore(), FakeEvents()
    a = Assembler(store, outbox, "bucket", "audio/", PART, checkpoints=DatabaseDown())
    data = bytes(range(37))
    await a.started(started())
    n = await feed(a, data)
    await a.finished(finished(data, n))
    await a.finished(finished(data, n))  # redelivered after the job was forgotten
    assert store.objects["audio/j1"][0] == data
    assert outbox.statuses() == ["uploaded"]
