"""Making a job final: one winner, then its events (docs/architecture.md §3, §5.3).

Order: claim the final state first (a conditional ``UPDATE ... RETURNING``), publish
after. Claiming first is what makes two racing finals (a webhook and the deadline
sweeper, or two webhooks) produce exactly one final state; publishing first would let
both publish. The price is a window where the row is final but its events are not
out yet (Kafka down, process killed): ``published_at`` stays NULL, and the sweeper
republishes such rows a few seconds later with the same deterministic ``ce_id``s, so
delivery is at-least-once and readers drop duplicates.

``analyzing`` (51), the news that the analysis server accepted a job, waits
``analyzing_notice_seconds`` (1 s) and is published only if the job has heard nothing
since: a short analysis goes from ``uploaded`` to its final status without it, as a
short upload skips ``uploading`` (docs/topics/job.status.md; issue 21: each status is a
produce, a projection write and a push to every stream).
"""

import asyncio
import logging
from datetime import UTC, datetime
from enum import Enum

from analyzer_bridge.analysis import Analysis, Outcome, State
from analyzer_bridge.decisions import Verdict, judge_final
from analyzer_bridge.jobtasks import JobTasks
from analyzer_bridge.ports import AnalysisStore, EventPublisher
from contracts import AnalysisCompleted, AnalysisFailed, JobStatus, JobStatusChanged, stage_progress
from servicekit.kafka import publish_together

log = logging.getLogger(__name__)

ANALYZING_START = stage_progress(JobStatus.ANALYZING, 0)


class Finish(Enum):
    WON = "won"
    REPLAY = "replay"
    CONFLICT = "conflict"
    UNKNOWN = "unknown"


class Finisher:
    def __init__(
        self, store: AnalysisStore, events: EventPublisher, analyzing_notice_seconds: float = 0.0
    ) -> None:
        self._store = store
        self._events = events
        self._notice_seconds = analyzing_notice_seconds
        self._notices = JobTasks("analyzing-notice")

    async def requested(self, job_id: str) -> None:
        """The analysis server accepted the job: ``analyzing`` (51) now, or once the
        notice delay has passed with no other news of the job (this process cancels it
        on the news it gets; another replica's is checked in the row)."""
        if self._notice_seconds <= 0:
            await self.publish_analyzing(job_id, ANALYZING_START, "analysis requested")
            return
        self._notices.start(job_id, lambda: self._notice(job_id))

    async def _notice(self, job_id: str) -> None:
        await asyncio.sleep(self._notice_seconds)
        try:
            row = await self._store.get(job_id)
            # Still requested, and nothing beyond the request's progress published.
            if row is not None and row.state is State.REQUESTED and row.progress <= ANALYZING_START:
                await self.publish_analyzing(job_id, ANALYZING_START, "analysis requested")
        except Exception as exc:  # advisory: a later status supersedes it
            log.warning("`analyzing` was not published: %r", exc, extra={"job_id": job_id})

    def _news(self, job_id: str) -> None:
        """The job has news of its own (progress, its end): no notice is due."""
        self._notices.cancel_soon(job_id)

    async def join(self) -> None:
        """Wait until the notices under way here have ended (published, found moot or
        cancelled)."""
        await self._notices.join()

    async def stop(self) -> None:
        """Cancel the notices not yet due (advisory: nothing is lost)."""
        await self._notices.cancel_all()

    async def finish(self, job_id: str, outcome: Outcome, webhook_id: str | None = None) -> Finish:
        self._news(job_id)
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
        # Sent together: the final status, which is what the client waits for, does not
        # wait for the result's acknowledgement (one broker round trip less to the SSE,
        # issue 14). Topics are not ordered against each other (docs/architecture.md
        # §4); the row is marked published only once both are acknowledged, so if
        # either fails the sweeper republishes both with the same ids.
        await publish_together(
            self._events.result(analysis, analysis_id),
            self._events.status(status, status_id),
        )
        await self._store.mark_published(row.job_id)

    async def publish_analyzing(self, job_id: str, progress: int, detail: str) -> None:
        if progress > ANALYZING_START:
            self._news(job_id)
        event, ce_id = analyzing(job_id, progress, detail)
        await self._events.status(event, ce_id)


# Every ``ce_id`` is derived from what happened, so a republished event carries the id
# of the first publish and readers drop the duplicate.


def analyzing(job_id: str, progress: int, detail: str) -> tuple[JobStatusChanged, str]:
    event = JobStatusChanged(
        job_id=job_id, status=JobStatus.ANALYZING, progress=progress, detail=detail
    )
    return event, f"{job_id}:status:analyzing:{progress}"


def final_events(
    job_id: str,
    result: AnalysisCompleted | AnalysisFailed,
    at: datetime,
) -> tuple[tuple[AnalysisCompleted | AnalysisFailed, str], tuple[JobStatusChanged, str]]:
    """The ``analysis.result`` event and the final ``job.status`` of a job, with their ids."""
    if isinstance(result, AnalysisCompleted):
        status = JobStatusChanged(
            job_id=job_id,
            status=JobStatus.COMPLETED,
            progress=stage_progress(JobStatus.COMPLETED),
            detail="analysis completed",
            result=result.result,
            time=at,
        )
    else:
        status = JobStatusChanged(
            job_id=job_id,
            status=JobStatus.FAILED,
            progress=stage_progress(JobStatus.FAILED),
            detail=result.error.message,
            error=result.error,
            time=at,
        )
    return (result, f"{job_id}:analysis-result"), (status, f"{job_id}:status:final")
