"""The audio's retention and the tombstones' (docs/architecture.md §8).

Every ``interval`` seconds, a sweep on one replica at a time (a PostgreSQL advisory
lock, :class:`uploader.ports.SweepLock`) lists the objects under the key prefix and,
for each one stored longer than ``audio_seconds`` ago, announces its erasure on
``job.deleted`` (reason ``retention``, erase ``audio``: every subscriber that copied the
recording erases it, the job's result stays), then deletes the object. Announced first:
a crash between the two finds the object again at the next sweep, which announces it
again (the same ``ce_id``, so subscribers drop the repeat) and deletes it; the other way
round, the object could be gone with nobody told. The uploader's own ``job.deleted``
consumer then erases the rest (tombstone, checkpoint), as for any deletion.

The objects are found by listing the bucket (``LastModified``), not from a table of what
was stored: S3 is the truth of what is there, whichever run of whichever version stored
it, a crash between a store and a row would leave an object no sweep sees, and the hot
path writes nothing more. The price is one list request per 1,000 objects a sweep.

The same sweep forgets tombstones older than ``tombstone_seconds``; any replica may
(rows locked by another are skipped).
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from contracts import DeletionReason, Erase, JobDeleted
from uploader.ports import EventPublisher, ObjectStore, SweepLock, Tombstones

log = logging.getLogger(__name__)

LOCK = "audio-retention"


def job_of(key: str, prefix: str) -> str | None:
    """The job id of an object's key, or None for a key that names no job."""
    rest = key[len(prefix) :] if key.startswith(prefix) else ""
    try:
        return rest if str(uuid.UUID(rest)) == rest else None
    except ValueError:
        return None


class Retention:
    def __init__(
        self,
        store: ObjectStore,
        events: EventPublisher,
        lock: SweepLock,
        tombstones: Tombstones,
        *,
        prefix: str,
        audio_seconds: float,
        tombstone_seconds: float,
        interval_seconds: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._events = events
        self._lock = lock
        self._tombstones = tombstones
        self._prefix = prefix
        self.audio_seconds = audio_seconds
        self.tombstone_seconds = tombstone_seconds
        self.interval_seconds = interval_seconds
        self._now = now

    async def sweep_audio(self) -> list[str]:
        """One sweep; the jobs whose audio it erased (none when another replica sweeps
        now, or when the retention is off)."""
        if self.audio_seconds <= 0:
            return []
        erased: list[str] = []
        async with self._lock.held(LOCK) as mine:
            if not mine:
                return []
            cutoff = self._now() - timedelta(seconds=self.audio_seconds)
            async for key in self._store.stored_before(self._prefix, cutoff):
                job_id = job_of(key, self._prefix)
                if job_id is None:
                    continue  # not an object of ours: left alone
                await self._events.deleted(
                    JobDeleted(job_id=job_id, reason=DeletionReason.RETENTION, erase=Erase.AUDIO)
                )
                await self._store.delete(key)
                erased.append(job_id)
        if erased:
            log.info("retention: the audio of %d jobs erased", len(erased))
        return erased

    async def sweep(self) -> list[str]:
        erased = await self.sweep_audio()
        pruned = await self._tombstones.prune(self.tombstone_seconds)
        if pruned:
            log.info("retention: %d tombstones forgotten", pruned)
        return erased

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failed sweep is tried again next time."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.sweep()
            except Exception:
                log.warning("the retention sweep failed; it runs again", exc_info=True)
