"""The progress stream of one job: history first, then live events, until final.

Ordering guarantee (docs/architecture.md §9): the live subscription is opened *before* the history
is read, and every event carries its per-job id, so an event that lands between the
two reads is sent exactly once (live copies with an id already sent are dropped).

Where the stream starts (:func:`start`) is read before the response begins, so that a
database outage is a 503 JSON answer, not a 200 whose body breaks off (issue 11). Once
streaming, a stream that must read the history while the database is down ends
cleanly and its client reconnects with Last-Event-ID; one that needs nothing from it
carries on (heartbeats) and catches up when the LISTEN connection is back.

A stream lives at most ``SSE_MAX_STREAM_SECONDS`` (issue 19): then it ends cleanly
after an event, its client reconnects with Last-Event-ID and resumes exactly, and its
slots (:mod:`notifier.slots`) go to whoever asks next.
"""

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap

from notifier import sse
from notifier.fanout import FanOut, Subscription
from notifier.ports import History, JobGone
from notifier.projection import JobSnapshot
from notifier.settings import Settings
from notifier.slots import ClientStreams, StreamSlots
from servicekit.detached import chunk
from servicekit.http import DependencyUnavailable

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)


def _delivered(snapshot: JobSnapshot) -> None:
    """A span in the event's trace for its delivery to this stream: the last step of a
    job's path (issue 7)."""
    if snapshot.traceparent:
        context = get_global_textmap().extract({"traceparent": snapshot.traceparent})
        _TRACER.start_span(
            "sse deliver", context=context, attributes={"audiopipe.job_id": snapshot.job_id}
        ).end()


@dataclass(frozen=True)
class Start:
    """Where a stream begins: the events to send first, and the id already seen."""

    current: JobSnapshot | None
    pending: list[JobSnapshot]
    last: int

    @property
    def seen_final(self) -> bool:
        """The client already has the final event: nothing is left to send (204)."""
        current = self.current
        return current is not None and current.is_final and self.last >= current.event_id


async def start(store: History, job_id: str, after: int | None) -> Start:
    """The current state, or the applied events after ``after`` (a Last-Event-ID);
    ``JobGone`` (410) for a deleted job.

    An id beyond the job's latest names no event of this job (a stale or foreign id):
    the stream starts over from the current state instead of waiting for an id that
    may never come (issue 11)."""
    current = await store.current(job_id)
    if current is None:
        return Start(None, [], 0)
    if after is None or after > current.event_id:
        return Start(current, [current], 0)
    return Start(current, await store.applied_after(job_id, after), after)


class Body(Protocol):
    """Where a stream writes: ``servicekit.detached.DetachedResponse`` (a fake in tests)."""

    @property
    def paused(self) -> bool:
        """The client reads slower than the stream writes."""

    def write(self, framed: bytes) -> None: ...

    def end(self, framed: bytes = b"") -> None: ...


class Shared(Protocol):
    """What every stream of a process shares (the routes' ``notifier.deps.Services``
    has it): the fan-out it joins, the slots it holds, the history it reads, the clock
    that keeps it alive and ends it, and the settings."""

    @property
    def settings(self) -> Settings: ...
    @property
    def fanout(self) -> FanOut: ...
    @property
    def slots(self) -> StreamSlots: ...
    @property
    def history(self) -> History: ...
    @property
    def heartbeats(self) -> "Heartbeats": ...


class Stream(Subscription):
    """One open SSE stream: its live subscription, and the response it writes to.

    Served by the HTTP protocol itself once the route's checks passed
    (``servicekit.detached``): nothing waits per stream, no task, no future, no timer.
    The fan-out's :meth:`wake` writes what arrived at once, to the stream's connection,
    as the event's shared pre-framed bytes (:func:`framed`); the process's
    one heartbeat clock (:class:`Heartbeats`) writes the keep-alives of idle streams; a
    task exists only while a stream re-reads the history.

    The order: what :func:`start` or a re-read of the history returned, then: ended by
    the drain or the job's deletion (``closed``),
    else re-read the history when live events may be missing (``lagged``), else the
    next live event (one already sent by id is dropped), else a heartbeat after
    ``SSE_HEARTBEAT_SECONDS`` of silence; the final event ends the stream. A slow
    reader (the transport's buffer over its high-water mark) is written nothing more
    until it catches up: live events wait in the bounded buffer, beyond which the
    stream is ``lagged`` and re-reads the history then, so memory stays bounded.

    Past its lifetime (``_ends``, from the clock: :meth:`Heartbeats.ends`) the stream
    ends at its next heartbeat, or once it has written what arrived: at an event
    boundary, so that its client resumes exactly by Last-Event-ID.

    It holds its slots (:meth:`admit`) until it ends, and releases them once, however
    it ends: ``_client`` is set exactly while it holds them.
    """

    __slots__ = (
        "_client",
        "_ends",
        "_reading",
        "_replay",
        "_response",
        "_services",
        "begin",
        "last",
    )

    def __init__(self, job_id: str, services: Shared) -> None:
        super().__init__(job_id, services.fanout.queue_size)
        self._services = services
        self._response: Body | None = None
        self._reading: asyncio.Task[None] | None = None
        self._replay: list[JobSnapshot] | None = None
        """Events read from the history and not written yet, the next one last."""
        self._client: ClientStreams | None = None
        """Its address's count, while it holds its slots."""
        self._ends = 0.0
        """The loop time past which it ends (set as its body begins)."""
        self.begin: Start | None = None
        """Where the stream starts, from the subscription until its body begins."""
        self.last = 0
        """The id of the last event sent."""

    def admit(self, address: str) -> None:
        """Take its slots: the job's, ``address``'s and the process's, or raise the
        refusal (429 or 503, :meth:`notifier.slots.StreamSlots.acquire`)."""
        assert self._client is None, "admitted once"
        self._client = self._services.slots.acquire(self.job_id, address)

    # What the protocol calls (servicekit.detached.DetachedStream).
    def attached(self, response: Body) -> None:
        begin, self.begin = self.begin, None
        assert begin is not None, "a stream starts where start() said"
        self._response = response
        self._ends = self._services.heartbeats.ends()
        response.write(chunk(sse.retry(self._services.settings.sse_retry_ms).encode()))
        self.last = begin.last
        self._replaying(begin.pending)
        self.wake()

    def writable(self) -> None:
        self.wake()

    def lost(self) -> None:
        """The client hung up."""
        self._response = self._replay = None
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
        self._release()

    def abandon(self) -> None:
        """The response never began (refused, nothing to send, or its head could not be
        sent)."""
        self._release()

    # What the fan-out and the clock call.
    def wake(self) -> None:
        """Write what there is to write, as far as the client keeps up."""
        response = self._response
        if response is None or self._reading is not None:
            return  # not begun, ended, or re-reading the history (which wakes it after)
        heartbeats = self._services.heartbeats
        while True:
            replay = self._replay
            if replay and not response.paused:
                snapshot = replay.pop()
                if not replay:
                    self._replay = None
            elif self.closed:  # the drain, a deletion: even a slow reader's stream ends
                self._finish()
                return
            elif response.paused:
                self._idle()  # woken again once the client caught up
                return
            elif self.lagged:
                # Live events may be missing: the history is the truth.
                self.drain()
                heartbeats.discard(self)
                self._reading = asyncio.create_task(self._catch_up())
                return
            else:
                taken = self.take()
                if taken is None:
                    self._idle()
                    return
                snapshot = taken
            if snapshot.event_id <= self.last:
                continue  # sent already: the live copy of an event read from the history
            _delivered(snapshot)
            self.last = snapshot.event_id
            if snapshot.is_final:
                self._finish(framed(snapshot))
                return
            response.write(framed(snapshot))

    def _idle(self) -> None:
        """Nothing more to write for now: on the heartbeat clock (a slow reader too, so
        that its lifetime ends it), or past its lifetime, the end."""
        if self._services.heartbeats.add(self) >= self._ends:
            self._finish(_LIFETIME_OVER)

    def heartbeat(self, now: float) -> None:
        """Silent for an interval: a comment, so that proxies keep the connection; the
        end instead, past its lifetime (the client reconnects, by Last-Event-ID)."""
        response = self._response
        if response is None or self._reading is not None:
            return  # ended, or re-reading the history (which wakes it after)
        if now >= self._ends:
            self._finish(_LIFETIME_OVER)
            return
        if not response.paused:  # a slow reader gets no comment on top
            response.write(_KEEP_ALIVE)
        self._services.heartbeats.add(self)

    def _replaying(self, pending: list[JobSnapshot]) -> None:
        self._replay = pending[::-1] if pending else None

    async def _catch_up(self) -> None:
        try:
            pending = await self._services.history.applied_after(self.job_id, self.last)
        except DependencyUnavailable as exc:
            self._reading = None
            log.warning(
                "ending the stream after id %d: %s", self.last, exc, extra={"job_id": self.job_id}
            )
            self._finish(_DATABASE_GONE)
            return
        except JobGone:
            # Deleted while this replica did not hear of it: the reconnect hears 410.
            self._reading = None
            self._finish()
            return
        except Exception:
            # Not an outage: a bug. End the stream (its client resumes by Last-Event-ID)
            # rather than leave it waiting for a read that ended.
            self._reading = None
            log.exception("ending the stream after id %d", self.last, extra={"job_id": self.job_id})
            self._finish()
            return
        self._reading = None
        if self._response is not None:
            self._replaying(pending)
            self.wake()

    def _finish(self, framed: bytes = b"") -> None:
        response, self._response = self._response, None
        self._replay = None
        if response is not None:
            self._release()
            response.end(framed)

    def _release(self) -> None:
        client, self._client = self._client, None
        services = self._services
        services.heartbeats.discard(self)
        services.fanout.leave(self)
        if client is not None:  # once, whatever ends it (and however often it is told)
            services.slots.release(self.job_id, client)


def framed(snapshot: JobSnapshot) -> bytes:
    """The snapshot's SSE event as one HTTP/1.1 chunk, made once and kept with the
    snapshot: every stream of the event writes these very bytes (``servicekit.detached``;
    framing per stream showed in py-spy profiles of a 10,000-stream fan-out, issue 14)."""
    done = snapshot.encoded.get("sse_chunk")
    if done is None:
        done = snapshot.encoded["sse_chunk"] = chunk(snapshot.sse_event.encode())
    return done


_KEEP_ALIVE = chunk(sse.KEEP_ALIVE.encode())
_DATABASE_GONE = chunk(sse.comment("the database is unavailable; reconnect to resume").encode())
_LIFETIME_OVER = chunk(
    sse.comment("this stream reached its maximum lifetime; reconnect to resume").encode()
)


LIFETIME_SPREAD = 0.1
"""Streams end at a random moment in the last tenth of their lifetime: streams that
opened together (a replica's restart moves them all at once) do not all reconnect in
the same instant again, one lifetime later."""

_SHARED_ENDS = 1024
"""At most this many end times are kept to share (see :meth:`Heartbeats.ends`)."""


class Heartbeats:
    """One timer for every idle stream of a process: each tick (a quarter of the
    interval) calls :meth:`Stream.heartbeat` of those silent for the interval. An idle
    stream thus costs a dict entry instead of a timer handle of its own, and 10,000
    idle streams one timer callback instead of 10,000 (issue 14).

    The same clock ends streams past their lifetime (``SSE_MAX_STREAM_SECONDS``): a
    stream's heartbeat comes at the latest one interval after its last write, and is
    its end instead once it is past :meth:`ends`; a paused stream (a slow reader) stays
    on the clock for that. So nothing waits per stream for its end either."""

    __slots__ = ("_due", "_ends", "_grain", "_handle", "_loop", "interval", "lifetime")

    def __init__(self, interval: float, lifetime: float) -> None:
        self.interval = interval
        self.lifetime = lifetime
        self._grain = lifetime * LIFETIME_SPREAD / 64
        self._due: dict[Stream, float] = {}
        self._ends: dict[int, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ends(self) -> float:
        """The loop time past which a stream that begins now ends: a random moment in
        the last tenth of its lifetime (:data:`LIFETIME_SPREAD`), rounded down to a
        64th of that tenth, so that streams that end together share one float object
        (a stream keeps 8 bytes for it, not 32)."""
        earliest = self._running().time() + self.lifetime * (1 - LIFETIME_SPREAD)
        at = int((earliest + self.lifetime * LIFETIME_SPREAD * random.random()) // self._grain)
        ends = self._ends.get(at)
        if ends is None:
            if len(self._ends) >= _SHARED_ENDS:
                self._ends.clear()  # the streams keep theirs
            ends = self._ends[at] = at * self._grain
        return ends

    def add(self, stream: Stream) -> float:
        """``stream`` wrote just now: its heartbeat is due after the interval. The
        loop's time now."""
        loop = self._running()
        now = loop.time()
        self._due[stream] = now + self.interval
        if self._handle is None:
            self._handle = loop.call_later(self.interval / 4, self._tick)
        return now

    def discard(self, stream: Stream) -> None:
        self._due.pop(stream, None)

    def _running(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several)
            self._loop, self._due, self._ends, self._handle = loop, {}, {}, None
        return loop

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        over = [s for s, due in self._due.items() if due <= now]
        for stream in over:
            del self._due[stream]
            stream.heartbeat(now)
        self._handle = loop.call_later(self.interval / 4, self._tick) if self._due else None
