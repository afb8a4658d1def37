"""Erasing a deleted job from the uploader (``job.deleted``, docs/architecture.md §8).

The uploader holds, of a job, its object in S3, a multipart upload while it is being
stored, a checkpoint while it is a resumable upload, and its bytes in memory while it is
open here. The steps, in an order that a crash at any of them leaves safe, and that a
redelivery (the offset is committed only after the last) repeats harmlessly:

1. the tombstone: from now on nothing of the job is stored, by any replica, whatever
   message of it comes later (a deletion can overtake the upload's own messages, and a
   replay after a crash repeats them; :class:`uploader.assembly.Assembler` reads the
   tombstone when a job starts and once its object is stored);
2. what this process holds, between two ``audio.upload`` messages (the lock): its
   bytes and its part on the way to S3, and its place in the commit bookkeeping, so
   that it holds its partition's committed offset no longer; a replica that holds the
   job instead finds the tombstone when its next checkpoint is refused, or once it
   stored the object, or drops it at the gateway's abort marker;
3. every multipart upload on the job's key (this process's, another replica's, a
   crashed run's), before the checkpoint that names one goes;
4. the checkpoint (it holds the upload's file name and owner);
5. the object.

Both erasures, ``job`` and ``audio``, take the same steps: the uploader keeps nothing
of a job but its audio.
"""

import asyncio
import logging
from dataclasses import dataclass

from uploader.assembly import Assembler
from uploader.offsets import CommitTracker
from uploader.ports import CheckpointStore, EventPublisher, ObjectStore, Tombstones

log = logging.getLogger(__name__)


@dataclass
class Erasure:
    assembler: Assembler
    tracker: CommitTracker
    lock: asyncio.Lock
    """The ``audio.upload`` handler's (uploader.handlers.Uploads.lock)."""
    tombstones: Tombstones
    checkpoints: CheckpointStore
    store: ObjectStore
    events: EventPublisher
    key_prefix: str

    async def erase(self, job_id: str) -> None:
        await self.tombstones.record(job_id)
        async with self.lock:
            job = await self.assembler.erase(job_id)
            self.tracker.close_everywhere(job_id)
        keys = {self.key_prefix + job_id}
        if job is not None:
            keys.add(job.key)
        checkpoint = await self.checkpoints.load(job_id)
        if checkpoint is not None:
            keys.add(checkpoint.key)
        for key in sorted(keys):
            if await self.store.abort_all(key):
                log.info("aborted the multipart upload of a deleted job at %s", key)
        await self.checkpoints.delete(job_id)
        for key in sorted(keys):
            await self.store.delete(key)
