"""The analysis of one request, in the background: download, decode, webhooks.

Each accepted request becomes an asyncio task (kept in a set, so it is not garbage
collected while it runs); a semaphore bounds how many analyse at once. Blocking work
(spool file writes, decoding, feature computation) runs in threads.

Two clocks bound a run (docs/architecture.md §7). The request's ``deadline`` is when
the caller gives up: the job has failed with ``analysis_timeout`` by then, so the run
stops there, waiting for a slot, pausing, downloading, decoding or sending, frees its
slot and sends nothing more. The server's own ``max_analysis_seconds`` from acceptance
bounds every run, with a deadline or without: it ends the analysis with a ``failed``
webhook (``analysis_failed``), which is then delivered within the deadline.
"""

import asyncio
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from contracts import (
    AnalysisRequest,
    AnalysisWebhook,
    AudioFeatures,
    ErrorCode,
    JobError,
    WebhookStatus,
)
from reference_analyzer.decode import AudioDecoder
from reference_analyzer.download import Downloader
from reference_analyzer.errors import AnalysisError
from reference_analyzer.jobs import JobRecord, JobRegistry
from reference_analyzer.logs import JobLogger, url_host
from reference_analyzer.modes import Behaviour
from reference_analyzer.threads import in_thread
from reference_analyzer.webhooks import JobWebhooks, WebhookSender

STARTED = 0
DOWNLOADED = 20
DECODED = 95
_DECODE_STEPS = 8
_MAX_SLICE_FRAMES = 1 << 20  # bounds how long a cancelled run waits for its thread
_REPORT_EVERY = 10  # progress points between two decode progress webhooks


class Analyzer:
    def __init__(
        self,
        *,
        downloader: Downloader,
        sender: WebhookSender,
        registry: JobRegistry,
        max_concurrent: int,
        block_frames: int = 65536,
        temp_dir: Path | None = None,
        max_duration_seconds: float | None = None,
        max_analysis_seconds: float | None = None,
        progress_interval_seconds: float = 0.0,
    ) -> None:
        self._downloader = downloader
        self._sender = sender
        self._registry = registry
        self._slots = asyncio.Semaphore(max_concurrent)
        self._block_frames = block_frames
        self._temp_dir = temp_dir
        self._max_duration = max_duration_seconds
        self._max_analysis = max_analysis_seconds
        self._progress_interval = progress_interval_seconds
        self._tasks: set[asyncio.Task[AnalysisWebhook | None]] = set()

    @property
    def pending(self) -> int:
        """Runs accepted and not yet finished (running or waiting for a slot)."""
        return len(self._tasks)

    def submit(self, request: AnalysisRequest, behaviour: Behaviour, record: JobRecord) -> None:
        self._registry.run_started(record)
        loop = asyncio.get_running_loop()
        limit = None if self._max_analysis is None else loop.time() + self._max_analysis
        run = self._run(request, behaviour, record, limit)
        task = asyncio.create_task(run, name=request.job_id)
        self._tasks.add(task)
        # A callback, not a `finally`: a task cancelled before its first step never runs.
        task.add_done_callback(lambda done: self._finished(done, record))

    def _finished(self, task: asyncio.Task[AnalysisWebhook | None], record: JobRecord) -> None:
        self._tasks.discard(task)
        final = None if task.cancelled() else task.result()
        self._registry.run_finished(record, final)

    async def aclose(self) -> None:
        """Cancel the runs still going and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(
        self,
        request: AnalysisRequest,
        behaviour: Behaviour,
        record: JobRecord,
        limit: float | None,
    ) -> AnalysisWebhook | None:
        """One analysis run; returns its final message (sent or, if silent, not), or
        None when it was stopped at the request's deadline."""
        log = JobLogger(request.job_id)
        webhooks = JobWebhooks(
            self._sender, request, behaviour, record, log, interval=self._progress_interval
        )
        final: AnalysisWebhook | None = None
        deadline = asyncio.timeout_at(_loop_time(request.deadline))
        try:
            async with deadline:
                final = await self._within_limit(request, behaviour, webhooks, log, limit)
                await webhooks.finish(final)
        except asyncio.CancelledError:
            log.info("analysis cancelled")
            await webhooks.cancel()
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                # The caller has failed the job already; a result now would only be
                # refused (docs/architecture.md §5.5).
                log.warning("the request's deadline has passed: analysis stopped, nothing sent")
                await webhooks.cancel()
                self._registry.run_stopped(record)
                return None
            log.exception("sending the result crashed")
        return final

    async def _within_limit(
        self,
        request: AnalysisRequest,
        behaviour: Behaviour,
        webhooks: JobWebhooks,
        log: JobLogger,
        limit: float | None,
    ) -> AnalysisWebhook:
        """The analysis in a slot, ended by this server's own time limit."""
        bound = asyncio.timeout_at(limit)
        try:
            async with bound, self._slots:
                try:
                    return await self._analyse(request, behaviour, webhooks, log)
                except Exception:
                    # A bug must still end the job, not leave the caller to its deadline.
                    log.exception("analysis crashed")
                    return _failed(request, ErrorCode.ANALYSIS_FAILED, "internal error")
        except TimeoutError:
            if not bound.expired():
                raise
            log.warning("analysis stopped at this server's limit of %gs", self._max_analysis)
            message = f"the analysis took longer than this server's {self._max_analysis:g} s"
            return _failed(request, ErrorCode.ANALYSIS_FAILED, message)

    async def _analyse(
        self,
        request: AnalysisRequest,
        behaviour: Behaviour,
        webhooks: JobWebhooks,
        log: JobLogger,
    ) -> AnalysisWebhook:
        log.info(
            "analysing %d bytes of %s from %s (mode %s)",
            request.size,
            request.content_type,
            url_host(request.audio_url),
            behaviour.mode.value,
        )
        await webhooks.progress(STARTED)
        if behaviour.delay_seconds:
            log.info("pausing %.2fs before the analysis", behaviour.delay_seconds)
            await asyncio.sleep(behaviour.delay_seconds)
        try:
            spool = await in_thread(self._open_spool)
            try:
                await self._downloader.fetch(request, spool, log)
                await webhooks.progress(DOWNLOADED)
                features = await self._decode(Path(spool.name), webhooks)
            finally:
                await in_thread(spool.close)  # also deletes it
        except AnalysisError as exc:
            log.warning("analysis failed: %s: %s", exc.code.value, exc.message)
            return _failed(request, exc.code, exc.message)
        log.info(
            "analysed %.3fs of %s/%s audio",
            features.duration_seconds,
            features.format,
            features.subtype,
        )
        return AnalysisWebhook(
            job_id=request.job_id, status=WebhookStatus.COMPLETED, progress=100, result=features
        )

    def _open_spool(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(prefix="reference-analyzer-", dir=self._temp_dir)

    async def _decode(self, path: Path, webhooks: JobWebhooks) -> AudioFeatures:
        decoder = await in_thread(
            AudioDecoder,
            path,
            block_frames=self._block_frames,
            max_seconds=self._max_duration,
        )
        try:
            info = decoder.info
            accumulator = decoder.new_accumulator()
            step = min(
                max(self._block_frames, math.ceil(info.frames / _DECODE_STEPS)), _MAX_SLICE_FRAMES
            )
            reported = DOWNLOADED
            while await in_thread(decoder.decode_into, accumulator, step):
                if info.frames <= 0:
                    continue  # length unknown: no meaningful percentage
                share = min(accumulator.frames, info.frames) / info.frames
                value = DOWNLOADED + int((DECODED - DOWNLOADED) * share)
                if value - reported >= _REPORT_EVERY or value == DECODED:
                    reported = value
                    await webhooks.progress(value)
            return accumulator.result(format=info.format, subtype=info.subtype)
        finally:
            await in_thread(decoder.close)


def _failed(request: AnalysisRequest, code: ErrorCode, message: str) -> AnalysisWebhook:
    return AnalysisWebhook(
        job_id=request.job_id,
        status=WebhookStatus.FAILED,
        error=JobError(code=code.value, message=message),
    )


def _loop_time(deadline: datetime | None) -> float | None:
    """The event loop's time at the wall-clock ``deadline``."""
    if deadline is None:
        return None
    remaining = (deadline - datetime.now(UTC)).total_seconds()
    return asyncio.get_running_loop().time() + remaining
