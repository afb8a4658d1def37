"""What the bridge's rules need from the outside world, as small interfaces.

The rules (:mod:`~analyzer_bridge.decisions`, :mod:`~analyzer_bridge.requesting`,
:mod:`~analyzer_bridge.finishing`, :mod:`~analyzer_bridge.deadlines`) import only these;
:mod:`analyzer_bridge.adapters` implements them for PostgreSQL, Kafka, S3 and the
analysis server, and the unit tests have fakes of them
(``tests/analyzer_bridge_fakes.py``). An adapter raises only the exceptions named
here, so no asyncpg, aiokafka, botocore or httpx error reaches the rules.
"""

from dataclasses import dataclass
from typing import Protocol

from analyzer_bridge.analysis import Analysis, Outcome
from contracts import (
    AnalysisCompleted,
    AnalysisFailed,
    AnalysisRequest,
    AudioStored,
    JobStatusChanged,
)
from servicekit.http import DependencyUnavailable

__all__ = [
    "AnalysisServer",
    "AnalysisStore",
    "DependencyUnavailable",
    "EventPublisher",
    "PresignError",
    "Presigner",
    "PublishError",
    "ServerAnswer",
    "ServerUnreachable",
]


class AnalysisStore(Protocol):
    """The analyses' rows. Every state change is conditional, so racing replicas,
    webhooks and the sweeper agree on one winner. An outage of the database raises
    :class:`DependencyUnavailable` (servicekit's, shared by every service: a 503 over
    HTTP, an uncommitted message in a Kafka handler)."""

    async def ping(self) -> bool:
        """Whether the database answers."""

    async def insert_pending(
        self,
        event: AudioStored,
        deadline_seconds: float,
        *,
        owner: str | None = None,
        lease_seconds: float = 0.0,
    ) -> Analysis | None:
        """Record the job as ``pending``: the new row, or None when it was already
        recorded, or was deleted (it has a tombstone). With ``owner``, the row is leased
        to it for its first request attempt (counted), as :meth:`take_attempt` would."""

    async def get(self, job_id: str) -> Analysis | None: ...

    async def take_attempt(self, job_id: str, owner: str, lease_seconds: float) -> Analysis | None:
        """Lease a pending job for one request attempt (counting it); None when it is
        not pending, past its deadline, or leased by another owner."""

    async def extend_lease(self, job_id: str, owner: str, lease_seconds: float) -> None: ...

    async def release_leases(self, owner: str) -> None:
        """Give up ``owner``'s pending jobs, so another process resumes them at once."""

    async def mark_requested(self, job_id: str, progress: int) -> int | None:
        """``pending`` → ``requested``, raising the progress to at least ``progress``;
        the progress before, or None when the job was not pending."""

    async def raise_progress(self, job_id: str, progress: int) -> bool:
        """True when the job is open and ``progress`` is higher than before."""

    async def claim_final(
        self, job_id: str, outcome: Outcome, webhook_id: str | None = None
    ) -> Analysis | None:
        """Make an open job final; None when it is unknown or already final."""

    async def mark_published(self, job_id: str) -> None:
        """The final events of the job are out."""

    async def expired(self, limit: int = 100) -> list[str]:
        """Open jobs past their deadline."""

    async def unpublished(self, older_than_seconds: float, limit: int = 100) -> list[Analysis]:
        """Final rows whose events have not been marked published for that long."""

    async def orphaned_pending(self, limit: int = 100) -> list[str]:
        """Pending jobs nobody holds a lease on: new, or left by a stopped replica."""

    async def erase(self, job_id: str) -> None:
        """The job was deleted: its row goes, a tombstone (the id and when) stays, so that
        nothing records it again; erasing again changes nothing."""

    async def deleted(self, job_id: str) -> bool:
        """Whether the job has a tombstone."""

    async def prune(self, finished_seconds: float, tombstone_seconds: float) -> tuple[int, int]:
        """Erase analyses final and published longer ago than ``finished_seconds`` (0:
        none) and tombstones older than ``tombstone_seconds``; how many of each. Safe on
        several replicas at once."""


class PublishError(Exception):
    """Kafka did not acknowledge an event (down, timed out, refused)."""


class EventPublisher(Protocol):
    """Where the bridge's events go; each call returns once Kafka acknowledged it, or
    raises :class:`PublishError`. ``ce_id`` is the event's idempotency key."""

    async def result(self, event: AnalysisCompleted | AnalysisFailed, ce_id: str) -> None:
        """``analysis.result``: the analysis server's final answer."""

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        """``job.status``."""

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        """Park a message that cannot be processed on ``<topic>.dlq`` with the reason."""


@dataclass(frozen=True)
class ServerAnswer:
    """The analysis server's HTTP answer to a request."""

    status: int
    retry_after: str | None = None
    message: str = ""


class ServerUnreachable(Exception):
    """No HTTP answer: connection refused or reset, or a timeout."""


class AnalysisServer(Protocol):
    async def analyze(self, request: AnalysisRequest) -> ServerAnswer:
        """``POST /analyze`` (docs/architecture.md §7); :class:`ServerUnreachable`
        when there is no answer."""


class PresignError(Exception):
    """No presigned URL could be made (e.g. no credentials)."""


class Presigner(Protocol):
    async def presign_get(self, bucket: str, key: str) -> str:
        """A short-lived GET URL of the object, as the analysis server reaches S3."""
