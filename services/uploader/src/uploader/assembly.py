"""Reassemble each job's chunks into one S3 object, verified before it is completed.

One :class:`Assembler` per process. Per open job it holds the part being filled and at
most one part being uploaded in the background, so the parts of concurrent jobs go to
S3 in parallel while memory stays at about two parts per job. On ``UploadFinished`` it
checks the chunk count, size and sha256 against the gateway's before completing the
multipart upload (docs/architecture.md §5.4).

The multipart upload is begun with the first full part. A file that ends before one
(the common short recording) is stored with one PutObject once it is verified: one S3
request instead of create, upload part, complete and the metadata copy.

What it holds is bounded by a budget (:class:`uploader.memory.MemoryBudget`), whatever
the number of open jobs (docs/architecture.md §5.2, §12). Each chunk's place is kept
(:class:`uploader.memory.Span`: its Kafka offset and its bytes of the job). When the
budget would be exceeded, the part being filled of the job that received a chunk least
recently is let go: that job keeps only the places of its unsent bytes, and when they
make a full part, or the upload finishes, they are read back from Kafka
(:class:`uploader.ports.ChunkSource`). Kafka still has them: the committed offset of
their partition is held at the job's first chunk not in a saved part (uploader.offsets).
A job streaming now is the last to be let go, so a fast upload is not slowed down
unless the budget allows nothing else.

A deleted job (``job.deleted``) stores nothing more (docs/architecture.md §8): its
tombstone is read when the job starts and again once its object is stored, and a
checkpoint is not saved for it. The erasure (:mod:`uploader.erasure`) records the
tombstone before it deletes the object, so whichever replica stores the object, either
it sees the tombstone and deletes the object itself, or it stored it before the
tombstone was there, and so before the erasure deletes it.
"""

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from contracts import (
    AudioStored,
    ErrorCode,
    JobStatus,
    JobStatusChanged,
    UploadAborted,
    UploadFinished,
    UploadStarted,
    progress_after,
    stage_progress,
)
from servicekit.blocks import Blocks
from servicekit.digest import Sha256
from servicekit.http import DependencyUnavailable
from servicekit.kafka import publish_together
from servicekit.logs import job_id_var
from servicekit.metrics import OBJECTS_STORED, S3_PARTS, UPLOADER_REREAD_BYTES
from uploader.memory import MemoryBudget, Span
from uploader.ports import (
    Checkpoint,
    CheckpointStore,
    ChunkSource,
    EventPublisher,
    JobErased,
    ObjectStore,
    StorageError,
    Tombstones,
)

log = logging.getLogger(__name__)

TOMBSTONE_RETRY_MOST_SECONDS = 5.0
"""While the database does not answer, a tombstone is asked again after at most this."""


@dataclass
class OpenJob:
    started: UploadStarted
    key: str
    upload_id: str | None
    buffer: Blocks[bytearray]
    """The bytes received since the last part was cut, cut into parts as they fill. Parts
    are bytearrays: botocore turns a ``bytes`` body into a BytesIO, which aiohttp copies
    whole (``getbuffer``) and then again piece by piece as it sends it; a bytearray goes
    to the socket as it is."""
    already_stored: str | None = None
    next_sequence: int = 0
    size: int = 0
    sha256: Sha256 = field(default_factory=Sha256)
    """Over the bytes handed to parts so far (the buffer is hashed when it is cut), so
    that its state at a part boundary can be checkpointed."""
    etags: list[str] = field(default_factory=list)
    uploading: "asyncio.Task[None] | None" = None
    progress: int = 0
    reported_at: float = 0.0
    broken: str | None = None
    by_offset: bool = False
    parted: int = 0
    """Bytes in parts uploaded to S3."""
    cut: int = 0
    """Bytes handed to parts (uploaded or on their way); ``buffer`` holds the rest."""
    spans: deque[Span] = field(default_factory=deque)
    """Where the bytes not yet in an uploaded part came from, in order."""
    partition: int = 0
    resident: bool = True
    """False once its part being filled was let go: ``buffer`` is empty, and the bytes
    from ``cut`` to ``size`` are read back from Kafka when they are needed."""
    checkpointed: bool = False


class Assembler:
    def __init__(
        self,
        store: ObjectStore,
        events: EventPublisher,
        bucket: str,
        key_prefix: str,
        part_bytes: int,
        progress_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        checkpoints: CheckpointStore | None = None,
        budget: int | None = None,
        chunks: ChunkSource | None = None,
        tombstones: Tombstones | None = None,
    ) -> None:
        """``budget``: the most bytes of unfinished parts held at once; parts are let go
        and read back from ``chunks`` to stay within it (both or neither). Without
        ``tombstones`` (unit tests) no job is ever deleted."""
        self._checkpoints = checkpoints
        self._tombstones = tombstones
        self._chunks = chunks
        self.memory = MemoryBudget(budget if chunks is not None else None)
        self._filling: OrderedDict[str, OpenJob] = OrderedDict()
        """Resident jobs holding bytes in ``buffer``, the one that got a chunk least
        recently first: the order in which they are let go."""
        self._store = store
        self._events = events
        self._bucket = bucket
        self._prefix = key_prefix
        self._part_bytes = part_bytes
        self._progress_interval = progress_interval
        self._clock = clock
        self.jobs: dict[str, OpenJob] = {}

    def owned_uploads(self) -> set[str]:
        return {job.upload_id for job in self.jobs.values() if job.upload_id}

    async def checkpointed_uploads(self) -> dict[str, str]:
        """The multipart uploads of checkpointed (resumable) jobs: upload id → job id."""
        return await self._checkpoints.uploads() if self._checkpoints is not None else {}

    def holds(self) -> dict[str, int | None]:
        """For checkpointed resumable jobs: the Kafka offset replay must start from to
        rebuild the job from its checkpoint (None: nothing unsaved). Other open jobs
        hold their ``started`` message (uploader.offsets)."""
        return {
            job_id: (job.spans[0].offset if job.spans else None)
            for job_id, job in self.jobs.items()
            if job.checkpointed
        }

    async def _resume(self, job_id: str) -> OpenJob | None:
        """Rebuild a resumable job from its checkpoint, after a restart or rebalance."""
        if self._checkpoints is None:
            return None
        saved = await self._checkpoints.load(job_id)
        if saved is None:
            return None
        job = OpenJob(
            saved.started,
            saved.key,
            saved.upload_id,
            Blocks(self._part_bytes, bytearray),
            next_sequence=saved.next_sequence,
            size=saved.size,
            sha256=Sha256.restore(saved.digest),
            etags=list(saved.etags),
            reported_at=self._clock(),
            by_offset=True,
            parted=saved.size,
            cut=saved.size,
            checkpointed=True,
        )
        self.jobs[job_id] = job
        log.info("resumed upload from its checkpoint at %d bytes", saved.size)
        return job

    async def _resume_quietly(self, job_id: str) -> OpenJob | None:
        """:meth:`_resume` for a marker of a job not open here, which is mostly one
        finished before (a redelivery): without the database it is taken as that."""
        try:
            return await self._resume(job_id)
        except StorageError as exc:
            log.warning("no checkpoint could be read for %s (%s)", job_id, exc)
            return None

    async def started(self, event: UploadStarted, *, stored_before: bool = True) -> bool:
        """Open the job; False when it was open already (a redelivered ``started``) or
        was deleted. ``stored_before``: whether an earlier owner of the partition may
        have stored it already (a replay), so S3 is asked; not for a record appended
        after the partition was assigned here (uploader.offsets)."""
        if event.job_id in self.jobs:
            return False
        if await self._deleted(event.job_id):
            log.info("upload of a deleted job; skipping it")
            return False
        # Only a resumable upload can have a checkpoint.
        if event.resumable and await self._resume(event.job_id):
            return True  # replayed from before its checkpoint: continue it
        key = self._prefix + event.job_id
        stored = await self._store.stored_sha256(key) if stored_before else None
        self.jobs[event.job_id] = OpenJob(
            event,
            key,
            None,
            Blocks(self._part_bytes, bytearray),
            already_stored=stored,
            reported_at=self._clock(),
        )
        log.info("receiving upload" if not stored else "upload already stored; skipping it")
        return True

    async def chunk(
        self,
        job_id: str,
        sequence: int,
        data: bytes,
        offset: int | None = None,
        position: int = 0,
        partition: int = 0,
    ) -> None:
        """Chunk ``sequence`` of a job (at byte ``offset`` of a resumable upload), the
        record at Kafka ``position`` of ``partition``."""
        job = self.jobs.get(job_id)
        if job is None and offset is not None:
            job = await self._resume(job_id)
        if job is None or job.already_stored or job.broken:
            return
        origin, value = job.size, data
        if offset is not None:
            # A resumable upload's chunk is placed by its byte offset: a resumed append
            # repeats what an interrupted one sent but never had recorded, so the bytes
            # already held are skipped (docs/architecture.md §12). A chunk beyond them
            # belongs to an append whose bytes were never acknowledged to the client;
            # they come again. Size and sha256 are still verified at the end.
            job.by_offset = True
            if offset > job.size:
                log.info("chunk at %d skipped: %d bytes held", offset, job.size)
                return
            origin = offset
            data = data[job.size - offset :]
            job.next_sequence = max(job.next_sequence, sequence + 1)
            if not data:
                return
        elif sequence < job.next_sequence:
            return  # a redelivered chunk
        elif sequence > job.next_sequence:
            job.broken = f"chunk {job.next_sequence} is missing (got {sequence})"
            return
        else:
            job.next_sequence += 1
        span = Span(job.size, job.size + len(data), position, origin)
        job.spans.append(span)
        job.partition = partition
        job.size += len(data)
        if job.resident:
            if job_id in self._filling:
                self._filling.move_to_end(job_id)
            await self._make_room(len(data), job)
            self.memory.take(len(data))
            self._filling[job_id] = job
            # A chunk (at most MAX_MESSAGE_BYTES) is smaller than a part: at most one.
            for part in job.buffer.add(data):
                await self._send(job, part)
            return
        # Let go before: its part is read back from Kafka once it is full; the bytes of
        # this chunk still in hand are not read again.
        while job.size - job.cut >= self._part_bytes:
            part = await self._read_back(job, job.cut + self._part_bytes, (span, value))
            await self._send(job, part)
        self._refill(job, span, value)

    async def _send(self, job: OpenJob, part: bytearray) -> None:
        """Upload ``part`` (the job's bytes from ``cut``, counted in the budget until it
        is uploaded) in the background, once the part before it is in: at most one part
        per job is on its way."""
        try:
            await self._settle(job)
        except BaseException:
            self.memory.give(len(part))
            raise
        job.sha256.update(part)
        job.cut += len(part)
        if not job.buffer:
            self._filling.pop(job.started.job_id, None)
        job.uploading = asyncio.create_task(
            self._upload(job, part, job.sha256.state(), job.next_sequence)
        )
        await self._report_progress(job)

    async def _upload(self, job: OpenJob, part: bytearray, digest: bytes, sequence: int) -> None:
        try:
            await self._put_part(job, part, digest, sequence)
        finally:
            self.memory.give(len(part))

    async def _make_room(self, size: int, keep: OpenJob) -> None:
        """Let go of other jobs' parts being filled (least recently active first), then
        wait for parts on their way to S3, until ``size`` more bytes fit the budget.
        ``keep`` is the job that needs them: the budget allows its own two parts
        (settings), so what it holds alone never passes the budget."""
        while self.memory.exceeded_by(size):
            victim = next((j for j in self._filling.values() if j is not keep), None)
            if victim is not None:
                self._let_go(victim)
                continue
            sending = [
                j.uploading
                for j in self.jobs.values()
                if j is not keep and j.uploading is not None and not j.uploading.done()
            ]
            if not sending:
                return
            # Their S3 errors stay in their tasks, for their own jobs to meet.
            await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)

    def _let_go(self, job: OpenJob) -> None:
        """Drop the job's part being filled; it is read back from Kafka when needed."""
        self._filling.pop(job.started.job_id, None)
        self.memory.give(len(job.buffer))
        job.buffer.clear()
        job.resident = False
        self.memory.evicted()
        log.info(
            "let go of %d bytes of job %s (memory budget); read back from Kafka when needed",
            job.size - job.cut,
            job.started.job_id,
        )

    async def _read_back(
        self, job: OpenJob, end: int, in_hand: tuple[Span, bytes] | None = None
    ) -> bytearray:
        """The job's bytes from ``cut`` to ``end``, read back from Kafka (those of the
        chunk ``in_hand``, its span and record value, from that value), counted in the
        budget."""
        assert self._chunks is not None, "only a job that was let go is read back"
        start = job.cut
        await self._make_room(end - start, job)
        self.memory.take(end - start)
        try:
            spans = [s for s in job.spans if s.end > start and s.first < end]
            current = in_hand[0] if in_hand else None
            wanted = [s.offset for s in spans if s is not current]
            part = bytearray()
            reading = self._chunks.read(job.started.job_id, job.partition, wanted)
            async with contextlib.aclosing(reading) as values:
                for span in spans:
                    if in_hand is not None and span is current:
                        value = in_hand[1]
                    else:
                        value = await anext(values, b"")
                        UPLOADER_REREAD_BYTES.inc(len(value))
                    low, high = max(span.first, start), min(span.end, end)
                    part += memoryview(value)[low - span.origin : high - span.origin]
            if len(part) != end - start:
                raise StorageError(f"read back {len(part)} bytes of {end - start} from Kafka")
        except BaseException:
            self.memory.give(end - start)
            raise
        return part

    def _refill(self, job: OpenJob, span: Span, value: bytes) -> None:
        """A job let go holds memory again once its unsent bytes are all in the chunk
        in hand (``value``, a part was just read back) and they fit the budget as they
        are."""
        rest = job.size - job.cut
        if rest > span.end - span.first or self.memory.exceeded_by(rest):
            return
        job.resident = True
        if rest:
            self.memory.take(rest)
            job.buffer.add(memoryview(value)[len(value) - rest :])
            self._filling[job.started.job_id] = job

    async def _report_progress(self, job: OpenJob) -> None:
        """``uploading`` with the share of the expected size received, at most once per
        interval and only when it grew. Only uploads that take longer than the interval
        report before they finish: a short one that is refused leaves no status at all."""
        now = self._clock()
        if not job.started.size_hint or now - job.reported_at < self._progress_interval:
            return
        fraction = min(job.size / job.started.size_hint, 0.99)
        progress = progress_after(job.progress, stage_progress(JobStatus.UPLOADING, fraction))
        if progress == job.progress:
            return
        job.progress, job.reported_at = progress, now
        await self._events.status(
            JobStatusChanged(
                job_id=job.started.job_id,
                status=JobStatus.UPLOADING,
                progress=progress,
                detail="receiving and storing the audio",
            ),
            f"{job.started.job_id}:status:uploading:{progress}",
        )

    async def finished(self, event: UploadFinished) -> None:
        job = self.jobs.get(event.job_id) or await self._resume_quietly(event.job_id)
        if job is None:
            return  # finished before and forgotten, or never started here
        if job.already_stored:
            self._discard(job)
            if job.already_stored == event.sha256 and not await self._stored_but_deleted(job):
                await self._announce(job, event)
            return
        if not job.resident and not job.broken:
            await self._restore(job)
        problem = job.broken or _mismatch(job, event)
        if not problem:
            await self._settle(job)
        if problem:
            await self._fail(job, ErrorCode.CHECKSUM_MISMATCH, problem)
            return
        if self._clock() - job.reported_at >= self._progress_interval:
            # Progress is by time, not by step (docs/architecture.md §3): an upload that
            # has been quiet for an interval says that its audio is being stored; one
            # that arrived within it goes straight to `uploaded`, an event fewer.
            await self._events.status(
                JobStatusChanged(
                    job_id=event.job_id,
                    status=JobStatus.UPLOADING,
                    progress=progress_after(
                        job.progress,
                        stage_progress(
                            JobStatus.UPLOADING, len(job.etags) * self._part_bytes / job.size
                        ),
                    ),
                    detail="storing the audio",
                ),
                f"{event.job_id}:status:uploading",
            )
        metadata = {"sha256": event.sha256, "size": str(event.size), "job-id": event.job_id}
        rest = job.buffer.rest()
        if job.upload_id is None:
            # No part was cut: the whole file is ``rest``, verified above, so it is
            # written once and visible only complete, with its metadata.
            await self._store.put(job.key, rest, metadata, job.started.content_type)
        else:
            if rest:
                job.sha256.update(rest)
                await self._put_part(job, rest)
            await self._store.complete(
                job.key, job.upload_id, job.etags, metadata, job.started.content_type
            )
        self._discard(job)
        if await self._stored_but_deleted(job):
            await self._forget(job)
            return
        OBJECTS_STORED.inc()
        await self._announce(job, event)
        await self._forget(job)
        log.info("stored %d bytes at s3://%s/%s", event.size, self._bucket, job.key)

    async def aborted(self, event: UploadAborted) -> None:
        job = self.jobs.get(event.job_id) or await self._resume_quietly(event.job_id)
        if job:
            self._discard(job)
            await _cancel(job)
            await self._forget(job)
        if job and job.upload_id:
            await self._store.abort(job.key, job.upload_id)
            log.info("upload aborted by the gateway: %s", event.reason)
        if job and job.progress:
            # Its progress was shown: end it explicitly rather than leave it `uploading`,
            # with the gateway's reason when it is a code (`upload_timeout`, ...).
            code = ErrorCode(event.reason) if event.reason in _CODES else ErrorCode.UPLOAD_ABORTED
            await self._events.status(
                JobStatusChanged.failed(event.job_id, code, event.reason),
                f"{event.job_id}:status:failed",
            )
        if job is None:
            await self._revoke_stored(event)

    async def _revoke_stored(self, event: UploadAborted) -> None:
        """An abort behind a finished marker that is already stored. The gateway sends an
        abort only for an upload it did not answer 202 (docs/architecture.md §5): here the
        broker took the finished marker but died before acknowledging it, and delivered it
        after its restart, ahead of the abort. The client was told to retry, so the object
        is nobody's: it goes. No status is published here: ``uploaded`` and
        ``audio.stored`` are out already, so the bridge owns the job's end, and the
        analysis of the removed object fails and ends it; a ``failed`` from here as
        well could race the bridge's final status (one final status per job, §3)."""
        key = self._prefix + event.job_id
        if await self._store.stored_sha256(key) is None:
            return
        await self._store.delete(key)
        log.warning("removed the object of an upload the gateway aborted: %s", event.reason)

    async def _deleted(self, job_id: str) -> bool:
        """Whether the job has a tombstone; asked again while the database is down (the
        message is not committed meanwhile, as for any outage: docs/architecture.md §2)."""
        if self._tombstones is None:
            return False
        delay = 0.2
        while True:
            try:
                return await self._tombstones.deleted(job_id)
            except DependencyUnavailable as exc:
                log.warning("tombstones not read (%s); again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(TOMBSTONE_RETRY_MOST_SECONDS, delay * 2)

    async def _stored_but_deleted(self, job: OpenJob) -> bool:
        """After the object is stored: if the job was deleted meanwhile, delete it (the
        erasure may have run before it existed) and announce nothing."""
        if not await self._deleted(job.started.job_id):
            return False
        try:
            await self._store.delete(job.key)
        except StorageError:
            log.exception("the object of a deleted job is left for the audio retention sweep")
        else:
            log.info("the job was deleted while it was stored; its object is deleted again")
        return True

    async def erase(self, job_id: str) -> OpenJob | None:
        """Drop what this process holds of a deleted job, its part on the way to S3
        included; the job (for its multipart upload), if it was open here."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        self._discard(job)
        await _cancel(job)
        log.info("dropped the open upload of a deleted job", extra={"job_id": job_id})
        return job

    async def erased_meanwhile(self, job_id: str) -> None:
        """A checkpoint was refused (:class:`JobErased`): the job was deleted while it
        was open here. Drop it and abort its multipart upload, which may have begun after
        the erasure aborted those it found."""
        job = await self.erase(job_id)
        if job is not None and job.upload_id:
            try:
                await self._store.abort(job.key, job.upload_id)
            except StorageError:
                log.warning("the multipart upload of a deleted job is left to the stale sweep")

    async def fail_storage(self, job_id: str, exc: Exception) -> None:
        """The job, if open here, fails with ``storage_failed``: its storing met an error
        that waiting does not mend (a :class:`StorageError`, or a bug)."""
        job = self.jobs.get(job_id)
        if job:
            log.error("storage failed: %r", exc)
            await self._fail(job, ErrorCode.STORAGE_FAILED, "the audio could not be stored")

    async def drop(self, job_ids: list[str]) -> None:
        """Forget jobs whose partition went to another consumer; it redoes them."""
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job:
                self._discard(job)
                await _cancel(job)
            # A checkpointed upload is the next owner's to continue.
            if job and job.upload_id and not job.checkpointed:
                try:
                    await self._store.abort(job.key, job.upload_id)
                except StorageError:
                    log.warning("could not abort the upload of revoked job %s", job_id)

    async def _put_part(
        self, job: OpenJob, data: bytes | bytearray, digest: bytes | None = None, sequence: int = 0
    ) -> None:
        # Parts are numbered in order: at most one is in flight per job, so the first
        # begins the multipart upload alone.
        if job.upload_id is None:
            job.upload_id = await self._store.start(job.key, job.started.content_type)
        etag = await self._store.put_part(job.key, job.upload_id, len(job.etags) + 1, data)
        job.etags.append(etag)
        job.parted += len(data)
        S3_PARTS.inc()
        if not (job.by_offset and self._checkpoints is not None):
            _saved(job)
        elif digest is not None:
            saved = await self._checkpoints.save(
                Checkpoint(
                    job.started,
                    job.key,
                    job.upload_id,
                    list(job.etags),
                    job.parted,
                    digest,
                    sequence,
                )
            )
            if not saved:
                raise JobErased(job.started.job_id)
            job.checkpointed = True
            _saved(job)

    def _discard(self, job: OpenJob) -> None:
        """Close the job here: what it held is no longer counted."""
        self.jobs.pop(job.started.job_id, None)
        self._filling.pop(job.started.job_id, None)
        self.memory.give(len(job.buffer))
        job.buffer.clear()

    async def _restore(self, job: OpenJob) -> None:
        """A job that was let go gets its unsent bytes back (less than a part)."""
        rest = await self._read_back(job, job.size)
        job.resident = True
        if rest:
            job.buffer.add(rest)
            self._filling[job.started.job_id] = job

    async def _forget(self, job: OpenJob) -> None:
        if job.by_offset and self._checkpoints is not None:
            try:
                await self._checkpoints.delete(job.started.job_id)
            except StorageError:
                log.warning("could not delete the checkpoint of a closed job")

    async def _settle(self, job: OpenJob) -> None:
        """Wait for the part in flight; its S3 error, if any, is raised here."""
        if job.uploading is not None:
            task, job.uploading = job.uploading, None
            await task

    async def _announce(self, job: OpenJob, event: UploadFinished) -> None:
        job_id_var.set(event.job_id)
        stored = AudioStored(
            job_id=event.job_id,
            bucket=self._bucket,
            key=job.key,
            size=event.size,
            sha256=event.sha256,
            content_type=job.started.content_type,
            filename=job.started.filename,
        )
        uploaded = JobStatusChanged(
            job_id=event.job_id,
            status=JobStatus.UPLOADED,
            progress=stage_progress(JobStatus.UPLOADED),
            detail="audio stored",
            # The owner again: `accepted` is not waited for, and may be lost.
            owner=job.started.owner,
        )
        # Two topics, no order between them to keep: sent together, they travel in one
        # produce request; the handler returns (and commits) only once both are written.
        await publish_together(
            self._events.stored(stored),
            self._events.status(uploaded, f"{event.job_id}:status:uploaded"),
        )

    async def _fail(self, job: OpenJob, code: ErrorCode, message: str) -> None:
        self._discard(job)
        await _cancel(job)
        await self._forget(job)
        if job.upload_id:
            try:
                await self._store.abort(job.key, job.upload_id)
            except StorageError:
                log.warning("could not abort the multipart upload of a failed job")
        log.error("upload failed: %s: %s", code.value, message)
        await self._events.status(
            JobStatusChanged.failed(job.started.job_id, code, message),
            f"{job.started.job_id}:status:failed",
        )


_CODES = frozenset(code.value for code in ErrorCode)


def _saved(job: OpenJob) -> None:
    """Forget where the bytes now in an uploaded part came from."""
    while job.spans and job.spans[0].end <= job.parted:
        job.spans.popleft()


async def _cancel(job: OpenJob) -> None:
    if job.uploading is not None:
        job.uploading.cancel()
        with contextlib.suppress(asyncio.CancelledError, StorageError):
            await job.uploading
        job.uploading = None


def _mismatch(job: OpenJob, event: UploadFinished) -> str | None:
    if not job.by_offset and job.next_sequence != event.chunk_count:
        return f"received {job.next_sequence} chunks, the gateway sent {event.chunk_count}"
    if job.size != event.size:
        return f"received {job.size} bytes, the gateway sent {event.size}"
    whole = Sha256.restore(job.sha256.state())
    whole.update(job.buffer.rest())
    if whole.hexdigest() != event.sha256:
        return "the sha256 of the received bytes differs from the gateway's"
    return None
