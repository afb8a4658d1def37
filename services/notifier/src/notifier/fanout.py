"""In-process fan-out of applied job events to the live SSE streams of this process.

Queues are bounded: a stream that falls behind is marked ``lagged`` instead of growing
without limit, and catches up from the PostgreSQL history, which has every event. The
same flag serves when live delivery itself may have missed events (the LISTEN connection
dropped, see :mod:`notifier.listener`): :meth:`FanOut.resync_all`.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from notifier.projection import JobSnapshot

if TYPE_CHECKING:
    from notifier.streams import Start


class Subscription:
    """The live events of one stream: a bounded buffer and at most one waiting reader.

    Lighter than an ``asyncio.Queue`` read through ``asyncio.wait_for``, which keeps an
    extra task per idle stream; with 10,000 open streams that matters. Slotted, and
    its wait has no timer of its own: one :class:`_Clock` per interval wakes every
    idle reader whose wait is over (issue 14).
    """

    __slots__ = ("_clocks", "_events", "_waiter", "begin", "closed", "job_id", "lagged", "size")

    def __init__(self, job_id: str, size: int, clocks: "_Clocks | None" = None) -> None:
        self.job_id = job_id
        self.size = size
        # A plain list: an empty deque costs 760 bytes per stream, and a stream
        # rarely holds more than an event or two.
        self._events: list[JobSnapshot] = []
        self._waiter: asyncio.Future[None] | None = None
        self._clocks = clocks if clocks is not None else _Clocks()
        self.lagged = False
        """Set when live events may be missing; the reader must re-read the history."""
        self.closed = False
        """Set when the process shuts down; the reader ends its stream."""
        self.begin: Start | None = None
        """Where the stream starts, from the subscription until its body begins."""

    def offer(self, snapshot: JobSnapshot) -> None:
        if len(self._events) >= self.size:
            self.lagged = True
        else:
            self._events.append(snapshot)
        self._wake()

    def resync(self) -> None:
        self.lagged = True
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def pending(self) -> int:
        return len(self._events)

    def drain(self) -> None:
        """Forget what is buffered (the history has it) and clear ``lagged``."""
        self.lagged = False
        self._events.clear()

    async def next(self, wait_seconds: float) -> JobSnapshot | None:
        """The next live event, or None after about ``wait_seconds`` (at most a quarter
        more, the shared clock's tick) or a wake-up (then the reader looks at
        ``lagged`` and ``closed``)."""
        if not self._events and not self.lagged and not self.closed:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            clock = self._clocks.of(wait_seconds)
            clock.add(self)
            try:
                await waiter
            finally:
                self._waiter = None
                clock.discard(self)
        return self._events.pop(0) if self._events else None


class _Clock:
    """One timer for every reader waiting ``interval``: each tick (a quarter of the
    interval) wakes the readers whose wait is over. An idle stream thus costs a dict
    entry instead of a timer handle and a timeout context of its own, and 10,000 idle
    streams one timer callback instead of 10,000 (issue 14)."""

    __slots__ = ("_due", "_handle", "_loop", "interval")

    def __init__(self, interval: float, loop: asyncio.AbstractEventLoop) -> None:
        self.interval = interval
        self._loop = loop
        self._due: dict[Subscription, float] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, subscription: Subscription) -> None:
        self._due[subscription] = self._loop.time() + self.interval
        if self._handle is None:
            self._handle = self._loop.call_later(self.interval / 4, self._tick)

    def discard(self, subscription: Subscription) -> None:
        self._due.pop(subscription, None)

    def _tick(self) -> None:
        now = self._loop.time()
        over = [s for s, due in self._due.items() if due <= now]
        for subscription in over:
            del self._due[subscription]
            subscription._wake()
        self._handle = self._loop.call_later(self.interval / 4, self._tick) if self._due else None


class _Clocks:
    """The clocks of one fan-out, by interval, on the running loop."""

    __slots__ = ("_clocks",)

    def __init__(self) -> None:
        self._clocks: dict[float, _Clock] = {}

    def of(self, interval: float) -> _Clock:
        loop = asyncio.get_running_loop()
        clock = self._clocks.get(interval)
        if clock is None or clock._loop is not loop:  # a new loop (tests run several)
            clock = self._clocks[interval] = _Clock(interval, loop)
        return clock


class FanOut:
    """job id → the live subscriptions to it in this process."""

    def __init__(self, queue_size: int = 64) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}
        self._clocks = _Clocks()
        self.closed = False

    def join(self, job_id: str) -> Subscription:
        """Start receiving ``job_id``'s events; :meth:`leave` when done."""
        subscription = Subscription(job_id, self.queue_size, self._clocks)
        if self.closed:
            subscription.close()
        self._subscribers.setdefault(job_id, set()).add(subscription)
        return subscription

    def leave(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``; a second call does nothing."""
        subscribers = self._subscribers.get(subscription.job_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.job_id]

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        subscription = self.join(job_id)
        try:
            yield subscription
        finally:
            self.leave(subscription)

    def publish(self, snapshot: JobSnapshot) -> int:
        """Offer ``snapshot`` to every subscriber of its job; how many there were."""
        subscribers = self._subscribers.get(snapshot.job_id, ())
        for subscription in subscribers:
            subscription.offer(snapshot)
        return len(subscribers)

    def has_subscribers(self, job_id: str) -> bool:
        return job_id in self._subscribers

    def resync(self, job_id: str) -> None:
        """Make the streams of ``job_id`` re-read the history (live events may be lost)."""
        for subscription in self._subscribers.get(job_id, ()):
            subscription.resync()

    def resync_all(self) -> None:
        for job_id in list(self._subscribers):
            self.resync(job_id)

    def close_all(self) -> None:
        """End every stream, and any opened later: the process is shutting down."""
        self.closed = True
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.close()

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
