"""Handling one `job.status` event: project it, then fan the applied state out.

The two steps are separate on purpose: the projection is written once per event (by
the consumer group that owns the event's partition), while the fan-out must reach the
streams of every replica (issue 5 feeds :meth:`Projector.fan_out` from elsewhere).
"""

import logging

from contracts import JobStatusChanged
from notifier.fanout import FanOut
from notifier.projection import Decision, JobSnapshot, Outcome
from notifier.store import Store

log = logging.getLogger(__name__)


class Projector:
    def __init__(self, store: Store, fanout: FanOut) -> None:
        self.store = store
        self.fanout = fanout

    async def handle(self, ce_id: str, event: JobStatusChanged) -> Decision:
        decision = await self.store.record(ce_id, event)
        extra = {"job_id": event.job_id}
        if decision.outcome is Outcome.APPLIED:
            log.info(
                "job %s is %s (%d%%)", event.job_id, event.status, decision.snapshot.progress,
                extra=extra,
            )  # fmt: skip
            self.fan_out(decision.snapshot)
        else:
            log.info("ignored %s event %s: %s", event.status, ce_id, decision.reason, extra=extra)
        return decision

    def fan_out(self, snapshot: JobSnapshot) -> None:
        self.fanout.publish(snapshot)
