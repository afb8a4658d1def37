"""Fakes of the notifier's ports (notifier.ports), for unit tests of its handler and
rules. They keep what they were given in plain dicts and lists to assert on."""

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from contracts import JobDeleted, JobStatusChanged
from notifier.fanout import Subscription
from notifier.ports import JobGone, JobRecord, OnApplied, OnDeleted, OwnedJob, Position
from notifier.projection import Decision, JobSnapshot, Outcome, decide
from servicekit.http import DependencyUnavailable
from servicekit.postgres import DEPENDENCY

_START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeStore:
    """The projection in memory, decided by the same rules as the real one; also
    :class:`notifier.ports.Lifecycle` (owners, tombstones, retention claims)."""

    def __init__(self) -> None:
        self.history: list[tuple[str, Decision, str | None]] = []
        self.jobs: dict[str, JobSnapshot] = {}
        self.owners: dict[str, str] = {}
        self.created: dict[str, datetime] = {}
        self.tombstones: set[str] = set()
        self.claimed: set[str] = set()
        self.expired: set[str] = set()
        """Jobs a test says are past retention (the fake keeps no clock)."""
        self.erased: list[list[str]] = []
        self._clock = itertools.count()
        self.down = False
        """While set, every call is an outage."""

    def _check(self) -> None:
        if self.down:
            raise DependencyUnavailable(DEPENDENCY, 1, "the fake is down")

    async def record_batch(
        self,
        events: list[tuple[str, JobStatusChanged]],
        traceparents: list[str | None] | None = None,
    ) -> list[Decision]:
        self._check()
        seen = {ce_id for ce_id, _, _ in self.history}
        decisions = []
        for (ce_id, event), traceparent in zip(
            events, traceparents or [None] * len(events), strict=True
        ):
            current = self.jobs.get(event.job_id)
            event_id = (current.event_id if current else 0) + 1
            decision = decide(
                current,
                event,
                event_id=event_id,
                duplicate=ce_id in seen,
                deleted=event.job_id in self.tombstones,
            )
            decisions.append(decision)
            if not decision.outcome.writes:
                continue
            seen.add(ce_id)
            self.history.append((ce_id, decision, traceparent))
            if decision.outcome is Outcome.APPLIED:
                self.jobs[event.job_id] = decision.snapshot
                self.created.setdefault(event.job_id, _START + timedelta(seconds=next(self._clock)))
            if event.owner:
                self.owners.setdefault(event.job_id, event.owner)
        return decisions

    def applied(self, job_id: str) -> list[JobSnapshot]:
        return [
            d.snapshot
            for _, d, _ in self.history
            if d.outcome is Outcome.APPLIED and d.snapshot.job_id == job_id
        ]

    async def current(self, job_id: str) -> JobSnapshot | None:
        self._check()
        if job_id in self.tombstones:
            raise JobGone()
        return self.jobs.get(job_id)

    async def applied_after(self, job_id: str, event_id: int) -> list[JobSnapshot]:
        self._check()
        after = [s for s in self.applied(job_id) if s.event_id > event_id]
        if not after and job_id in self.tombstones:
            raise JobGone()
        return after

    async def applied_events(self, keys: list[tuple[str, int]]) -> list[JobSnapshot]:
        self._check()
        wanted = set(keys)
        applied = [d.snapshot for _, d, _ in self.history if d.outcome is Outcome.APPLIED]
        found = [s for s in applied if (s.job_id, s.event_id) in wanted]
        return sorted(found, key=lambda s: (s.job_id, s.event_id))

    async def ping(self) -> bool:
        return not self.down

    # notifier.ports.Lifecycle
    async def find(self, job_id: str) -> JobRecord | None:
        self._check()
        if job_id in self.tombstones:
            return JobRecord(deleted=True)
        if job_id in self.jobs:
            return JobRecord(deleted=False, owner=self.owners.get(job_id))
        return None

    async def erase(self, job_ids: list[str]) -> None:
        self._check()
        self.erased.append(list(job_ids))
        for job_id in job_ids:
            self.history = [h for h in self.history if h[1].snapshot.job_id != job_id]
            for kept in (self.jobs, self.owners, self.created):
                kept.pop(job_id, None)
            self.tombstones.add(job_id)

    async def owned_by(self, owner: str, before: Position | None, limit: int) -> list[OwnedJob]:
        self._check()
        jobs = sorted(
            (
                OwnedJob(self.jobs[job_id], self.created[job_id])
                for job_id, whose in self.owners.items()
                if whose == owner and job_id in self.jobs
            ),
            key=lambda job: job.position,
            reverse=True,
        )
        return [job for job in jobs if before is None or job.position < before][:limit]

    async def claim_expired(
        self, older_than_seconds: float, claim_seconds: float, limit: int
    ) -> list[str]:
        self._check()
        claimed = sorted(
            job_id
            for job_id in self.expired - self.claimed
            if job_id in self.jobs and self.jobs[job_id].is_final
        )[:limit]
        self.claimed.update(claimed)
        return claimed

    async def prune_tombstones(self, older_than_seconds: float) -> int:
        self._check()
        return 0


class FakeFeed:
    """A live feed a test drives: :meth:`notify` delivers, :meth:`lose` drops the
    connection (the listener then reconnects); ``sessions`` counts the connections."""

    def __init__(self) -> None:
        self.sessions = 0
        self._on_applied: OnApplied | None = None
        self._on_deleted: OnDeleted | None = None
        self._lost = asyncio.Event()

    async def listen(
        self, on_applied: OnApplied, on_listening: Callable[[], None], on_deleted: OnDeleted
    ) -> None:
        self.sessions += 1
        self._lost = asyncio.Event()
        self._on_applied, self._on_deleted = on_applied, on_deleted
        on_listening()
        await self._lost.wait()
        self._on_applied = self._on_deleted = None
        raise DependencyUnavailable(DEPENDENCY, 1, "the fake feed was dropped")

    def deleted(self, job_id: str) -> bool:
        """Deliver the erasure of ``job_id``, if anyone listens; whether it was."""
        if self._on_deleted is None:
            return False
        self._on_deleted(job_id)
        return True

    def notify(self, job_id: str, event_id: int, carried: JobSnapshot | None = None) -> bool:
        """Deliver, if anyone listens; whether it was delivered. ``carried``: the event,
        as a notification that carries it (else the listener reads it)."""
        if self._on_applied is None:
            return False
        self._on_applied(job_id, event_id, carried)
        return True

    def lose(self) -> None:
        self._lost.set()


class FakeDeletions:
    """``job.deleted`` as a list; ``down`` makes publishing an outage."""

    def __init__(self) -> None:
        self.published: list[JobDeleted] = []
        self.down = False

    async def publish(self, event: JobDeleted) -> None:
        if self.down:
            raise DependencyUnavailable("kafka", 5, "the fake is down")
        self.published.append(event)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.dead: list[tuple[str, str]] = []

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        self.dead.append((topic, reason))


class Waiting(Subscription):
    """A subscription read by waiting for it, as these tests read one."""

    __slots__ = ("_waiter",)

    def __init__(self, job_id: str, size: int = 64) -> None:
        super().__init__(job_id, size)
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, wait_seconds: float) -> JobSnapshot | None:
        """The next live event, or None after ``wait_seconds`` or a wake-up (then the
        reader looks at ``lagged`` and ``closed``)."""
        if not self.pending() and not self.lagged and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, wait_seconds)
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        return self.take()
