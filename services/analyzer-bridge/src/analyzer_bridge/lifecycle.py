"""The data lifecycle in the bridge (docs/architecture.md §8): a deleted job's analysis
is abandoned and erased, and finished analyses are erased after their retention.

A deleted job (``job.deleted``, reason ``requested`` or ``retention``, erase ``job``):
its row goes and a tombstone stays, in one transaction under the job's lock, so that a
redelivered ``audio.stored`` records nothing (:meth:`AnalysisStore.insert_pending`). A
request under way in this process is cancelled; one under way in another replica finds
no row to lease, to mark requested or to make final, and stops. A webhook for the job
then gets ``410`` and changes nothing (:mod:`analyzer_bridge.routes`); a retry, the
deadline or a result publishes nothing, since there is no row to claim. An ``audio``
erasure asks for the recording only, of which the bridge holds no copy.

Retention: finished analyses whose events are out are erased ``finished_seconds`` after
they finished; the job's result lives on in the notifier until its own retention, so no
``job.deleted`` is published. Tombstones are forgotten after ``tombstone_seconds``.
"""

import asyncio
import logging

from analyzer_bridge.ports import AnalysisStore, DependencyUnavailable
from analyzer_bridge.requesting import Requester

log = logging.getLogger(__name__)


async def erase(store: AnalysisStore, requester: Requester, job_id: str) -> None:
    """Abandon and erase the job's analysis; repeating it changes nothing."""
    await store.erase(job_id)
    await requester.abandon(job_id)


class Retention:
    def __init__(
        self,
        store: AnalysisStore,
        *,
        finished_seconds: float,
        tombstone_seconds: float,
        interval_seconds: float,
    ) -> None:
        self._store = store
        self.finished_seconds = finished_seconds
        self.tombstone_seconds = tombstone_seconds
        self.interval_seconds = interval_seconds

    async def sweep(self) -> tuple[int, int]:
        """One sweep: how many finished analyses and tombstones it erased."""
        finished, tombstones = await self._store.prune(
            self.finished_seconds, self.tombstone_seconds
        )
        if finished or tombstones:
            log.info("retention: %d finished analyses, %d tombstones erased", finished, tombstones)
        return finished, tombstones

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failed sweep is tried again next time."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.sweep()
            except DependencyUnavailable as exc:
                log.warning("retention sweep skipped: %s", exc)
            except Exception:
                log.exception("retention sweep failed")
