"""What the notifier's rules need from the outside world, as small interfaces.

The rules (:mod:`notifier.projector`, :mod:`notifier.listener`, :mod:`notifier.streams`,
the routes) import only these; :mod:`notifier.adapters` implements them for PostgreSQL
and Kafka, and the unit tests have fakes of them (``tests/notifier_fakes.py``). An
outage leaves every method as :class:`servicekit.http.DependencyUnavailable` (a 503
over HTTP, an uncommitted batch in the consumer), so no asyncpg or aiokafka error
reaches the rules.
"""

from collections.abc import Callable
from typing import Protocol

from contracts import JobStatusChanged
from notifier.projection import Decision, JobSnapshot


class History(Protocol):
    """The read side of the projection: what a stream and a snapshot read."""

    async def current(self, job_id: str) -> JobSnapshot | None:
        """The job's current state (its latest applied event), None before any."""

    async def applied_after(self, job_id: str, event_id: int) -> list[JobSnapshot]:
        """The job's applied events after ``event_id``, oldest first."""


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


OnApplied = Callable[[str, int], None]
"""Called with ``(job_id, event_id)`` of each applied event, in commit order."""


class AppliedEvents(Protocol):
    """The live feed of committed applied events, from whichever replica wrote them."""

    async def listen(self, on_applied: OnApplied, on_listening: Callable[[], None]) -> None:
        """Connect, call ``on_listening`` once the feed is in place, then ``on_applied``
        for each event committed after that, until the connection is lost: then raise
        ``DependencyUnavailable``. Events committed while nobody listens are not sent."""


class DeadLetters(Protocol):
    """Where a message that cannot be processed goes instead of blocking its partition."""

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        """Park the message on ``<topic>.dlq`` with the reason."""
