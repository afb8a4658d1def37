"""Making a job final: one winner, then its events.

Order: claim the final state first (a conditional ``UPDATE ... RETURNING``), publish
after. Claiming first is what makes two racing finals (a webhook and the deadline
sweeper, or two webhooks) produce exactly one final state; publishing first would let
both publish. The price is a window where the row is final but its events are not
out yet (Kafka down, process killed): ``published_at`` stays NULL, and the sweeper
republishes such rows a few seconds later with the same deterministic ``ce_id``s, so
delivery is at-least-once and readers drop duplicates.
"""

import logging
from datetime import UTC, datetime
from enum import Enum

from analyzer_bridge.decisions import Verdict, judge_final
from analyzer_bridge.events import EventSink, Topics, analyzing, final_events
from analyzer_bridge.store import Analysis, Outcome, Store
from contracts import AnalysisCompleted, AnalysisFailed

log = logging.getLogger(__name__)


class Finish(Enum):
    WON = "won"
    REPLAY = "replay"
    CONFLICT = "conflict"
    UNKNOWN = "unknown"


class Finisher:
    def __init__(self, store: Store, events: EventSink, topics: Topics) -> None:
        self._store = store
        self._events = events
        self._topics = topics

    async def finish(self, job_id: str, outcome: Outcome, webhook_id: str | None = None) -> Finish:
        row = await self._store.claim_final(job_id, outcome, webhook_id)
        if row is not None:
            log.info("job is %s", row.state.value, extra={"job_id": job_id})
            await self.publish_final(row)
            return Finish.WON
        current = await self._store.get(job_id)
        if current is None:
            return Finish.UNKNOWN
        if judge_final(current, outcome.state, webhook_id) is Verdict.CONFLICT:
            return Finish.CONFLICT
        # Not republished here even if `published_at` is NULL: the winner may be
        # publishing right now. The sweeper republishes rows that stay unpublished.
        return Finish.REPLAY

    async def publish_final(self, row: Analysis) -> None:
        assert row.outcome is not None
        at = row.finished_at or datetime.now(UTC)
        result: AnalysisCompleted | AnalysisFailed
        if row.outcome.result is not None:
            result = AnalysisCompleted(
                job_id=row.job_id, result=row.outcome.result, completed_at=at
            )
        else:
            assert row.outcome.error is not None
            result = AnalysisFailed(job_id=row.job_id, error=row.outcome.error, failed_at=at)
        (analysis, analysis_id), (status, status_id) = final_events(row.job_id, result, at)
        await self._events.publish(self._topics.analysis_result, analysis, analysis_id)
        await self._events.publish(self._topics.job_status, status, status_id)
        await self._store.mark_published(row.job_id)

    async def publish_analyzing(self, job_id: str, progress: int, detail: str) -> None:
        event, ce_id = analyzing(job_id, progress, detail)
        await self._events.publish(self._topics.job_status, event, ce_id)
