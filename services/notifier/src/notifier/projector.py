"""Handling one `job.status` event: record it in the projection, once.

Only the replica whose consumer owns the event's partition records it. Live streams,
on every replica, learn of it from PostgreSQL once it is committed
(:mod:`notifier.listener`), so that the SSE ids are the projection's.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context
from opentelemetry.propagate import get_global_textmap

from contracts import JobStatusChanged
from notifier.ports import JobStore
from notifier.projection import Decision, Outcome
from servicekit.metrics import JOBS_FINISHED

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def handle(
        self,
        events: list[tuple[str, JobStatusChanged]],
        traceparents: list[str | None] | None = None,
    ) -> list[Decision]:
        contexts = traceparents or [None] * len(events)
        decisions = await self.store.record_batch(events, contexts)
        for (ce_id, event), decision, traceparent in zip(events, decisions, contexts, strict=True):
            extra = {"job_id": event.job_id}
            with _in_trace(traceparent):
                if decision.outcome is Outcome.APPLIED:
                    if event.status.is_final:
                        JOBS_FINISHED.labels(event.status.value).inc()
                    log.info(
                        "job %s is %s (%d%%)", event.job_id, event.status,
                        decision.snapshot.progress, extra=extra,
                    )  # fmt: skip
                else:
                    log.info(
                        "ignored %s event %s: %s", event.status, ce_id, decision.reason,
                        extra=extra,
                    )  # fmt: skip
        return decisions


@contextmanager
def _in_trace(traceparent: str | None) -> Iterator[None]:
    """In the trace of the event (its W3C ``traceparent``), so that the log lines about
    it carry its job's trace id, not the batch's (issue 7)."""
    if not traceparent:
        yield
        return
    token = context.attach(get_global_textmap().extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)
