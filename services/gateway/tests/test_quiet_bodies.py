"""Quiet bodies are cut and resumable uploads have an end (issue 19 point 3): the pacing
of a request body, a one-shot upload that goes quiet, a resumable append that does, the
maximum age of an upload and what extends it (in memory, with the fakes)."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from gateway_fakes import FakeQuota, FakeSink, FakeUploadStore

from contracts import ErrorCode, JobStatusChanged, UploadAborted
from gateway.ingest import BodyQuiet, UploadLimits, ingest, paced
from gateway.ports import State
from gateway.resumable.uploads import NewUpload, Resumable
from servicekit.http import ApiError
from servicekit.tokens import JobTokens
from tests.support.audio import WAV_HEAD

pytestmark = pytest.mark.unit

IDLE = 0.2
LIMITS = UploadLimits(
    max_bytes=1_000_000,
    chunk_bytes=1000,
    max_chunks_in_flight=2,
    ack_timeout_seconds=5,
    body_idle_seconds=IDLE,
    body_min_bytes_per_second=0,
)
AUDIO = WAV_HEAD + bytes(range(256)) * 40
CT = "multipart/form-data; boundary=BB"


async def pieces(*parts: bytes, then_wait: float | None = None) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if then_wait is not None:
        await asyncio.sleep(then_wait)  # a client that stopped sending, connection open
        yield b"late"


async def read_all(body: AsyncIterator[bytes]) -> list[bytes]:
    return [piece async for piece in body]


async def test_a_body_that_keeps_coming_is_read_to_its_end() -> None:
    async def steady() -> AsyncIterator[bytes]:
        for _ in range(5):
            await asyncio.sleep(IDLE / 4)
            yield b"x"

    assert await read_all(paced(steady(), LIMITS)) == [b"x"] * 5


async def test_a_body_that_goes_quiet_is_cut() -> None:
    got: list[bytes] = []

    async def read() -> None:
        async for piece in paced(pieces(b"a", b"b", then_wait=30), LIMITS):
            got.append(piece)

    with pytest.raises(BodyQuiet):
        await read()
    assert got == [b"a", b"b"]


async def test_a_trickle_below_the_minimum_rate_is_cut_although_it_never_stops() -> None:
    slow = UploadLimits(**{**LIMITS.__dict__, "body_min_bytes_per_second": 1000})

    async def trickle() -> AsyncIterator[bytes]:
        while True:  # a byte every tenth of the idle time: never quiet, far too slow
            await asyncio.sleep(IDLE / 10)
            yield b"x"

    with pytest.raises(BodyQuiet):
        await read_all(paced(trickle(), slow))


async def test_time_spent_on_the_pieces_does_not_count_as_waiting_for_the_client() -> None:
    got = []
    async for piece in paced(pieces(b"a", b"b", b"c"), LIMITS):
        got.append(piece)
        await asyncio.sleep(IDLE * 2)  # Kafka is slow to acknowledge
    assert got == [b"a", b"b", b"c"]


def form_head() -> bytes:
    return (
        b'--BB\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n"
    )


async def oneshot(body: AsyncIterator[bytes], sink: FakeSink) -> None:
    await ingest(
        body,
        content_type=CT,
        content_length=None,
        token_id="t",
        owner=None,
        sink=sink,
        limits=LIMITS,
    )


async def test_a_quiet_one_shot_upload_is_aborted_and_its_job_fails_upload_timeout() -> None:
    sink = FakeSink()
    with pytest.raises(ApiError) as caught:
        await oneshot(pieces(form_head() + AUDIO[:5000], then_wait=30), sink)
    assert caught.value.status_code == 408
    assert caught.value.code == "upload_timeout"
    assert caught.value.headers == {"Connection": "close"}
    kinds = sink.kinds()
    assert kinds[0] == "UploadStarted" and "UploadFinished" not in kinds
    aborted = [m for _, _, m in sink.messages if isinstance(m, UploadAborted)]
    assert [a.reason for a in aborted] == ["upload_timeout"]
    failed = [m for _, _, m in sink.messages if isinstance(m, JobStatusChanged)]
    assert [(f.status, f.error and f.error.code) for f in failed] == [
        ("failed", ErrorCode.UPLOAD_TIMEOUT.value)
    ]


async def test_a_one_shot_upload_quiet_before_its_audio_was_recognised_leaves_nothing() -> None:
    sink = FakeSink()
    with pytest.raises(ApiError) as caught:
        await oneshot(pieces(form_head() + AUDIO[:20], then_wait=30), sink)
    assert caught.value.status_code == 408
    assert sink.messages == []


def resumable(
    store: FakeUploadStore,
    sink: FakeSink,
    expiry_seconds: int = 3600,
    limits: UploadLimits = LIMITS,
    **kw: int,
) -> Resumable:
    tokens = JobTokens("s" * 32, 60)
    return Resumable(store, sink, limits, tokens, FakeQuota(), expiry_seconds, **kw)


async def created(r: Resumable) -> str:
    new = NewUpload("ietf", "t", None, "a.wav", len(AUDIO), client="127.0.0.1", body_bytes=0)
    async with r.creating(new) as made:
        return made.job_id


async def test_a_quiet_append_keeps_what_kafka_acknowledged_answers_408_and_resumes() -> None:
    store, sink = FakeUploadStore(), FakeSink()
    r = resumable(store, sink)
    job_id = await created(r)
    with pytest.raises(ApiError) as caught:
        await r.append(
            job_id,
            pieces(AUDIO[:3000], then_wait=30),
            offset=0,
            complete=False,
            length=None,
        )
    assert caught.value.status_code == 408
    assert caught.value.headers == {"Connection": "close", "Upload-Offset": "3000"}
    assert store.rows[job_id].offset == 3000
    assert "UploadAborted" not in sink.kinds()
    done = await r.append(job_id, pieces(AUDIO[3000:]), offset=3000, complete=True, length=None)
    assert done.complete
    assert done.sha256 == hashlib.sha256(AUDIO).hexdigest()


async def test_the_maximum_age_is_not_extended_by_appends_and_a_head_extends_nothing() -> None:
    store, sink = FakeUploadStore(), FakeSink()
    r = resumable(store, sink, expiry_seconds=3600, max_age_seconds=600)
    job_id = await created(r)
    row = store.rows[job_id]
    deadline = row.created_at + timedelta(seconds=600)
    assert row.expires_at == deadline  # the earlier of idle expiry and maximum age
    assert 590 <= Resumable.remaining(row) <= 600
    await r.append(job_id, pieces(AUDIO[:2000]), offset=0, complete=False, length=None)
    assert store.rows[job_id].expires_at == deadline

    # An idle expiry shorter than the maximum age: appends push it out, HEADs do not.
    r = resumable(store, sink, expiry_seconds=60, max_age_seconds=600)
    job_id = await created(r)
    first = store.rows[job_id].expires_at
    await r.current(store.rows[job_id])
    assert store.rows[job_id].expires_at == first
    await asyncio.sleep(0.01)
    await r.append(job_id, pieces(AUDIO[:2000]), offset=0, complete=False, length=None)
    assert store.rows[job_id].expires_at > first


async def test_an_upload_past_its_maximum_age_is_swept_as_expired() -> None:
    store, sink = FakeUploadStore(), FakeSink()
    r = resumable(store, sink, expiry_seconds=3600, max_age_seconds=1)
    job_id = await created(r)
    later = datetime.now(UTC) + timedelta(seconds=2)
    for row in await store.expired(later):
        await r.expire(row)
    assert store.rows[job_id].state.value == "expired"
    failed = [m for _, _, m in sink.messages if isinstance(m, JobStatusChanged)]
    assert failed[-1].error is not None
    assert failed[-1].error.code == ErrorCode.UPLOAD_EXPIRED.value


def sha256_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def test_a_second_checksummed_patch_reads_its_body_only_once_the_first_let_go() -> None:
    """tus ``checksum``: the body is held whole before it is appended, under the upload's
    lease, so two parallel PATCHes never hold two bodies."""
    store, sink = FakeUploadStore(lock_wait=5.0), FakeSink()
    r = resumable(store, sink, limits=UploadLimits(**{**LIMITS.__dict__, "body_idle_seconds": 30}))
    job_id = await created(r)
    first_read = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield AUDIO[:2000]
        first_read.set()
        await asyncio.Event().wait()  # the rest never comes (within the idle limit)
        yield b""

    first = asyncio.create_task(
        r.append(
            job_id,
            stalled(),
            offset=0,
            complete=None,
            length=None,
            checksum=sha256_of(AUDIO[:4000]),
        )
    )
    await first_read.wait()
    read_while_first_held: list[bool] = []

    async def second_body() -> AsyncIterator[bytes]:
        read_while_first_held.append(not first.done())
        yield AUDIO[:4000]

    second = await r.append(
        job_id,
        second_body(),
        offset=0,
        complete=None,
        length=None,
        checksum=sha256_of(AUDIO[:4000]),
    )
    interrupted = await first
    assert read_while_first_held == [False]
    assert interrupted.interrupted and interrupted.size == 0  # appended nothing
    assert second.size == 4000 and store.rows[job_id].offset == 4000


async def test_a_checksummed_patch_that_does_not_match_appends_nothing() -> None:
    store, sink = FakeUploadStore(), FakeSink()
    r = resumable(store, sink)
    job_id = await created(r)
    with pytest.raises(ApiError) as caught:
        await r.append(
            job_id,
            pieces(AUDIO[:4000]),
            offset=0,
            complete=None,
            length=None,
            checksum=sha256_of(b"other"),
        )
    assert caught.value.status_code == 460
    assert store.rows[job_id].offset == 0
    assert "chunk" not in sink.kinds()


async def test_an_append_still_streaming_when_its_upload_expires_is_cut_with_410() -> None:
    store, sink = FakeUploadStore(), FakeSink()
    r = resumable(store, sink)
    job_id = await created(r)

    async def endless() -> AsyncIterator[bytes]:
        yield AUDIO[:2000]
        store.ended(job_id, State.EXPIRED, None)  # the sweep: past its maximum age
        for _ in range(100):
            yield b"\0" * 1000

    with pytest.raises(ApiError) as caught:
        await r.append(job_id, endless(), offset=0, complete=None, length=None)
    assert caught.value.status_code == 410
    assert caught.value.code == "upload_expired"
