"""What the notifier's rules need from the outside world, as small interfaces.

The rules (:mod:`notifier.projector`, :mod:`notifier.listener`, :mod:`notifier.streams`,
the routes) import only these; :mod:`notifier.adapters` implements them for PostgreSQL
and Kafka, and the unit tests have fakes of them (``tests/notifier_fakes.py``). An
outage leaves every method as :class:`servicekit.http.DependencyUnavailable` (a 503
over HTTP, an uncommitted batch in the consumer), so no asyncpg or aiokafka error
reaches the rules; a deleted job's reads raise :class:`JobGone` (a 410).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts import JobDeleted, JobStatusChanged
from notifier.projection import Decision, JobSnapshot
from servicekit.http import ApiError


class JobGone(ApiError):
    """The job was deleted: only its tombstone is left (docs/architecture.md §8).
    Over HTTP a ``410 job_deleted``, on which ``EventSource`` stops for good."""

    def __init__(self) -> None:
        super().__init__(410, "job_deleted", "this job was deleted")


class History(Protocol):
    """The read side of the projection: what a stream and a snapshot read."""

    async def current(self, job_id: str) -> JobSnapshot | None:
        """The job's current state (its latest applied event), None before any;
        :class:`JobGone` once it was deleted."""

    async def applied_after(self, job_id: str, event_id: int) -> list[JobSnapshot]:
        """The job's applied events after ``event_id``, oldest first (none, or
        :class:`JobGone`, once it was deleted)."""


class JobStore(History, Protocol):
    """The projection: the append-only event history and each job's current state."""

    async def record_batch(
        self,
        events: list[tuple[str, JobStatusChanged]],
        traceparents: list[str | None] | None = None,
    ) -> list[Decision]:
        """Record events (by ``ce_id``) in order, durably, each decided by
        :func:`notifier.projection.decide`; an applied one is announced to every
        replica's :class:`AppliedEvents` once it is committed."""

    async def applied_events(self, keys: list[tuple[str, int]]) -> list[JobSnapshot]:
        """The applied events named by ``(job_id, event_id)``, each job's oldest first."""

    async def ping(self) -> bool:
        """Whether the store answers (readiness); False while it is not open."""


@dataclass(frozen=True)
class JobRecord:
    """What deciding a deletion needs of a job the projection has heard of."""

    deleted: bool
    """Only its tombstone is left."""
    owner: str | None = None
    """The JWT subject that owns it, when uploads are authenticated."""


Position = tuple[datetime, str]
"""Where a job stands in its owner's list, newest first: when it was created, its id."""


@dataclass(frozen=True)
class OwnedJob:
    snapshot: JobSnapshot
    created_at: datetime

    @property
    def position(self) -> Position:
        return (self.created_at, self.snapshot.job_id)


class Lifecycle(Protocol):
    """Deletion, owners and retention over the projection (docs/architecture.md §8)."""

    async def find(self, job_id: str) -> JobRecord | None:
        """The job as deleting it needs it; None when the projection never heard of it."""

    async def erase(self, job_ids: list[str]) -> None:
        """Remove the jobs' state and history, leave a tombstone of each (its id and
        when: no personal data), so that later events of them change nothing, and end
        their open streams on every replica (:class:`AppliedEvents`). Idempotent; a job
        never heard of gets its tombstone too (the deletion overtook its events)."""

    async def owned_by(self, owner: str, before: Position | None, limit: int) -> list[OwnedJob]:
        """At most ``limit`` of ``owner``'s jobs, newest first, those after ``before``."""

    async def claim_expired(
        self, older_than_seconds: float, claim_seconds: float, limit: int
    ) -> list[str]:
        """Up to ``limit`` finished jobs whose final event is older than
        ``older_than_seconds``, claimed for ``claim_seconds``: no other replica's sweep
        claims them again before that (and after it, only if they are still there)."""

    async def prune_tombstones(self, older_than_seconds: float) -> int:
        """Forget tombstones older than that; how many."""


class Database(JobStore, Lifecycle, Protocol):
    """The notifier's PostgreSQL: the projection and the jobs' lifecycle, in its schema."""


class Deletions(Protocol):
    """Where a deletion is announced: ``job.deleted``, which every service erases from."""

    async def publish(self, event: JobDeleted) -> None:
        """Publish ``event`` and return once the broker acknowledged it; if it does not
        in time, ``DependencyUnavailable`` (the event may still be delivered later:
        deleting twice is harmless)."""


OnApplied = Callable[[str, int, JobSnapshot | None], None]
"""Called with ``(job_id, event_id, snapshot)`` of each applied event, in commit order;
``snapshot`` is the event itself when the notification could carry it (most do), else
None and the listener reads it."""

OnDeleted = Callable[[str], None]
"""Called with the id of each job erased (:meth:`Lifecycle.erase`), in commit order."""


class AppliedEvents(Protocol):
    """The live feed of committed applied events and erased jobs, from whichever
    replica wrote them."""

    async def listen(
        self, on_applied: OnApplied, on_listening: Callable[[], None], on_deleted: OnDeleted
    ) -> None:
        """Connect, call ``on_listening`` once the feed is in place, then ``on_applied``
        for each event and ``on_deleted`` for each erased job committed after that, until
        the connection is lost: then raise ``DependencyUnavailable``. What is committed
        while nobody listens is not sent."""


class DeadLetters(Protocol):
    """Where a message that cannot be processed goes instead of blocking its partition."""

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        """Park the message on ``<topic>.dlq`` with the reason."""
