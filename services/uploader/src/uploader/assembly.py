"""Reassemble each job's chunks into one S3 object, verified before it is completed.

One :class:`Assembler` per process. Per open job it holds the part being filled and at
most one part being uploaded in the background, so the parts of concurrent jobs go to
S3 in parallel while memory stays at about two parts per job. On ``UploadFinished`` it
checks the chunk count, size and sha256 against the gateway's before completing the
multipart upload (docs/architecture.md §5.4).
"""

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from contracts import (
    AudioStored,
    ErrorCode,
    JobError,
    JobStatus,
    JobStatusChanged,
    UploadAborted,
    UploadFinished,
    UploadStarted,
    stage_progress,
)
from servicekit.logs import job_id_var
from servicekit.metrics import OBJECTS_STORED, S3_PARTS
from uploader.ports import EventPublisher, ObjectStore, StorageError

log = logging.getLogger(__name__)


@dataclass
class OpenJob:
    started: UploadStarted
    key: str
    upload_id: str | None
    already_stored: str | None = None
    next_sequence: int = 0
    size: int = 0
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    buffer: bytearray = field(default_factory=bytearray)
    etags: list[str] = field(default_factory=list)
    uploading: "asyncio.Task[None] | None" = None
    progress: int = 0
    reported_at: float = 0.0
    broken: str | None = None
    by_offset: bool = False


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
    ) -> None:
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

    async def started(self, event: UploadStarted) -> bool:
        """Open the job; False when it was open already (a redelivered ``started``)."""
        if event.job_id in self.jobs:
            return False
        key = self._prefix + event.job_id
        stored = await self._store.stored_sha256(key)
        upload_id = None if stored else await self._store.start(key, event.content_type)
        self.jobs[event.job_id] = OpenJob(
            event, key, upload_id, already_stored=stored, reported_at=self._clock()
        )
        log.info("receiving upload" if not stored else "upload already stored; skipping it")
        return True

    async def chunk(
        self, job_id: str, sequence: int, data: bytes, offset: int | None = None
    ) -> None:
        job = self.jobs.get(job_id)
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
        elif sequence < job.next_sequence:
            return  # a redelivered chunk
        elif sequence > job.next_sequence:
            job.broken = f"chunk {job.next_sequence} is missing (got {sequence})"
            return
        else:
            job.next_sequence += 1
        job.size += len(data)
        job.sha256.update(data)
        job.buffer += data
        if len(job.buffer) >= self._part_bytes:
            await self._settle(job)
            part = bytes(job.buffer[: self._part_bytes])
            del job.buffer[: self._part_bytes]
            job.uploading = asyncio.create_task(self._put_part(job, part))
            await self._report_progress(job)

    async def _report_progress(self, job: OpenJob) -> None:
        """``uploading`` with the share of the expected size received, at most once per
        interval and only when it grew. Only uploads that take longer than the interval
        report before they finish: a short one that is refused leaves no status at all."""
        now = self._clock()
        if not job.started.size_hint or now - job.reported_at < self._progress_interval:
            return
        fraction = min(job.size / job.started.size_hint, 0.99)
        progress = stage_progress(JobStatus.UPLOADING, fraction)
        if progress <= job.progress:
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
        job = self.jobs.get(event.job_id)
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
                progress=max(
                    job.progress,
                    stage_progress(
                        JobStatus.UPLOADING, len(job.etags) * self._part_bytes / job.size
                    ),
                ),
                detail="storing the audio",
            ),
            f"{event.job_id}:status:uploading",
        )
        if job.buffer or not job.etags:
            await self._put_part(job, bytes(job.buffer))
            job.buffer.clear()
        assert job.upload_id is not None
        await self._store.complete(
            job.key,
            job.upload_id,
            job.etags,
            {"sha256": event.sha256, "size": str(event.size), "job-id": event.job_id},
            job.started.content_type,
        )
        OBJECTS_STORED.inc()
        await self._announce(job, event)
        self.jobs.pop(event.job_id)
        log.info("stored %d bytes at s3://%s/%s", event.size, self._bucket, job.key)

    async def aborted(self, event: UploadAborted) -> None:
        job = self.jobs.pop(event.job_id, None)
        if job:
            await _cancel(job)
        if job and job.upload_id:
            await self._store.abort(job.key, job.upload_id)
            log.info("upload aborted by the gateway: %s", event.reason)
        if job and job.progress:
            # Its progress was shown: end it explicitly rather than leave it `uploading`.
            await self._events.status(
                JobStatusChanged(
                    job_id=event.job_id,
                    status=JobStatus.FAILED,
                    progress=stage_progress(JobStatus.FAILED),
                    error=JobError(code=ErrorCode.UPLOAD_ABORTED.value, message=event.reason),
                ),
                f"{event.job_id}:status:failed",
            )

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
            if job and job.upload_id:
                try:
                    await self._store.abort(job.key, job.upload_id)
                except StorageError:
                    log.warning("could not abort the upload of revoked job %s", job_id)

    async def _put_part(self, job: OpenJob, data: bytes) -> None:
        # Parts are numbered in order: at most one is in flight per job.
        assert job.upload_id is not None
        etag = await self._store.put_part(job.key, job.upload_id, len(job.etags) + 1, data)
        job.etags.append(etag)
        S3_PARTS.inc()

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
        if job.upload_id:
            try:
                await self._store.abort(job.key, job.upload_id)
            except StorageError:
                log.warning("could not abort the multipart upload of a failed job")
        log.error("upload failed: %s: %s", code.value, message)
        await self._events.status(
            JobStatusChanged(
                job_id=job.started.job_id,
                status=JobStatus.FAILED,
                progress=stage_progress(JobStatus.FAILED),
                error=JobError(code=code.value, message=message),
            ),
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
    if job.sha256.hexdigest() != event.sha256:
        return "the sha256 of the received bytes differs from the gateway's"
    return None
