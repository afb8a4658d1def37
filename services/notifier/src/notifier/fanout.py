"""In-process fan-out of applied job events to the live SSE streams of this process.

Queues are bounded: a stream that falls behind is marked ``lagged`` instead of growing
without limit, and catches up from the PostgreSQL history, which has every event.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from notifier.projection import JobSnapshot


class Subscription:
    def __init__(self, job_id: str, size: int) -> None:
        self.job_id = job_id
        self.queue: asyncio.Queue[JobSnapshot] = asyncio.Queue(maxsize=size)
        self.lagged = False
        """Set when an event could not be queued; the reader must re-read the history."""

    def offer(self, snapshot: JobSnapshot) -> None:
        try:
            self.queue.put_nowait(snapshot)
        except asyncio.QueueFull:
            self.lagged = True

    def drain(self) -> None:
        """Forget what is queued (the history has it) and clear ``lagged``."""
        self.lagged = False
        while not self.queue.empty():
            self.queue.get_nowait()

    async def next(self, wait_seconds: float) -> JobSnapshot | None:
        """The next live event, or None after ``wait_seconds``.

        ``lagged`` is only set while the queue is full, so a reader waiting on an
        empty queue never misses it: it checks ``lagged`` after each event.
        """
        try:
            return await asyncio.wait_for(self.queue.get(), wait_seconds)
        except TimeoutError:
            return None


class FanOut:
    """job id → the live subscriptions to it in this process."""

    def __init__(self, queue_size: int = 64) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        subscription = Subscription(job_id, self.queue_size)
        self._subscribers.setdefault(job_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[job_id]

    def publish(self, snapshot: JobSnapshot) -> int:
        """Offer ``snapshot`` to every subscriber of its job; how many there were."""
        subscribers = self._subscribers.get(snapshot.job_id, ())
        for subscription in subscribers:
            subscription.offer(snapshot)
        return len(subscribers)

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
