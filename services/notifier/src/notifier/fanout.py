"""In-process fan-out of applied job events to the live SSE streams of this process.

Queues are bounded: a stream that falls behind is marked ``lagged`` instead of growing
without limit, and catches up from the PostgreSQL history, which has every event. The
same flag serves when live delivery itself may have missed events (the LISTEN connection
dropped, see :mod:`notifier.listener`): :meth:`FanOut.resync_all`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from notifier.projection import JobSnapshot


class Subscription:
    """The live events of one stream: a bounded buffer, and :meth:`wake` when something
    arrives or changes. The stream itself (:class:`notifier.streams.Stream`) reacts in
    :meth:`wake`, synchronously: no task or future waits per stream (issue 14).

    Slotted, and the events in a plain list: an empty ``deque`` costs 760 bytes per
    stream, and a stream rarely holds more than an event or two.
    """

    __slots__ = ("_events", "closed", "job_id", "lagged", "size")

    def __init__(self, job_id: str, size: int) -> None:
        self.job_id = job_id
        self.size = size
        self._events: list[JobSnapshot] = []
        self.lagged = False
        """Set when live events may be missing; the reader must re-read the history."""
        self.closed = False
        """Set when the process shuts down or the job was deleted; the reader ends its
        stream."""

    def offer(self, snapshot: JobSnapshot) -> None:
        if len(self._events) >= self.size:
            self.lagged = True
        else:
            self._events.append(snapshot)
        self.wake()

    def resync(self) -> None:
        self.lagged = True
        self.wake()

    def close(self) -> None:
        """End the stream: the process shuts down, or its job was deleted (a
        reconnect then hears 410)."""
        self.closed = True
        self.wake()

    def wake(self) -> None:
        """An event arrived, or ``lagged`` or ``closed`` was set."""

    def pending(self) -> int:
        return len(self._events)

    def take(self) -> JobSnapshot | None:
        """The oldest buffered event, if any."""
        return self._events.pop(0) if self._events else None

    def drain(self) -> None:
        """Forget what is buffered (the history has it) and clear ``lagged``."""
        self.lagged = False
        self._events.clear()


S = TypeVar("S", bound=Subscription)


class FanOut:
    """job id → the live subscriptions to it in this process."""

    def __init__(self, queue_size: int = 64) -> None:
        self.queue_size = queue_size
        """The buffer size of each subscription (``Subscription.size``)."""
        self._subscribers: dict[str, set[Subscription]] = {}
        self.closed = False

    def join(self, subscription: S) -> S:
        """Deliver its job's events to ``subscription``; :meth:`leave` when done."""
        if self.closed:
            subscription.close()
        self._subscribers.setdefault(subscription.job_id, set()).add(subscription)
        return subscription

    def leave(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``; a second call does nothing."""
        subscribers = self._subscribers.get(subscription.job_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.job_id]

    @contextmanager
    def subscribe(self, subscription: S) -> Iterator[S]:
        self.join(subscription)
        try:
            yield subscription
        finally:
            self.leave(subscription)

    def publish(self, snapshot: JobSnapshot) -> int:
        """Offer ``snapshot`` to every subscriber of its job; how many there were."""
        # A copy: a stream that sends its final event leaves during the loop.
        subscribers = tuple(self._subscribers.get(snapshot.job_id, ()))
        for subscription in subscribers:
            subscription.offer(snapshot)
        return len(subscribers)

    def has_subscribers(self, job_id: str) -> bool:
        return job_id in self._subscribers

    def resync(self, job_id: str) -> None:
        """Make the streams of ``job_id`` re-read the history (live events may be lost)."""
        for subscription in tuple(self._subscribers.get(job_id, ())):
            subscription.resync()

    def resync_all(self) -> None:
        for job_id in list(self._subscribers):
            self.resync(job_id)

    def end(self, job_id: str) -> None:
        """End the streams of ``job_id``: it was deleted (docs/architecture.md §8)."""
        for subscription in tuple(self._subscribers.get(job_id, ())):
            subscription.close()

    def close_all(self) -> None:
        """End every stream, and any opened later: the process is shutting down."""
        self.closed = True
        for subscribers in list(self._subscribers.values()):
            for subscription in tuple(subscribers):
                subscription.close()

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
