"""The uploader's memory budget (issue 19 point 3), in memory: many open jobs hold no
more than the budget; the part being filled of the job idle longest is let go and read
back from Kafka (a fake here) when it is full or the upload finishes, and every object
is still exactly the bytes sent."""

import hashlib
import random
from collections.abc import AsyncGenerator, Sequence

import pytest
from uploader_testing import PART, FakeCheckpoints, FakeEvents, FakeStore

from contracts import UploadFinished, UploadStarted
from uploader.assembly import Assembler
from uploader.ports import StorageError

pytestmark = pytest.mark.unit

BUDGET = 3 * PART
CHUNK = 4


class FakeChunks:
    """``audio.upload`` as a dict of (partition, offset) → (key, value)."""

    def __init__(self) -> None:
        self.records: dict[tuple[int, int], tuple[str, bytes]] = {}
        self.reads: list[int] = []
        self.broken = False

    async def read(
        self, job_id: str, partition: int, offsets: Sequence[int]
    ) -> AsyncGenerator[bytes, None]:
        assert list(offsets) == sorted(set(offsets))
        for offset in offsets:
            if self.broken:
                raise StorageError("no longer in Kafka")
            key, value = self.records[(partition, offset)]
            assert key == job_id
            self.reads.append(offset)
            yield value


class Log:
    """Feeds chunks the way the handler does, each at the next offset of its partition."""

    def __init__(self, assembler: Assembler, chunks: FakeChunks) -> None:
        self.a = assembler
        self.chunks = chunks
        self.next_offset = 0
        self.peak = 0

    async def chunk(
        self, job_id: str, sequence: int, data: bytes, offset: int | None = None
    ) -> None:
        position = self.next_offset
        self.next_offset += 1
        self.chunks.records[(0, position)] = (job_id, data)
        await self.a.chunk(job_id, sequence, data, offset, position, 0)
        self.peak = max(self.peak, self.a.memory.held)
        assert self.a.memory.held <= BUDGET


def started(job_id: str, resumable: bool = False) -> UploadStarted:
    return UploadStarted(
        job_id=job_id,
        token_id="t",
        filename="a.wav",
        content_type="audio/wav",
        chunk_size=CHUNK,
        resumable=resumable,
    )


def finished(job_id: str, data: bytes, chunks: int) -> UploadFinished:
    return UploadFinished(
        job_id=job_id, chunk_count=chunks, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


def setup(**kw: object) -> tuple[Assembler, FakeStore, FakeEvents, Log]:
    store, events, chunks = FakeStore(), FakeEvents(), FakeChunks()
    a = Assembler(store, events, "b", "audio/", PART, budget=BUDGET, chunks=chunks, **kw)  # type: ignore[arg-type]
    return a, store, events, Log(a, chunks)


async def test_many_open_jobs_stay_within_the_budget_and_are_stored_exactly() -> None:
    a, store, events, log = setup()
    rng = random.Random(7)
    files = {f"j{n}": rng.randbytes(rng.randrange(PART, 5 * PART)) for n in range(12)}
    sent = dict.fromkeys(files, 0)
    for job_id in files:
        await a.started(started(job_id))
    # Interleaved as on a partition: every job receives a chunk now and then.
    while any(sent[j] < len(files[j]) for j in files):
        job_id = rng.choice([j for j in files if sent[j] < len(files[j])])
        at = sent[job_id]
        await log.chunk(job_id, at // CHUNK, files[job_id][at : at + CHUNK])
        sent[job_id] = at + CHUNK
    for job_id, data in files.items():
        await a.finished(finished(job_id, data, -(-len(data) // CHUNK)))
        assert store.objects[f"audio/{job_id}"][0] == data
    assert log.chunks.reads, "parts were let go and read back"
    assert log.peak <= BUDGET and a.memory.peak <= BUDGET
    assert a.memory.held == 0 and a.jobs == {}
    assert set(events.statuses()) <= {"uploading", "uploaded"}


async def test_the_job_that_received_a_chunk_least_recently_is_let_go_first() -> None:
    a, _, _, log = setup()
    jobs = ["a", "b", "c", "d"]  # two chunks each: 32 bytes would pass the budget of 30
    for job_id in jobs:
        await a.started(started(job_id))
    for job_id in jobs:
        await log.chunk(job_id, 0, b"x" * CHUNK)
    await log.chunk("b", 1, b"x" * CHUNK)
    await log.chunk("c", 1, b"x" * CHUNK)
    await log.chunk("a", 1, b"x" * CHUNK)  # the first to start, but active again since
    assert all(a.jobs[j].resident for j in jobs)
    await log.chunk("d", 1, b"x" * CHUNK)  # 32 bytes: one job must go
    assert [a.jobs[j].resident for j in jobs] == [True, False, True, True]


async def test_a_job_let_go_and_finished_reads_its_rest_back_and_verifies_it() -> None:
    a, store, _, log = setup()
    await a.started(started("idle"))
    await log.chunk("idle", 0, b"abcd")
    await log.chunk("idle", 1, b"efgh")
    for job_id in ("b1", "b2", "b3"):
        await a.started(started(job_id))
        await log.chunk(job_id, 0, b"x" * CHUNK)
        await log.chunk(job_id, 1, b"x" * CHUNK)
    assert not a.jobs["idle"].resident
    await a.finished(finished("idle", b"abcdefgh", 2))
    assert store.objects["audio/idle"][0] == b"abcdefgh"
    assert store.puts == ["audio/idle"]  # one PutObject still: it never filled a part
    assert log.chunks.reads == [0, 1]


async def test_resumable_chunks_that_repeat_bytes_are_read_back_from_where_they_were_used() -> None:
    a, store, _, log = setup()
    data = bytes(range(3 * PART))
    await a.started(started("r", resumable=True))
    await log.chunk("r", 0, data[0:6], 0)
    await log.chunk("r", 1, data[0:9], 0)  # a resumed append repeats bytes 0..6
    a._let_go(a.jobs["r"])
    await log.chunk("r", 2, data[9:14], 9)  # a part fills: read back, bytes 6..9 from #1
    await log.chunk("r", 3, data[14:30], 14)
    await a.finished(finished("r", data, 4))
    assert store.objects["audio/r"][0] == data


async def test_a_checkpointed_job_let_go_still_holds_its_first_unsaved_chunk() -> None:
    a, _, _, log = setup(checkpoints=FakeCheckpoints())
    data = bytes(range(2 * PART))
    await a.started(started("r", resumable=True))
    for n, at in enumerate(range(0, 14, 2)):
        await log.chunk("r", n, data[at : at + 2], at)
    await a._settle(a.jobs["r"])
    first_unsaved = a.holds()["r"]
    a._let_go(a.jobs["r"])
    assert a.holds()["r"] == first_unsaved == 5  # the chunk holding bytes 10..12


async def test_a_part_that_cannot_be_read_back_fails_and_gives_its_bytes_back() -> None:
    a, _, _, log = setup()
    await a.started(started("j"))
    await log.chunk("j", 0, b"abcd")
    a._let_go(a.jobs["j"])
    log.chunks.broken = True
    held = a.memory.held
    await log.chunk("j", 1, b"efgh")
    with pytest.raises(StorageError):
        await log.chunk("j", 2, b"ijkl")  # a part is full: it cannot be read back
    assert a.memory.held == held
