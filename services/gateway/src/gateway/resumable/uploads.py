"""The upload resource both resumable protocols share (docs/architecture.md §12).

An upload is a job from its creation: ``accepted`` is published then, so progress
streams from the first byte. Each append runs the one-shot route's chunk pipeline
(:class:`gateway.ingest.ChunkPipeline`) from the stored offset, chunk count and digest
state; the stored offset advances only after Kafka acknowledged a chunk, so it is what
Kafka holds. An interrupted append still stores every byte it received. Completion
checks the length and the client's sha-256, then sends ``UploadFinished`` exactly as the
one-shot route does.

An upload ends ``upload_expired`` once it has received no append for
``expiry_seconds``, and at the latest ``max_age_seconds`` after its creation: a HEAD
only reads, so it extends nothing, and no request extends the maximum age. An append
whose body goes quiet (:func:`gateway.ingest.paced`) stops reading, keeps what Kafka
acknowledged and answers 408; the upload can be resumed.

An upload whose job is deleted (``job.deleted``, :meth:`Resumable.erase`) ends: an
append in progress is taken over as a new request would, the uploader is told to drop
what it holds (``UploadAborted``), and the row is erased. The resource then answers 410
to the holder of the job's token (a tombstone remembers the id), 404 to anyone else.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from contracts import (
    ErrorCode,
    JobStatus,
    JobStatusChanged,
    UploadAborted,
    UploadFinished,
    UploadStarted,
    topics,
)
from gateway.accepted import JobGrant, accepted_body, set_progress_cookie
from gateway.ingest import Acked, BodyQuiet, ChunkPipeline, UploadLimits, body_timeout, paced
from gateway.ports import (
    EventMessage,
    Lease,
    LockBusy,
    Quota,
    SinkError,
    State,
    UploadRecord,
    UploadRow,
    UploadSink,
    UploadStore,
)
from gateway.sniff import SNIFF_BYTES, sniff_audio
from servicekit.digest import Sha256
from servicekit.http import ApiError
from servicekit.logs import job_id_var
from servicekit.tokens import JobTokens, Scope, authorize

log = logging.getLogger(__name__)

DELETED_REASON = "job_deleted"
"""``UploadAborted.reason`` of an upload whose job was deleted."""


def job_deleted() -> ApiError:
    """The answer about an upload whose job was deleted (docs/architecture.md §8)."""
    return ApiError(410, "job_deleted", "the job was deleted")


class OffsetMismatch(ApiError):
    def __init__(self, expected: int, provided: int) -> None:
        super().__init__(
            409, "offset_mismatch", f"the upload is at offset {expected}, not {provided}"
        )
        self.expected = expected
        self.provided = provided


class TakenOver(Exception):
    """A newer request on the same upload asked this append to stop."""


@dataclass(frozen=True)
class Appended:
    row: UploadRow
    complete: bool
    interrupted: bool
    size: int
    sha256: str
    body: str | None
    """The final answer's JSON (the one-shot route's 202 body) once complete."""


@dataclass(frozen=True)
class NewUpload:
    """What a creation request says about the upload to come."""

    protocol: str
    token_id: str
    owner: str | None
    filename: str
    length: int | None
    client: str
    """Whom the fair-use limits count it against (``gateway.limits.client_key``)."""
    body_bytes: int | None
    """The creation request's own body (Content-Length), None when not declared."""
    repr_sha256: str | None = None


@dataclass(frozen=True)
class Created:
    grant: JobGrant

    @property
    def job_id(self) -> str:
        return self.grant.job_id

    @property
    def location(self) -> str:
        """The upload URL both protocols answer; it carries the job access token (the
        one that may append)."""
        return f"/uploads/{self.job_id}?access_token={self.grant.access_token}"


def creation_answer(
    request: Request,
    resumable: "Resumable",
    created: Created,
    body: str,
    status: int,
    headers: dict[str, str],
) -> Response:
    """A creation's answer in either protocol: the one-shot route's JSON ``body``, the
    upload URL in ``Location`` and the progress cookie, as the one-shot route sets it."""
    answer = Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={**headers, "Location": created.location},
    )
    set_progress_cookie(request, answer, resumable.tokens, created.grant)
    return answer


def accepted_json(created: Created, new: NewUpload, row: UploadRow, size: int, sha256: str) -> str:
    """The one-shot route's 202 body for an upload not complete yet."""
    body = accepted_body(created.grant, new.filename, row.media_type or "", size, sha256)
    return body.model_dump_json()


@dataclass
class Resumable:
    store: UploadStore
    sink: UploadSink
    limits: UploadLimits
    tokens: JobTokens
    quota: Quota
    expiry_seconds: int
    checksum_max_bytes: int = 16 * 1024 * 1024
    max_age_seconds: int = 24 * 3600

    def lifetime(self) -> int:
        """Seconds a new upload may live: what ``Upload-Limit: max-age`` announces
        before there is an upload (OPTIONS, the 104)."""
        return min(self.expiry_seconds, self.max_age_seconds)

    def expires_at(self, created_at: datetime) -> datetime:
        """The expiry after an append now: idle expiry, never past the maximum age."""
        idle = datetime.now(UTC) + timedelta(seconds=self.expiry_seconds)
        return min(idle, created_at + timedelta(seconds=self.max_age_seconds))

    @staticmethod
    def remaining(row: UploadRow) -> int:
        """Whole seconds the upload has left, from now (the draft's ``max-age``)."""
        left = (row.expires_at - datetime.now(UTC)).total_seconds()
        return max(0, math.ceil(left))

    @contextlib.asynccontextmanager
    async def creating(self, new: NewUpload) -> AsyncIterator[Created]:
        """Create the upload resource and its job, publishing ``accepted``, within the
        client's fair use (``gateway.limits``: 429 before anything is created); the
        block receives the creation request's body, if any."""
        length = new.length
        if length is not None and length > self.limits.max_bytes:
            raise ApiError(
                413, "too_large", f"the file is larger than {self.limits.max_bytes} bytes"
            )
        if length == 0:
            raise ApiError(422, "empty_file", "the file is empty")
        job_id = str(uuid.uuid4())
        job_id_var.set(job_id)
        lease = await self.quota.admit_upload(new.client, length, new.body_bytes, job_id)
        try:
            await self._create(job_id, new)
            yield Created(JobGrant.issue(self.tokens, job_id, new.owner))
        finally:
            await self.quota.release(lease)

    async def _create(self, job_id: str, new: NewUpload) -> None:
        now = datetime.now(UTC)
        await self.store.create(
            UploadRecord(
                job_id=job_id,
                protocol=new.protocol,
                token_id=new.token_id,
                owner=new.owner,
                filename=new.filename,
                length=new.length,
                repr_sha256=new.repr_sha256,
                digest=Sha256().state(),
                expires_at=self.expires_at(now),
                created_at=now,
            )
        )
        await self._status(
            JobStatusChanged(
                job_id=job_id,
                status=JobStatus.ACCEPTED,
                progress=0,
                detail="resumable upload created",
                owner=new.owner,
            ),
            f"{job_id}:status:accepted",
        )

    async def find(self, job_id: str, presented: list[str], owner: str | None) -> UploadRow:
        """The upload, if one of the ``presented`` job tokens may append to and cancel it
        (``job:write``: the access token of the 201, not the read-only progress token),
        or ``owner`` (a verified bearer JWT's subject) is the upload's owner."""
        row = await self.store.get(job_id)
        if row is None:
            raise await self.missing(job_id, presented)
        if owner is None or row.owner != owner:
            authorize(self.tokens, job_id, presented, Scope.WRITE)
        return row

    async def missing(self, job_id: str, presented: Sequence[str] = ()) -> ApiError:
        """Why there is no upload ``job_id``: its job was deleted (410, told only to a
        holder of one of the job's tokens), or there never was one (404)."""
        if any(self.tokens.allows(token, job_id) for token in presented) and (
            await self.store.deleted(job_id)
        ):
            return job_deleted()
        return ApiError(404, "unknown_upload", "there is no such upload")

    @staticmethod
    def usable(row: UploadRow) -> None:
        if row.state is State.DELETED:
            raise job_deleted()
        if row.state is State.EXPIRED:
            raise ApiError(410, "upload_expired", "the upload expired")
        if row.state in (State.CANCELLED, State.FAILED):
            raise ApiError(404, "upload_ended", f"the upload was {row.state.value}")

    async def current(self, row: UploadRow) -> UploadRow:
        """The stored state, after ending any append in progress (the draft's
        "Concurrency"), so that the offset answered is the one the next append needs.
        Reading the offset is not activity: it extends no expiry."""
        self.usable(row)
        try:
            async with self.store.lease(row.job_id) as lease:
                found = await lease.row()
        except LockBusy:
            found = await self.store.get(row.job_id)
        if found is None:  # erased meanwhile: its job was deleted
            raise job_deleted()
        self.usable(found)
        return found

    async def cancel(self, row: UploadRow) -> None:
        """Termination (the draft's DELETE, tus ``termination``) of an upload not complete."""
        self.usable(row)
        if row.state is State.COMPLETE:
            raise ApiError(409, "upload_complete", "the upload is complete already")
        job_id = row.job_id
        try:
            async with self.store.lease(job_id) as lease:
                ended = await lease.finish(State.CANCELLED, None)
        except LockBusy:
            ended = await self.store.end(job_id, State.CANCELLED)
        if ended:
            await self._end_job(job_id, ErrorCode.UPLOAD_ABORTED, "the client cancelled the upload")

    async def erase(self, job_id: str) -> None:
        """Its job was deleted (``job.deleted``): end the upload if it is open (an append
        in progress is taken over and answered 410), tell the uploader to drop what it
        holds, then erase the row (a tombstone stays) and its fair-use leases.

        Each step may be repeated: a redelivery after a crash finds the row ``deleted``
        and tells the uploader again; the uploader is told nothing of an upload that had
        ended already (complete: its own erasure deletes the object)."""
        job_id_var.set(job_id)
        row = await self.store.get(job_id)
        if row is not None and row.state in (State.OPEN, State.DELETED):
            try:
                async with self.store.lease(job_id) as lease:
                    await lease.finish(State.DELETED, None)
            except LockBusy:
                # The append stops at its next acknowledged chunk (410).
                await self.store.end(job_id, State.DELETED)
            await self._status_on(
                topics.AUDIO_UPLOAD,
                UploadAborted(job_id=job_id, reason=DELETED_REASON),
                f"{job_id}:aborted",
            )
            log.info("resumable upload ended: its job was deleted")
        await self.store.erase(job_id)
        await self.quota.forget(job_id)

    async def expire(self, row: UploadRow) -> None:
        """End an upload the sweeper found idle past its expiry."""
        job_id_var.set(row.job_id)
        log.info("upload expired after %d bytes", row.offset)
        await self._end_job(row.job_id, ErrorCode.UPLOAD_EXPIRED, "the upload expired unfinished")

    async def append(
        self,
        job_id: str,
        body: AsyncIterator[bytes],
        *,
        offset: int,
        complete: bool | None,
        length: int | None,
        checksum: bytes | None = None,
    ) -> Appended:
        """Append ``body`` at ``offset``. ``complete`` None (tus) completes the upload
        once the offset reaches its length. With a ``checksum`` (tus: the SHA-256 of the
        body) the body is read whole and checked before any of it is appended."""
        job_id_var.set(job_id)
        try:
            async with self.store.lease(job_id) as lease:
                return await self._append(lease, body, offset, complete, length, checksum)
        except LockBusy as exc:
            raise ApiError(
                409,
                "upload_busy",
                "another request on this upload did not stop in time",
                headers={"Retry-After": "1"},
            ) from exc

    async def _append(
        self,
        lease: Lease,
        body: AsyncIterator[bytes],
        offset: int,
        complete: bool | None,
        length: int | None,
        checksum: bytes | None,
    ) -> Appended:
        row = await lease.row()
        if row is None:  # erased after the request found it: its job was deleted
            raise job_deleted()
        job_id = row.job_id
        if row.state is State.COMPLETE:
            raise ApiError(409, "upload_complete", "the upload is complete already")
        self.usable(row)
        if offset != row.offset:
            raise OffsetMismatch(row.offset, offset)
        if length is not None and (
            (row.length is not None and length != row.length) or length < row.offset
        ):
            raise ApiError(400, "inconsistent_length", "the upload length does not match")
        if length is not None and row.length is None:
            await lease.set_length(length)
        total = row.length if row.length is not None else length
        await lease.touch(self.expires_at(row.created_at))

        media = row.media_type

        async def stored(acked: Acked) -> None:
            if not await lease.advance(acked.size, acked.sequence, acked.digest, media):
                # Ended meanwhile (expired past its maximum age, or its job deleted):
                # stop reading (410).
                ended = await lease.row()
                if ended is None:
                    raise job_deleted()
                self.usable(ended)

        pipeline = ChunkPipeline(
            self.sink,
            self.limits,
            job_id,
            size=row.offset,
            sequence=row.chunk_count,
            digest=Sha256.restore(row.digest),
            offsets=True,
            on_acked=stored,
        )
        pipeline.started = media is not None
        head = bytearray()

        async def start() -> None:
            nonlocal media
            detected = sniff_audio(bytes(head))
            if detected is None:
                await self._fail(lease, ErrorCode.INVALID_AUDIO, "the file is not audio")
                raise ApiError(
                    415,
                    "not_audio",
                    "the file is not a supported audio format "
                    "(WAV, FLAC, MP3, OGG/Opus, M4A/AAC, WebM)",
                )
            media = detected
            started = UploadStarted(
                job_id=job_id,
                token_id=row.token_id,
                filename=row.filename,
                content_type=detected,
                owner=row.owner,
                chunk_size=self.limits.chunk_bytes,
                size_hint=total,
                resumable=True,
            )
            (ack,) = await self.sink.send(
                EventMessage(topics.AUDIO_UPLOAD, started, f"{job_id}:started")
            )
            pipeline.in_flight.append((ack, None))
            pipeline.started = True
            await pipeline.add(bytes(head))
            head.clear()

        interrupted = False
        quiet: BodyQuiet | None = None
        try:
            try:
                pieces = until_taken_over(paced(body, self.limits), lease.taken_over)
                if checksum is not None:
                    pieces = await self._checked(pieces, checksum)
                async for piece in pieces:
                    if total is not None and pipeline.size + len(head) + len(piece) > total:
                        raise ApiError(
                            413, "beyond_length", f"the upload's length is {total} bytes"
                        )
                    if pipeline.started:
                        await pipeline.add(piece)
                        continue
                    head += piece
                    if len(head) >= SNIFF_BYTES:
                        await start()
            except (ClientDisconnect, TakenOver, BodyQuiet) as exc:
                # Keep what arrived: the client resumes from the stored offset.
                log.info("append interrupted (%s) at %d bytes", type(exc).__name__, pipeline.size)
                interrupted = True
                quiet = exc if isinstance(exc, BodyQuiet) else None
            if head and not pipeline.started and not interrupted:
                await start()
            await pipeline.flush()
            if quiet is not None:
                raise body_timeout(quiet, {"Upload-Offset": str(pipeline.sent)})
            if complete is None:
                complete = total is not None and pipeline.sent == total
            if interrupted or not complete:
                after = await lease.row()
                if after is None:
                    raise job_deleted()
                return Appended(
                    after, False, interrupted, pipeline.sent, pipeline.sha256.hexdigest(), None
                )
            return await self._complete(lease, row, pipeline, total)
        except (SinkError, TimeoutError) as exc:
            log.error("Kafka did not take the append: %r", exc)
            raise ApiError(
                503,
                "unavailable",
                "the bytes could not be stored; resume from the upload's offset",
                headers={"Retry-After": "5"},
            ) from exc

    async def _checked(self, pieces: AsyncIterator[bytes], expected: bytes) -> AsyncIterator[bytes]:
        """The whole body, once its SHA-256 is ``expected`` (tus ``checksum``: bytes on
        Kafka cannot be taken back, so a body that does not match must not be appended).
        Read under the upload's lease, so an upload holds at most one such body: a second
        PATCH first ends this one (which then appends nothing) and reads its own only
        once this one let go."""
        limit = self.checksum_max_bytes
        held: deque[bytes] = deque()
        digest = hashlib.sha256()
        size = 0
        async for piece in pieces:
            size += len(piece)
            if size > limit:
                raise ApiError(
                    413, "too_large", f"a PATCH with a checksum is at most {limit} bytes"
                )
            digest.update(piece)
            held.append(piece)
        if digest.digest() != expected:
            raise ApiError(460, "checksum_mismatch", "the body does not match Upload-Checksum")

        async def replay() -> AsyncIterator[bytes]:
            while held:  # each piece let go as it is handed on
                yield held.popleft()

        return replay()

    async def _complete(
        self, lease: Lease, row: UploadRow, pipeline: ChunkPipeline, total: int | None
    ) -> Appended:
        job_id = row.job_id
        if pipeline.sent == 0:
            await self._fail(lease, ErrorCode.INVALID_AUDIO, "the file is empty")
            raise ApiError(422, "empty_file", "the file is empty")
        if total is not None and pipeline.sent != total:
            raise ApiError(
                400,
                "inconsistent_length",
                f"the upload is complete at {pipeline.sent} bytes, its length is {total}",
            )
        sha256 = pipeline.sha256.hexdigest()
        if row.repr_sha256 and row.repr_sha256 != sha256:
            await self._fail(lease, ErrorCode.CHECKSUM_MISMATCH, "Repr-Digest does not match")
            raise ApiError(
                400, "digest_mismatch", "the sha-256 of the bytes received differs from Repr-Digest"
            )
        await pipeline.send_and_wait(
            topics.AUDIO_UPLOAD,
            UploadFinished(
                job_id=job_id, chunk_count=pipeline.sequence, size=pipeline.sent, sha256=sha256
            ),
            f"{job_id}:finished",
        )
        grant = JobGrant.issue(self.tokens, job_id, row.owner)
        media = (await lease.row() or row).media_type or "application/octet-stream"
        body = accepted_body(grant, row.filename, media, pipeline.sent, sha256)
        result = body.model_dump_json()
        await lease.finish(State.COMPLETE, result)
        after = await lease.row()
        if after is None:
            raise job_deleted()
        log.info("resumable upload of %d bytes complete", pipeline.sent)
        return Appended(after, True, False, pipeline.sent, sha256, result)

    async def _fail(self, lease: Lease, code: ErrorCode, message: str) -> None:
        if await lease.finish(State.FAILED, None):
            await self._end_job(lease.job_id, code, message)

    async def _end_job(self, job_id: str, code: ErrorCode, message: str) -> None:
        """The upload will not complete: the uploader drops it, the job fails."""
        try:
            await self._status_on(
                topics.AUDIO_UPLOAD,
                UploadAborted(job_id=job_id, reason=code.value),
                f"{job_id}:aborted",
            )
            await self._status(
                JobStatusChanged.failed(job_id, code, message), f"{job_id}:status:failed"
            )
        except (SinkError, TimeoutError):
            # The uploader's stale-upload sweep is the safety net for the multipart upload.
            log.exception("could not publish the end of upload %s", job_id)

    async def _status(self, event: JobStatusChanged, ce_id: str) -> None:
        await self._status_on(topics.JOB_STATUS, event, ce_id)

    async def _status_on(
        self, topic: str, event: JobStatusChanged | UploadAborted, ce_id: str
    ) -> None:
        (ack,) = await self.sink.send(EventMessage(topic, event, ce_id))
        await asyncio.wait_for(ack, self.limits.ack_timeout_seconds)


# A take-over lets the append it ends store the bytes already on their way first: a
# client whose connection was cut had written them, and the edge's and the kernel's
# buffers (tens of MiB on loopback) still hold them. The append keeps reading while
# pieces come closer together than DRAIN_QUIET_SECONDS, for at most DRAIN_MOST_SECONDS
# (well inside UPLOAD_LOCK_WAIT_SECONDS), then lets go; a connection that went silent
# (half-open) is let go after one quiet gap.
DRAIN_QUIET_SECONDS = 0.25
DRAIN_MOST_SECONDS = 5.0


async def until_taken_over(
    body: AsyncIterator[bytes],
    stop: asyncio.Event,
    quiet: float = DRAIN_QUIET_SECONDS,
    most: float = DRAIN_MOST_SECONDS,
) -> AsyncIterator[bytes]:
    """``body``'s pieces; once ``stop`` is set, those that keep coming (see above), then
    :class:`TakenOver`."""
    loop = asyncio.get_running_loop()
    pieces = body.__aiter__()
    stopped = asyncio.ensure_future(stop.wait())
    deadline: float | None = None
    try:
        while deadline is None or loop.time() < deadline:
            piece = asyncio.ensure_future(pieces.__anext__())
            if deadline is None:
                await asyncio.wait((piece, stopped), return_when=asyncio.FIRST_COMPLETED)
                if stopped.done():
                    deadline = loop.time() + most
            if deadline is not None and not piece.done():
                await asyncio.wait((piece,), timeout=min(quiet, max(0.0, deadline - loop.time())))
            if not piece.done():
                piece.cancel()
                raise TakenOver()
            try:
                yield piece.result()
            except StopAsyncIteration:
                return
        raise TakenOver()
    finally:
        stopped.cancel()


def final_body(row: UploadRow) -> dict[str, object] | None:
    """The answer a completed upload gave, to replay it (the draft allows this)."""
    return json.loads(row.result) if row.result else None


async def expire_forever(resumable: Resumable, interval: float) -> None:
    """End uploads idle past their expiry (docs/architecture.md §12); any replica may run
    it, the conditional update lets exactly one end each upload."""
    while True:
        try:
            for row in await resumable.store.expired(datetime.now(UTC)):
                await resumable.expire(row)
        except Exception:
            log.exception("the expiry sweep failed; it runs again")
        await asyncio.sleep(interval)


async def prune_forever(
    store: UploadStore, interval: float, ended_seconds: float, tombstone_seconds: float
) -> None:
    """Erase the rows of uploads that ended (complete, cancelled, expired, failed) more
    than ``ended_seconds`` ago (0: never), and tombstones older than
    ``tombstone_seconds`` (docs/architecture.md §8). Any replica may run it: each batch
    skips the rows another is erasing. No ``job.deleted`` is published: the row is the
    upload's state, not the job's, which lives on in the notifier until its retention."""
    while True:
        await asyncio.sleep(interval)
        try:
            ended, tombstones = await store.prune(ended_seconds, tombstone_seconds)
        except Exception:
            log.exception("the sweep of ended uploads failed; it runs again")
            continue
        if ended or tombstones:
            log.info("erased %d ended uploads and %d tombstones", ended, tombstones)
