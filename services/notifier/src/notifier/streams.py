"""The progress stream of one job: history first, then live events, until final.

Ordering guarantee (docs/architecture.md §9): the live subscription is opened *before* the history
is read, and every event carries its per-job id, so an event that lands between the
two reads is sent exactly once (live copies with an id already sent are dropped).

Where the stream starts (:func:`start`) is read before the response begins, so that a
database outage is a 503 JSON answer, not a 200 whose body breaks off (issue 11). Once
streaming, a stream that must read the history while the database is down ends
cleanly and its client reconnects with Last-Event-ID; one that needs nothing from it
carries on (heartbeats) and catches up when the LISTEN connection is back.
"""

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap

from notifier import sse
from notifier.fanout import Subscription
from notifier.ports import History
from notifier.projection import JobSnapshot
from servicekit.http import DependencyUnavailable
from servicekit.metrics import SSE_STREAMS

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
    """The current state, or the applied events after ``after`` (a Last-Event-ID).

    An id beyond the job's latest names no event of this job (a stale or foreign id):
    the stream starts over from the current state instead of waiting for an id that
    may never come (issue 11)."""
    current = await store.current(job_id)
    if current is None:
        return Start(None, [], 0)
    if after is None or after > current.event_id:
        return Start(current, [current], 0)
    return Start(current, await store.applied_after(job_id, after), after)


async def follow(
    store: History,
    live: Subscription,
    begin: Start,
    *,
    heartbeat_seconds: float,
    retry_ms: int,
) -> AsyncGenerator[str, None]:
    """SSE text for ``live.job_id`` from ``begin``: then live events, heartbeats while
    idle.

    Ends after the final event; early when the process shuts down or the database
    goes away mid-stream (the client then reconnects, maybe to another replica, and
    resumes by Last-Event-ID)."""
    job_id = live.job_id
    yield sse.retry(retry_ms)
    pending, last = begin.pending, begin.last
    try:
        while True:
            for snapshot in pending:
                if snapshot.event_id <= last:
                    continue
                _delivered(snapshot)
                yield sse.snapshot_event(snapshot)
                last = snapshot.event_id
                if snapshot.is_final:
                    return
            if live.closed:
                return
            arrived = await live.next(heartbeat_seconds)
            if live.closed:
                return
            if live.lagged:
                # Live events may be missing: the history is the truth.
                live.drain()
                pending = await store.applied_after(job_id, last)
            elif arrived is None:
                pending = []
                yield sse.KEEP_ALIVE
            else:
                pending = [arrived]
    except DependencyUnavailable as exc:
        log.warning("ending the stream after id %d: %s", last, exc, extra={"job_id": job_id})
        yield sse.comment("the database is unavailable; reconnect to resume")


class StreamSlots:
    """Counts open streams, so that a process refuses more than it can carry."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def acquire(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        SSE_STREAMS.inc()
        return True

    def release(self) -> None:
        self.open -= 1
        SSE_STREAMS.dec()
