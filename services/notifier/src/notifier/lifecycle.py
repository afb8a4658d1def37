"""The data lifecycle's rules (docs/architecture.md §8): a job deleted when its holder or
its owner asks, and finished jobs deleted once past their retention.

A deletion travels through Kafka like everything else: it is announced on
``job.deleted`` and acknowledged by the broker before anything is answered; every
service erases its part from there, in its own consumer group, and so does the notifier
(:func:`notifier.handlers.on_jobs_deleted`), so a crash in the middle only delays it.
The replica that takes a request also erases the job's rows at once, so that the job
answers 410 on every replica right away and its open streams end.
"""

import asyncio
import logging
from enum import Enum

from contracts import DeletionReason, Erase, JobDeleted
from notifier.ports import Deletions, Lifecycle
from servicekit.http import ApiError, DependencyUnavailable

log = logging.getLogger(__name__)


class Deletion(Enum):
    STARTED = "started"
    """Announced on ``job.deleted`` and erased here (202)."""
    ALREADY = "already"
    """Deleted before: only its tombstone is left, nothing to do (204)."""


class Deleter:
    def __init__(self, lifecycle: Lifecycle, deletions: Deletions) -> None:
        self._lifecycle = lifecycle
        self._deletions = deletions

    async def delete(self, job_id: str, owner: str | None = None) -> Deletion:
        """Delete ``job_id`` for the holder of its ``job:write`` token (``owner`` None),
        or for ``owner``, the verified subject of a bearer JWT, whose job it must be.

        The holder's token proves the job exists, so a job this projection has not
        heard of yet (its events still on their way) is deleted too, and its tombstone
        drops them when they come. An owner learns nothing of jobs that are not its
        own: those, like the ones already deleted, are 404."""
        found = await self._lifecycle.find(job_id)
        if owner is not None:
            if found is None or found.deleted or found.owner != owner:
                raise ApiError(404, "not_found", "you have no job with this id")
        elif found is not None and found.deleted:
            return Deletion.ALREADY
        await self._deletions.publish(
            JobDeleted(job_id=job_id, reason=DeletionReason.REQUESTED, erase=Erase.JOB)
        )
        log.info(
            "job %s: deletion requested by %s", job_id, "its owner" if owner else "its holder",
            extra={"job_id": job_id},
        )  # fmt: skip
        try:
            await self._lifecycle.erase([job_id])
        except DependencyUnavailable as exc:
            # Announced already: this service's own consumer erases it once it can.
            log.warning("job %s: erased later (%s)", job_id, exc, extra={"job_id": job_id})
        return Deletion.STARTED


SWEEP_BATCH = 500
"""Jobs claimed (and their deletions published) at a time."""

CLAIM_SWEEPS = 10
"""A sweep's claim on a job lasts this many sweep intervals: time enough for its
``job.deleted`` to be erased here; a job still present after it is announced again."""


class Retention:
    """The state's retention: a sweep on any replica every ``interval_seconds``
    announces the deletion (reason ``retention``) of each job finished longer than
    ``retention_seconds`` ago, which every service then erases as any other; and
    forgets tombstones older than ``tombstone_seconds``. Replicas sweep at the same
    time safely: each job is claimed by one (:meth:`Lifecycle.claim_expired`)."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        deletions: Deletions,
        *,
        retention_seconds: float,
        tombstone_seconds: float,
        interval_seconds: float,
    ) -> None:
        self._lifecycle = lifecycle
        self._deletions = deletions
        self.retention_seconds = retention_seconds
        self.tombstone_seconds = tombstone_seconds
        self.interval_seconds = interval_seconds

    async def sweep(self) -> list[str]:
        """One sweep; the jobs whose deletion it announced."""
        announced: list[str] = []
        while self.retention_seconds > 0:
            claimed = await self._lifecycle.claim_expired(
                self.retention_seconds, CLAIM_SWEEPS * self.interval_seconds, SWEEP_BATCH
            )
            await asyncio.gather(
                *(
                    self._deletions.publish(
                        JobDeleted(job_id=job_id, reason=DeletionReason.RETENTION, erase=Erase.JOB)
                    )
                    for job_id in claimed
                )
            )
            announced += claimed
            if len(claimed) < SWEEP_BATCH:
                break
        pruned = await self._lifecycle.prune_tombstones(self.tombstone_seconds)
        if announced or pruned:
            log.info(
                "retention: %d finished jobs to delete, %d tombstones forgotten",
                len(announced), pruned,
            )  # fmt: skip
        return announced

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failed sweep is tried again next time
        (a claimed job whose deletion was not published waits for its claim to lapse)."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.sweep()
            except DependencyUnavailable as exc:
                log.warning("retention sweep skipped: %s", exc)
            except Exception:
                log.exception("retention sweep failed")
