"""The sweeper: every few seconds it fails jobs past their deadline with
``analysis_timeout``, republishes final events that did not get out, and resumes
pending requests nobody holds (docs/architecture.md §5.5: nothing waits forever)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from analyzer_bridge.analysis import Outcome
from analyzer_bridge.finishing import Finisher
from analyzer_bridge.ports import AnalysisStore, DependencyUnavailable
from analyzer_bridge.requesting import Requester
from contracts import ErrorCode

log = logging.getLogger(__name__)

REPUBLISH_GRACE_SECONDS = 5.0
"""A final row this old without ``published_at`` lost its publish; younger ones are
most likely being published right now."""


class Sweeper:
    def __init__(
        self,
        store: AnalysisStore,
        finisher: Finisher,
        requester: Requester,
        *,
        interval_seconds: float,
        deadline_seconds: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._finisher = finisher
        self._requester = requester
        self._interval = interval_seconds
        self._deadline_seconds = deadline_seconds
        self._sleep = sleep

    async def sweep(self) -> None:
        message = f"no analysis result within {self._deadline_seconds:g} s"
        for job_id in await self._store.expired():
            # The same conditional claim as the webhooks: if one wins the race, this
            # is a conflict or a replay and publishes nothing.
            await self._finisher.finish(job_id, Outcome.failed(ErrorCode.ANALYSIS_TIMEOUT, message))
        for row in await self._store.unpublished(REPUBLISH_GRACE_SECONDS):
            log.warning("republishing the final events", extra={"job_id": row.job_id})
            await self._finisher.publish_final(row)
        for job_id in await self._store.orphaned_pending():
            self._requester.submit(job_id)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except DependencyUnavailable as exc:
                log.warning("deadline sweep failed (%s); trying again", exc)
            except Exception:
                log.exception("deadline sweep failed; trying again")
            await self._sleep(self._interval)
