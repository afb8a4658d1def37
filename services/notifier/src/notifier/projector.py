"""Handling one `job.status` event: record it in the projection, once.

Only the replica whose consumer owns the event's partition records it. Live streams,
on every replica, learn of it from PostgreSQL once it is committed
(:mod:`notifier.listener`), so that the SSE ids are the projection's.
"""

import logging

from contracts import JobStatusChanged
from notifier.projection import Decision, Outcome
from notifier.store import Store
from servicekit.metrics import JOBS_FINISHED

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle(
        self,
        events: list[tuple[str, JobStatusChanged]],
        traceparents: list[str | None] | None = None,
    ) -> list[Decision]:
        decisions = await self.store.record_batch(events, traceparents)
        for (ce_id, event), decision in zip(events, decisions, strict=True):
            extra = {"job_id": event.job_id}
            if decision.outcome is Outcome.APPLIED:
                if event.status.is_final:
                    JOBS_FINISHED.labels(event.status.value).inc()
                log.info(
                    "job %s is %s (%d%%)", event.job_id, event.status,
                    decision.snapshot.progress, extra=extra,
                )  # fmt: skip
            else:
                log.info(
                    "ignored %s event %s: %s", event.status, ce_id, decision.reason, extra=extra
                )
        return decisions
