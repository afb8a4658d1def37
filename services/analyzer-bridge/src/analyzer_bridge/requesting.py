"""Asking the analysis server to analyse a job's audio, with retries
(docs/architecture.md §5.5, §7).

Connection errors, timeouts, 5xx, 408 and 429 are retried with exponential backoff and
full jitter, never sooner than the server's ``Retry-After``, until the retry budget or
the job's deadline runs out. Any other 4xx fails the job with ``analysis_rejected``.
Requests run as background tasks so that a slow server never blocks a partition; the
``pending`` row is what survives a crash, and a lease on it keeps replicas from
requesting the same job twice.
"""

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlencode

from analyzer_bridge.analysis import Analysis, Outcome
from analyzer_bridge.capability import WEBHOOK_PATH, Capabilities
from analyzer_bridge.finishing import ANALYZING_START, Finisher
from analyzer_bridge.jobtasks import JobTasks
from analyzer_bridge.ports import (
    AnalysisServer,
    AnalysisStore,
    DependencyUnavailable,
    Presigner,
    ServerAnswer,
    ServerUnreachable,
)
from contracts import AnalysisRequest, ErrorCode
from servicekit.logs import job_id_var
from servicekit.metrics import ANALYSIS_REQUESTS, ANALYSIS_RETRIES
from servicekit.retry import backoff_delay, parse_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Accepted:
    pass


@dataclass(frozen=True)
class Retry:
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Rejected:
    message: str


def is_retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def classify(answer: ServerAnswer, now: datetime) -> Accepted | Retry | Rejected:
    """What an answer of the analysis server means for the request."""
    if 200 <= answer.status < 300:
        return Accepted()
    if is_retryable(answer.status):
        reason = f"HTTP {answer.status}: {answer.message}".strip(": ")
        return Retry(reason, parse_retry_after(answer.retry_after, now))
    return Rejected(f"HTTP {answer.status}: {answer.message or 'rejected'}")


class Requester:
    def __init__(
        self,
        *,
        store: AnalysisStore,
        server: AnalysisServer,
        presigner: Presigner,
        capabilities: Capabilities,
        finisher: Finisher,
        public_base_url: str,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        lease_seconds: float,
        metadata: dict[str, str] | None = None,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._server = server
        self._presigner = presigner
        self._capabilities = capabilities
        self._finisher = finisher
        self._public_base_url = public_base_url.rstrip("/")
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._lease_seconds = lease_seconds
        self._metadata = dict(metadata or {})
        self._jitter = jitter
        self._sleep = sleep
        self._owner = uuid.uuid4().hex
        self._tasks = JobTasks("analysis-request")

    def webhook_url(self, job_id: str) -> str:
        query = urlencode({"job_id": job_id, "token": self._capabilities.issue(job_id)})
        return f"{self._public_base_url}{WEBHOOK_PATH}?{query}"

    def metadata_for(self, filename: str) -> dict[str, str]:
        """The configured metadata, plus the upload's file name when it has one."""
        return {**self._metadata, "filename": filename} if filename else dict(self._metadata)

    @property
    def owner(self) -> str:
        """Whose leases this process's attempts hold."""
        return self._owner

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds

    def submit(self, job_id: str, leased: Analysis | None = None) -> None:
        """Request the analysis in the background, unless already under way here;
        ``leased``: the row as recorded with its first attempt's lease (:attr:`owner`)."""
        self._tasks.start(job_id, lambda: self._run(job_id, leased))

    async def abandon(self, job_id: str) -> None:
        """The job was deleted: cancel its request if it is under way here."""
        await self._tasks.cancel(job_id)

    async def join(self) -> None:
        """Wait until the requests under way here have ended (their tasks are done)."""
        await self._tasks.join()

    async def stop(self) -> None:
        """Cancel the requests under way; their rows stay pending for the next start."""
        await self._tasks.cancel_all()
        await self._store.release_leases(self._owner)

    async def _run(self, job_id: str, leased: Analysis | None) -> None:
        job_id_var.set(job_id)
        try:
            await self.request(job_id, leased)
        except asyncio.CancelledError:
            raise
        except DependencyUnavailable as exc:
            # The row stays pending; the sweeper resumes it once the database is back.
            log.warning("requesting the analysis failed: %s", exc, extra={"job_id": job_id})
        except Exception:
            # The row stays pending; the sweeper resumes it once the lease runs out.
            log.exception("requesting the analysis failed", extra={"job_id": job_id})

    async def _until_recorded(self, write: Callable[[], Awaitable[T]]) -> T:
        """``write``, retried through a database outage. Once the analysis server has
        accepted, giving up would leave the row pending and, when its lease ran out,
        request the analysis a second time (docs/architecture.md §5.3). Another replica could still
        take it over if the outage outlasts the lease."""
        delay = self._base_delay
        while True:
            try:
                return await write()
            except DependencyUnavailable as exc:
                log.warning("recording the request failed (%s); again in %.2fs", exc, delay)
                await self._sleep(delay)
                delay = min(self._max_delay, delay * 2)

    async def request(self, job_id: str, leased: Analysis | None = None) -> None:
        """Attempt until the server accepts or rejects, the budget is spent, or the job
        is no longer ours to request (not pending, leased elsewhere, past deadline). The
        first attempt is ``leased``'s when given: its lease and count were taken as the
        job was recorded, so it costs no statement of its own."""
        while True:
            row = leased
            if row is None:
                row = await self._store.take_attempt(job_id, self._owner, self._lease_seconds)
            leased = None
            if row is None:
                return
            request = AnalysisRequest(
                job_id=job_id,
                audio_url=await self._presigner.presign_get(row.bucket, row.key),
                content_type=row.content_type,
                size=row.size,
                sha256=row.sha256,
                webhook_url=self.webhook_url(job_id),
                metadata=self.metadata_for(row.filename),
                # When the sweeper fails the job: the server need not work past it.
                deadline=row.deadline,
            )
            try:
                verdict = classify(await self._server.analyze(request), datetime.now(UTC))
            except ServerUnreachable as exc:
                verdict = Retry(str(exc))
            ANALYSIS_REQUESTS.labels(type(verdict).__name__.lower()).inc()
            if isinstance(verdict, Accepted):
                before = await self._until_recorded(
                    lambda: self._store.mark_requested(job_id, ANALYZING_START)
                )
                log.info("analysis server accepted the job", extra={"job_id": job_id})
                if before is not None and before < ANALYZING_START:
                    await self._finisher.requested(job_id)
                return
            if isinstance(verdict, Rejected):
                log.warning("analysis server rejected the job: %s", verdict.message)
                await self._finisher.finish(
                    job_id, Outcome.failed(ErrorCode.ANALYSIS_REJECTED, verdict.message)
                )
                return
            if row.attempts >= self._max_attempts:
                message = f"analysis server unavailable after {row.attempts} attempts: "
                await self._finisher.finish(
                    job_id, Outcome.failed(ErrorCode.ANALYSIS_FAILED, message + verdict.reason)
                )
                return
            delay = backoff_delay(
                row.attempts, self._base_delay, self._max_delay, verdict.retry_after, self._jitter
            )
            remaining = (row.deadline - datetime.now(UTC)).total_seconds()
            if delay >= remaining:
                log.warning("no time left to retry before the deadline: %s", verdict.reason)
                return  # the deadline sweeper fails the job with analysis_timeout
            log.info("retrying in %.2fs: %s", delay, verdict.reason)
            ANALYSIS_RETRIES.inc()
            await self._store.extend_lease(job_id, self._owner, delay + self._lease_seconds)
            await self._sleep(delay)
