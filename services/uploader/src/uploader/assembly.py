"""Reassemble each job's chunks into one S3 object, verified before it is completed.

One :class:`Assembler` per process. Per open job it holds the part being filled and at
most one part being uploaded in the background, so the parts of concurrent jobs go to
S3 in parallel while memory stays at about two parts per job. On ``UploadFinished`` it
checks the chunk count, size and sha256 against the gateway's before completing the
multipart upload (docs/architecture.md §5.4).

The multipart upload is begun with the first full part. A file that ends before one
(the common short recording) is stored with one PutObject once it is verified: one S3
request instead of create, upload part, complete and the metadata copy.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
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
from servicekit.logs import job_id_var
from servicekit.metrics import OBJECTS_STORED, S3_PARTS
from uploader.ports import Checkpoint, CheckpointStore, EventPublisher, ObjectStore, StorageError

log = logging.getLogger(__name__)


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
    positions: deque[tuple[int, int]] = field(default_factory=deque)
    """(byte end, Kafka offset) of the chunks whose bytes are not yet in a saved part."""
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
    ) -> None:
        self._checkpoints = checkpoints
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

    async def kept_uploads(self) -> set[str]:
        """Upload ids no sweep may abort: open here, or checkpointed for a resume."""
        kept = self.owned_uploads()
        if self._checkpoints is not None:
            kept |= await self._checkpoints.upload_ids()
        return kept

    def holds(self) -> dict[str, int | None]:
        """For checkpointed resumable jobs: the Kafka offset replay must start from to
        rebuild the job from its checkpoint (None: nothing unsaved). Other open jobs
        hold their ``started`` message (uploader.offsets)."""
        return {
            job_id: (job.positions[0][1] if job.positions else None)
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

    async def started(self, event: UploadStarted) -> bool:
        """Open the job; False when it was open already (a redelivered ``started``)."""
        if event.job_id in self.jobs:
            return False
        # Only a resumable upload can have a checkpoint: a one-shot upload never waits
        # for PostgreSQL, so an outage of the database cannot hold it up.
        if event.resumable and await self._resume(event.job_id):
            return True  # replayed from before its checkpoint: continue it
        key = self._prefix + event.job_id
        stored = await self._store.stored_sha256(key)
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
    ) -> None:
        job = self.jobs.get(job_id)
        if job is None and offset is not None:
            job = await self._resume(job_id)
        if job is None or job.already_stored or job.broken:
            return
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
            data = data[job.size - offset :]
            job.next_sequence = max(job.next_sequence, sequence + 1)
            if not data:
                return
            job.positions.append((job.size + len(data), position))
        elif sequence < job.next_sequence:
            return  # a redelivered chunk
        elif sequence > job.next_sequence:
            job.broken = f"chunk {job.next_sequence} is missing (got {sequence})"
            return
        else:
            job.next_sequence += 1
        job.size += len(data)
        for part in job.buffer.add(data):
            await self._settle(job)
            job.sha256.update(part)
            job.uploading = asyncio.create_task(
                self._put_part(job, part, job.sha256.state(), job.next_sequence)
            )
            await self._report_progress(job)

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
            if job.already_stored == event.sha256:
                await self._announce(job, event)
            self.jobs.pop(event.job_id)
            return
        problem = job.broken or _mismatch(job, event)
        if not problem:
            await self._settle(job)
        if problem:
            await self._fail(job, ErrorCode.CHECKSUM_MISMATCH, problem)
            return
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
        job.buffer.clear()
        OBJECTS_STORED.inc()
        await self._announce(job, event)
        self.jobs.pop(event.job_id)
        await self._forget(job)
        log.info("stored %d bytes at s3://%s/%s", event.size, self._bucket, job.key)

    async def aborted(self, event: UploadAborted) -> None:
        job = self.jobs.pop(event.job_id, None) or await self._resume_quietly(event.job_id)
        self.jobs.pop(event.job_id, None)
        if job:
            await _cancel(job)
            await self._forget(job)
        if job and job.upload_id:
            await self._store.abort(job.key, job.upload_id)
            log.info("upload aborted by the gateway: %s", event.reason)
        if job and job.progress:
            # Its progress was shown: end it explicitly rather than leave it `uploading`.
            await self._events.status(
                JobStatusChanged.failed(event.job_id, ErrorCode.UPLOAD_ABORTED, event.reason),
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

    async def fail_storage(self, job_id: str, exc: StorageError) -> None:
        job = self.jobs.get(job_id)
        if job:
            log.error("storage failed: %r", exc)
            await self._fail(job, ErrorCode.STORAGE_FAILED, "the audio could not be stored")

    async def drop(self, job_ids: list[str]) -> None:
        """Forget jobs whose partition went to another consumer; it redoes them."""
        for job_id in job_ids:
            job = self.jobs.pop(job_id, None)
            if job:
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
        if job.by_offset and digest is not None and self._checkpoints is not None:
            await self._checkpoints.save(
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
            job.checkpointed = True
            while job.positions and job.positions[0][0] <= job.parted:
                job.positions.popleft()

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
        await self._events.stored(
            AudioStored(
                job_id=event.job_id,
                bucket=self._bucket,
                key=job.key,
                size=event.size,
                sha256=event.sha256,
                content_type=job.started.content_type,
                filename=job.started.filename,
            )
        )
        await self._events.status(
            JobStatusChanged(
                job_id=event.job_id,
                status=JobStatus.UPLOADED,
                progress=stage_progress(JobStatus.UPLOADED),
                detail="audio stored",
            ),
            f"{event.job_id}:status:uploaded",
        )

    async def _fail(self, job: OpenJob, code: ErrorCode, message: str) -> None:
        self.jobs.pop(job.started.job_id, None)
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
