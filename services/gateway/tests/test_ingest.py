import hashlib
from collections.abc import AsyncIterator

import pytest
from gateway_fakes import FakeSink
from starlette.requests import ClientDisconnect

from contracts import CeType, Event, JobStatusChanged, UploadFinished, UploadStarted, topics
from gateway.ingest import UploadLimits, ingest
from gateway.ports import SinkError
from servicekit.http import ApiError, DependencyUnavailable
from tests.support.audio import WAV_HEAD
from tests.support.waiting import eventually

pytestmark = pytest.mark.unit

LIMITS = UploadLimits(
    max_bytes=10_000, chunk_bytes=1000, max_chunks_in_flight=2, ack_timeout_seconds=5
)
CT = "multipart/form-data; boundary=BB"


def form(data: bytes, name: str = "file") -> bytes:
    return (
        b'--BB\r\nContent-Disposition: form-data; name="'
        + name.encode()
        + b'"; filename="../x.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        + data
        + b"\r\n--BB--\r\n"
    )


async def stream(
    body: bytes, piece: int = 333, then: BaseException | None = None
) -> AsyncIterator[bytes]:
    for i in range(0, len(body), piece):
        yield body[i : i + piece]
    if then:
        raise then


async def run(body: AsyncIterator[bytes], sink: FakeSink, content_type: str = CT):
    return await ingest(
        body,
        content_type=content_type,
        content_length=None,
        token_id="t1",
        owner=None,
        sink=sink,
        limits=LIMITS,
    )


async def test_a_valid_upload_is_chunked_hashed_and_finished_before_acceptance() -> None:
    data = WAV_HEAD + bytes(range(256)) * 14
    sink = FakeSink()
    done = await run(stream(form(data)), sink)
    assert sink.kinds() == ["UploadStarted"] + ["chunk"] * 4 + [
        "UploadFinished",
        "JobStatusChanged",
    ]
    chunks = [m[1] for _, kind, m in sink.messages if kind == CeType.UPLOAD_CHUNK]
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [1000, 1000, 1000, len(data) - 3000]
    started, finished, accepted = (m for _, _, m in sink.messages if isinstance(m, Event))
    assert isinstance(started, UploadStarted) and started.filename == "x.wav"
    assert started.content_type == "audio/wav"
    assert isinstance(finished, UploadFinished)
    assert (finished.size, finished.chunk_count) == (len(data), 4)
    assert finished.sha256 == hashlib.sha256(data).hexdigest() == done.sha256
    assert isinstance(accepted, JobStatusChanged) and accepted.status == "accepted"


async def test_a_file_smaller_than_the_sniff_window_is_still_checked() -> None:
    sink = FakeSink()
    data = WAV_HEAD[:44] + b"\0" * 4  # a whole header and one stereo 16-bit frame
    done = await run(stream(form(data)), sink)
    assert done.size == 48
    assert sink.kinds() == ["UploadStarted", "chunk", "UploadFinished", "JobStatusChanged"]


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\x04\x00\x00\x00WAVE",  # the 12-byte RIFF/WAVE header and nothing else
        WAV_HEAD[:43],
        b"fLaC\x00\x00\x00\x22" + b"\0" * 20,
        b"OggS\x00\x02" + b"\0" * 22 + b"OpusHead",
        b"FORM\x00\x00\x00\x30AIFFCOMM",
    ],
    ids=["riff-wave-only", "wav-43", "flac-28", "ogg-36", "aiff-16"],
)
async def test_a_file_too_short_for_its_header_is_422_before_anything_is_sent(data) -> None:
    sink = FakeSink()
    with pytest.raises(ApiError) as caught:
        await run(stream(form(data)), sink)
    assert (caught.value.status_code, caught.value.code) == (422, "truncated_audio")
    assert f"{len(data)} bytes" in caught.value.message
    assert sink.messages == []


@pytest.mark.parametrize("piece", [50, 4096])
async def test_a_header_longer_than_the_sniff_window_is_checked_too(piece: int) -> None:
    # An ID3 tag that announces 1000 bytes, in a file of 200: refused, and, shorter than
    # a chunk, before anything is sent, whether it arrives whole or in pieces.
    tag = b"ID3\x04\x00\x00\x00\x00\x07\x68"  # syncsafe 1000
    sink = FakeSink()
    with pytest.raises(ApiError) as caught:
        await run(stream(form(tag + b"\0" * 190), piece=piece), sink)
    assert (caught.value.status_code, caught.value.code) == (422, "truncated_audio")
    assert sink.messages == []


async def test_a_header_longer_than_what_was_sent_aborts_it() -> None:
    # A tag that announces 4000 bytes, in a file of 2500: two chunks went out before
    # the end showed it; they are aborted (the uploader then drops them).
    tag = b"ID3\x04\x00\x00\x00\x00\x1f\x20"  # syncsafe 4000
    sink = FakeSink()
    with pytest.raises(ApiError) as caught:
        await run(stream(form(tag + b"\0" * 2490), piece=50), sink)
    assert (caught.value.status_code, caught.value.code) == (422, "truncated_audio")
    assert sink.kinds() == ["UploadStarted", "chunk", "chunk", "UploadAborted"]


async def test_one_chunk_goes_out_with_both_markers_and_a_longer_upload_with_one_each() -> None:
    # One send (one record batch, one produce request) for started, the chunk and
    # finished; for more, started rides with the first chunk and finished with the last.
    one, sink = FakeSink(), FakeSink()
    await run(stream(form(WAV_HEAD + b"\0" * 500)), one)
    assert one.kinds() == ["UploadStarted", "chunk", "UploadFinished", "JobStatusChanged"]
    assert one.sends == [3, 1]
    await run(stream(form(WAV_HEAD + b"\0" * 2500)), sink)
    assert sink.sends == [2, 1, 2, 1]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (form(b"%PDF-1.4 " * 20), CT, 415, "not_audio"),
        (form(b""), CT, 422, "empty_file"),
        (form(WAV_HEAD, name="other"), CT, 422, "missing_file"),
        (form(WAV_HEAD)[:-8], CT, 400, "malformed_form"),
        (form(WAV_HEAD), "multipart/form-data", 400, "malformed_form"),
        (b"{}", "application/json", 415, "unsupported_media_type"),
        (b"file=x", "application/x-www-form-urlencoded", 422, "missing_file"),
    ],
    ids=["pdf", "empty", "other-field", "unclosed", "no-boundary", "json", "urlencoded"],
)
async def test_bad_input_is_refused_and_nothing_is_sent(body, content_type, status, code) -> None:
    sink = FakeSink()
    with pytest.raises(ApiError) as caught:
        await run(stream(body), sink, content_type)
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert sink.messages == [] or sink.kinds()[-1] == "UploadAborted"
    assert "UploadFinished" not in sink.kinds()


async def test_too_large_is_413_and_aborts_what_was_sent() -> None:
    sink = FakeSink()
    with pytest.raises(ApiError) as caught:
        await run(stream(form(WAV_HEAD + b"\0" * 20_000)), sink)
    assert caught.value.status_code == 413
    assert sink.kinds()[0] == "UploadStarted" and sink.kinds()[-1] == "UploadAborted"
    assert "UploadFinished" not in sink.kinds()


async def test_a_body_cut_off_mid_upload_aborts_the_job() -> None:
    sink = FakeSink()
    body = form(WAV_HEAD + b"\0" * 5000)[:3000]
    with pytest.raises(ApiError) as caught:
        await run(stream(body, then=ClientDisconnect()), sink)
    assert (caught.value.status_code, caught.value.code) == (400, "incomplete_body")
    assert sink.kinds()[-1] == "UploadAborted"


async def test_kafka_refusing_a_chunk_is_503_and_no_finished_marker() -> None:
    sink = FakeSink(fail_from=2)
    with pytest.raises(DependencyUnavailable) as caught:
        await run(stream(form(WAV_HEAD + b"\0" * 5000)), sink)
    assert caught.value.dependency == "Kafka"
    # The abort marker is queued without keeping the client waiting for it.
    await eventually(lambda: "UploadAborted" in sink.kinds(), within=5, what="the abort")
    assert "UploadFinished" not in sink.kinds()
    assert sink.kinds()[-1] == "UploadAborted"


class FullBufferSink(FakeSink):
    """The producer's send buffer is full (the broker is down) for the first ``full``
    publishes after the ``n``-th: they time out, as the Kafka adapter's ``send`` does."""

    def __init__(self, n: int, full: int) -> None:
        super().__init__()
        self.n, self.full, self.publishes = n, full, 0

    async def _maybe_full(self) -> None:
        self.publishes += 1
        if self.n < self.publishes <= self.n + self.full:
            raise SinkError("timed out")

    async def event(self, topic: str, event: Event, ce_id: str):
        await self._maybe_full()
        return await super().event(topic, event, ce_id)

    async def chunk(self, job_id: str, sequence: int, data: bytes, offset: int | None = None):
        await self._maybe_full()
        return await super().chunk(job_id, sequence, data)


async def test_an_abort_marker_the_producer_cannot_take_yet_is_queued_once_it_can() -> None:
    # started and one chunk are taken; the second chunk and the first abort attempt time
    # out; the retried abort goes through, after the chunks already sent.
    sink = FullBufferSink(n=2, full=2)
    with pytest.raises(DependencyUnavailable):
        await run(stream(form(WAV_HEAD + b"\0" * 5000)), sink)
    await eventually(lambda: "UploadAborted" in sink.kinds(), within=10, what="the abort")
    assert sink.kinds() == ["UploadStarted", "chunk", "UploadAborted"]


class StatusRefusingSink(FakeSink):
    async def event(self, topic: str, event: Event, ce_id: str):
        if topic == topics.JOB_STATUS:
            raise SinkError("timed out")
        return await super().event(topic, event, ce_id)


@pytest.mark.parametrize("sink", [FakeSink(fail_from=4), StatusRefusingSink()])
async def test_once_the_finished_marker_is_acknowledged_the_upload_is_accepted(sink) -> None:
    data = WAV_HEAD + b"\0" * 1500
    # started, 2 chunks and finished go through; the accepted status cannot be sent.
    done = await run(stream(form(data)), sink)
    assert done.size == len(data)
    assert sink.kinds()[-1] in ("UploadFinished", "JobStatusChanged")
    assert "UploadAborted" not in sink.kinds()


class DownSink(FakeSink):
    """Kafka goes down once the upload started: every later publish fails at once."""

    async def _maybe_down(self) -> None:
        if not self.up:
            raise SinkError("timed out")

    async def event(self, topic: str, event: Event, ce_id: str):
        await self._maybe_down()
        return await super().event(topic, event, ce_id)

    async def chunk(self, job_id: str, sequence: int, data: bytes, offset: int | None = None):
        await self._maybe_down()
        self.up = len(self.messages) < 1  # down after the first chunk
        return await super().chunk(job_id, sequence, data)


async def test_a_body_cut_off_while_kafka_is_down_still_gets_its_abort_once_kafka_returns() -> None:
    sink = DownSink()
    body = form(WAV_HEAD + b"\0" * 5000)[:1800]
    with pytest.raises(ApiError) as caught:
        await run(stream(body, then=ClientDisconnect()), sink)
    assert caught.value.code == "incomplete_body"
    assert "UploadAborted" not in sink.kinds()
    sink.up = True
    await eventually(lambda: "UploadAborted" in sink.kinds(), within=10, what="the abort")
    assert sink.kinds() == ["UploadStarted", "chunk", "UploadAborted"]
