"""Stream one upload from the request body into Kafka (docs/architecture.md §5.1, §5.2, §5.6).

The body is read as it arrives; the ``file`` field's bytes are cut into chunks and
produced to ``audio.upload`` behind an ``UploadStarted``, with a bounded number of
unacknowledged chunks in flight. ``UploadStarted`` travels with the first chunk and
``UploadFinished`` with the last, in their record batches, once every chunk before it
is acknowledged: a recording of one chunk is one produce request. Only after Kafka
acknowledged every chunk and the ``UploadFinished`` marker does the client get its
202. Anything that goes wrong after the first of them was handed to the producer is
followed by ``UploadAborted`` so that the uploader drops what it holds; an upload cut
before that leaves nothing on Kafka.

A body that goes quiet (less than ``body_min_bytes_per_second`` over
``body_idle_seconds`` of waiting for it, :func:`paced`) is cut: the upload is aborted,
its job fails with ``upload_timeout`` (if anything of it reached Kafka) and the
client, if it is still there, gets 408 (docs/architecture.md §5.2).
"""

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect

from contracts import (
    ErrorCode,
    JobStatus,
    JobStatusChanged,
    UploadAborted,
    UploadFinished,
    UploadStarted,
    topics,
)
from gateway.form import FileFieldReader, MalformedForm, NoFileField, NotAForm, boundary_of
from gateway.ports import Ack, ChunkMessage, EventMessage, Message, SinkError, UploadSink
from gateway.sniff import SNIFF_BYTES, header_bytes, sniff_audio
from servicekit.blocks import Blocks
from servicekit.digest import Sha256
from servicekit.http import ApiError, DependencyUnavailable
from servicekit.logs import job_id_var

log = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024
"""Room for multipart boundaries and headers above the file size limit."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    chunk_bytes: int
    max_chunks_in_flight: int
    ack_timeout_seconds: float
    body_idle_seconds: float = 30.0
    body_min_bytes_per_second: int = 0


class BodyQuiet(Exception):
    """The client sent too little of its request body for too long (:func:`paced`)."""


def paced(body: AsyncIterator[bytes], limits: UploadLimits) -> AsyncIterator[bytes]:
    """``body``'s pieces, cut with :class:`BodyQuiet` when waiting for them has lasted
    ``body_idle_seconds`` without ``body_min_bytes_per_second`` times as many bytes
    arriving; the wait starts over whenever they did (a rate of 0: at every byte).

    Only the time spent waiting for the client counts: while the caller is busy with a
    piece (waiting for Kafka's acknowledgements), the client's next bytes pile up in the
    socket buffers and the clock stands still. So a slow broker never cuts a client, and
    a client that sends a byte now and then cannot hold an upload (and, for a one-shot
    upload, the uploader's committed offset of its partition) open for ever."""
    return _paced(body, limits.body_idle_seconds, limits.body_min_bytes_per_second)


async def _paced(body: AsyncIterator[bytes], idle: float, rate: int) -> AsyncIterator[bytes]:
    # One timer for the whole body, re-armed only when it fires early, instead of a
    # timeout per piece: a fast upload passes hundreds of pieces a second through here.
    loop = asyncio.get_running_loop()
    pieces = aiter(body)
    wanted = max(1, round(rate * idle))
    waited, got = 0.0, 0
    since: float | None = None  # when the wait for the next piece began
    waiter: asyncio.Task[Any] | None = None
    quiet = False
    timer: asyncio.TimerHandle | None = None

    def check() -> None:
        nonlocal timer, quiet
        if since is None:  # not waiting now: the next wait arms it again
            timer = None
            return
        left = idle - waited - (loop.time() - since)
        if left > 0:
            timer = loop.call_at(loop.time() + left, check)
            return
        timer = None
        quiet = True
        if waiter is not None:
            waiter.cancel()

    try:
        while True:
            since, waiter = loop.time(), asyncio.current_task()
            if timer is None:
                timer = loop.call_at(since + idle - waited, check)
            try:
                piece = await anext(pieces)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if quiet and waiter is not None and waiter.uncancel() == 0:
                    sent = "nothing" if wanted == 1 else f"less than {wanted} bytes"
                    raise BodyQuiet(f"the request body sent {sent} in {idle:g} s") from None
                raise
            waited += loop.time() - since
            since = None
            got += len(piece)
            if got >= wanted:
                waited, got = 0.0, 0
            yield piece
    finally:
        if timer is not None:
            timer.cancel()


def body_timeout(exc: BodyQuiet, headers: dict[str, str] | None = None) -> ApiError:
    """The 408 for a quiet body; the connection is closed after it (RFC 9110 §15.5.9),
    so that the rest of a body still trickling in does not keep it open."""
    return ApiError(
        408, "upload_timeout", str(exc), headers={"Connection": "close", **(headers or {})}
    )


@dataclass(frozen=True)
class Ingested:
    job_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Acked:
    """What Kafka holds once a chunk is acknowledged: the bytes up to ``size``, in
    ``sequence`` chunks, and the digest state after them."""

    size: int
    sequence: int
    digest: bytes


class ChunkPipeline:
    """One upload in progress: chunking, hashing and the acknowledgements in flight.

    Events :meth:`hold` keeps go out with the next chunk, in its record batch: a
    one-shot upload's ``UploadStarted`` waits for its first chunk, and :meth:`finish`
    sends the last chunk and ``UploadFinished`` together, so an upload of one chunk is
    one produce request (docs/architecture.md §5.1). ``handed_over`` tells whether
    anything of it may be on Kafka, which an abort must then follow.

    A resumable append (gateway.resumable) continues an upload: it starts at the stored
    ``size``, ``sequence`` and digest, marks each chunk with its byte offset, and hears
    of every acknowledged chunk through ``on_acked`` to advance the stored offset."""

    def __init__(
        self,
        sink: UploadSink,
        limits: UploadLimits,
        job_id: str,
        *,
        size: int = 0,
        sequence: int = 0,
        digest: Sha256 | None = None,
        offsets: bool = False,
        on_acked: Callable[[Acked], Awaitable[None]] | None = None,
    ) -> None:
        self.sink = sink
        self.limits = limits
        self.job_id = job_id
        self.sha256 = digest or Sha256()
        self.size = size
        self.sent = size
        self.sequence = sequence
        self.offsets = offsets
        self.on_acked = on_acked
        self.buffer = Blocks(limits.chunk_bytes, bytes)
        self.in_flight: deque[tuple[Ack, Acked | None]] = deque()
        self.held: list[EventMessage] = []
        self.started = False
        self.handed_over = False

    def hold(self, event: EventMessage) -> None:
        """Send ``event`` with the next chunk, or with the end."""
        self.held.append(event)

    async def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.limits.max_bytes:
            raise ApiError(
                413, "too_large", f"the file is larger than {self.limits.max_bytes} bytes"
            )
        for chunk in self.buffer.add(piece):
            await self._send_chunk(chunk)

    async def flush(self) -> None:
        if self.buffer:
            await self._send_chunk(self.buffer.rest())
            self.buffer.clear()
        await self._await_all()

    async def finish(self, finished: Callable[[], EventMessage]) -> None:
        """Once every chunk sent so far is acknowledged, send the last one with the
        message ``finished`` makes of the upload's state after it, and wait for both.

        The marker goes only behind acknowledged chunks and in the last chunk's record
        batch, which the broker takes or refuses whole: whatever fails, no marker is
        stored without every chunk before it."""
        await self._await_all()
        if self.buffer:
            await self._send_chunk(self.buffer.rest(), then=finished)
            self.buffer.clear()
        else:
            await self._send((finished(), None))
        await self._await_all()

    async def _send_chunk(
        self, data: bytes, then: Callable[[], EventMessage] | None = None
    ) -> None:
        if len(self.in_flight) >= self.limits.max_chunks_in_flight:
            await self._await_first()
        # Hashed as it is sent, so that the state stored with an acknowledged chunk is
        # exactly that of the bytes up to its end.
        self.sha256.update(data)
        chunk = ChunkMessage(
            self.job_id, self.sequence, data, offset=self.sent if self.offsets else None
        )
        checkpoint = Acked(self.sent + len(data), self.sequence + 1, self.sha256.state())
        self.sent, self.sequence = checkpoint.size, checkpoint.sequence
        await self._send((chunk, checkpoint), *(((then(), None),) if then else ()))

    async def _send(self, *messages: tuple[Message, Acked | None]) -> None:
        """Hand the held events and ``messages`` to the producer together; each
        acknowledgement joins the queue with its checkpoint."""
        held, self.held = [(event, None) for event in self.held], []
        sending = [*held, *messages]
        self.handed_over = True  # a failed send may still have handed some over
        acks = await self.sink.send(*(message for message, _ in sending))
        self.in_flight.extend(
            (ack, checkpoint) for ack, (_, checkpoint) in zip(acks, sending, strict=True)
        )

    async def _await_all(self) -> None:
        while self.in_flight:
            await self._await_first()

    async def _await_first(self) -> None:
        ack, checkpoint = self.in_flight[0]
        await self.confirm(ack)
        self.in_flight.popleft()
        if checkpoint is not None and self.on_acked is not None:
            await self.on_acked(checkpoint)

    async def confirm(self, ack: Ack) -> None:
        # The sink ends the wait as soon as it sees the broker down; the timeout here is
        # the bound whatever the sink.
        async with asyncio.timeout(self.limits.ack_timeout_seconds):
            await self.sink.confirmed(ack)

    async def send_and_wait(
        self,
        topic: str,
        event: UploadStarted | UploadFinished | UploadAborted | JobStatusChanged,
        ce_id: str,
    ) -> None:
        (ack,) = await self.sink.send(EventMessage(topic, event, ce_id))
        await self.confirm(ack)


def checked_headers(
    content_type: str | None, content_length: int | None, limits: UploadLimits
) -> bytes:
    """What the headers alone decide about a one-shot upload, before anything is read
    or counted: 415 not a form, 422 no body, 400 malformed, 413 declared too large. The
    form's boundary."""
    try:
        if content_type is None and content_length == 0:
            raise NoFileField("the request has no body, so no `file` field")
        boundary = boundary_of(content_type)
    except NotAForm as exc:
        raise ApiError(415, "unsupported_media_type", str(exc)) from exc
    except NoFileField as exc:
        raise ApiError(422, "missing_file", str(exc)) from exc
    except MalformedForm as exc:
        raise ApiError(400, "malformed_form", str(exc)) from exc
    if content_length is not None and content_length > limits.max_bytes + FORM_OVERHEAD:
        raise ApiError(413, "too_large", f"the file is larger than {limits.max_bytes} bytes")
    return boundary


async def ingest(
    body: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: int | None,
    token_id: str,
    owner: str | None,
    sink: UploadSink,
    limits: UploadLimits,
) -> Ingested:
    boundary = checked_headers(content_type, content_length, limits)
    job_id = str(uuid.uuid4())
    job_id_var.set(job_id)
    reader = FileFieldReader(boundary)
    upload = ChunkPipeline(sink, limits, job_id)
    head = bytearray()
    media_type = ""
    header_needed = 0

    async def start() -> None:
        nonlocal media_type, header_needed
        detected = sniff_audio(bytes(head))
        if detected is None:
            raise ApiError(
                415,
                "not_audio",
                "the file is not a supported audio format "
                "(WAV, AIFF, FLAC, MP3, OGG/Vorbis/Opus, M4A/AAC, WebM)",
            )
        media_type = detected
        header_needed = header_bytes(detected, bytes(head))
        if reader.file_complete and len(head) < header_needed:
            # The whole file is in hand and cannot hold its own header: refused before
            # anything reaches Kafka, so nothing is left behind.
            raise _too_short(len(head), media_type, header_needed)
        started = UploadStarted(
            job_id=job_id,
            token_id=token_id,
            filename=clean_filename(reader.filename),
            content_type=media_type,
            owner=owner,
            chunk_size=limits.chunk_bytes,
            size_hint=content_length,
        )
        # It goes out with the first chunk: an upload cut before that leaves nothing.
        upload.hold(EventMessage(topics.AUDIO_UPLOAD, started, f"{job_id}:started"))
        upload.started = True
        await upload.add(bytes(head))

    try:
        async for data in paced(body, limits):
            for piece in reader.feed(data):
                if upload.started:
                    await upload.add(piece)
                    continue
                head += piece
                if len(head) >= SNIFF_BYTES:
                    await start()
        reader.finish()
        if not reader.file_seen:
            raise ApiError(422, "missing_file", "the form has no `file` field")
        if not head and not upload.started:
            raise ApiError(422, "empty_file", "the file is empty")
        if not upload.started:
            await start()
        if upload.size < header_needed:  # a header longer than the sniffed head
            raise _too_short(upload.size, media_type, header_needed)
        await upload.finish(
            lambda: EventMessage(
                topics.AUDIO_UPLOAD,
                UploadFinished(
                    job_id=job_id,
                    chunk_count=upload.sequence,
                    size=upload.size,
                    sha256=upload.sha256.hexdigest(),
                ),
                f"{job_id}:finished",
            )
        )
    except BaseException as exc:
        kafka_failed = isinstance(exc, (SinkError, TimeoutError))
        if upload.handed_over:
            # With Kafka failing, the client is not kept waiting for the marker too.
            await abort(upload, _reason(exc), wait=not kafka_failed)
        if isinstance(exc, BodyQuiet):
            if upload.handed_over:
                await _failed(upload, ErrorCode.UPLOAD_TIMEOUT, str(exc))
            raise body_timeout(exc) from exc
        if isinstance(exc, MalformedForm):
            raise ApiError(400, "malformed_form", str(exc)) from exc
        if isinstance(exc, ClientDisconnect):
            raise ApiError(400, "incomplete_body", "the request body ended early") from exc
        if kafka_failed:
            # Answered 503 with Retry-After by create_app's handler, which logs it.
            raise DependencyUnavailable("Kafka", detail=repr(exc)) from exc
        raise
    # The 202 promise is kept: every chunk and the finished marker are acknowledged, so
    # from here on nothing may turn the answer into an error. The `accepted` status adds
    # nothing the 202 does not say: the answer does not wait a round trip for it, and if
    # it is lost, the uploader's statuses follow.
    try:
        (ack,) = await sink.send(
            EventMessage(
                topics.JOB_STATUS,
                JobStatusChanged(
                    job_id=job_id,
                    status=JobStatus.ACCEPTED,
                    progress=0,
                    detail="upload received",
                    owner=owner,
                ),
                f"{job_id}:status:accepted",
            )
        )
        _acknowledge_later(ack)
    except Exception as exc:
        log.warning("the accepted status was not published: %r", exc)
    log.info("accepted upload of %d bytes as %s", upload.size, media_type)
    return Ingested(
        job_id=job_id,
        filename=clean_filename(reader.filename),
        content_type=media_type,
        size=upload.size,
        sha256=upload.sha256.hexdigest(),
    )


_pending: set[asyncio.Future[Any]] = set()
"""Acknowledgements and abort tasks nobody awaits; held so they are not collected."""

ABORT_RETRY_SECONDS = 600.0
"""How long a queued abort marker keeps trying to reach the producer while Kafka is down."""


def _keep(future: asyncio.Future[Any], what: str) -> None:
    def done(finished: asyncio.Future[Any]) -> None:
        _pending.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            log.warning("%s was not published: %r", what, finished.exception())

    _pending.add(future)
    future.add_done_callback(done)


def _acknowledge_later(ack: Ack) -> None:
    _keep(ack, "the accepted status")


async def abort(upload: ChunkPipeline, reason: str, *, wait: bool = True) -> None:
    """Follow what was sent of the upload with ``UploadAborted`` so that the uploader
    drops it. The marker goes behind the job's chunks (same key, same partition, so in
    order); with ``wait``, the acknowledgement is awaited, bounded."""
    log.warning("upload aborted: %s", reason)
    for ack, _ in upload.in_flight:
        ack.cancel()
    marker = UploadAborted(job_id=upload.job_id, reason=reason)
    if not wait:
        _keep(asyncio.create_task(_queue_abort(upload, marker)), "the abort marker")
        return
    try:
        (ack,) = await upload.sink.send(_aborted(upload, marker))
    except (SinkError, TimeoutError):
        # Not handed over: the broker is down. Keep trying in the background.
        _keep(asyncio.create_task(_queue_abort(upload, marker)), "the abort marker")
        return
    try:
        await upload.confirm(ack)
    except Exception as exc:
        # Handed over: the idempotent producer delivers it when the broker answers.
        log.warning("the abort marker is not acknowledged yet: %r", exc)


async def _queue_abort(upload: ChunkPipeline, marker: UploadAborted) -> None:
    """Hand the abort marker to the producer, retrying while the broker is down. Once
    handed over, the idempotent producer retries it until the broker takes it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ABORT_RETRY_SECONDS
    while True:
        try:
            (ack,) = await upload.sink.send(_aborted(upload, marker))
        except (SinkError, TimeoutError):
            if loop.time() > deadline:
                # The uploader's stale-upload sweep is the safety net for this case.
                log.error("gave up publishing the abort marker of %s", upload.job_id)
                return
            await asyncio.sleep(1.0)
            continue
        _keep(ack, "the abort marker")
        return


def _aborted(upload: ChunkPipeline, marker: UploadAborted) -> EventMessage:
    return EventMessage(topics.AUDIO_UPLOAD, marker, f"{upload.job_id}:aborted")


async def _failed(upload: ChunkPipeline, code: ErrorCode, message: str) -> None:
    """End the aborted job explicitly: it may have shown progress already (the
    uploader's ``uploading``), and no 202 will tell its client anything."""
    try:
        await upload.send_and_wait(
            topics.JOB_STATUS,
            JobStatusChanged.failed(upload.job_id, code, message),
            f"{upload.job_id}:status:failed",
        )
    except Exception as exc:
        log.warning("the failed status was not published: %r", exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BodyQuiet):
        return ErrorCode.UPLOAD_TIMEOUT.value
    if isinstance(exc, ApiError):
        return exc.code
    return type(exc).__name__


def _too_short(size: int, media_type: str, needed: int) -> ApiError:
    return ApiError(
        422,
        "truncated_audio",
        f"the file is {size} bytes, too short to hold even the header of its format "
        f"({media_type} needs at least {needed})",
    )


def clean_filename(name: str | None) -> str:
    if not name:
        return "upload"
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>|:*?')
    return cleaned[:255] or "upload"
