"""Live delivery on every replica: the projection's feed of applied events
(:class:`notifier.ports.AppliedEvents`; PostgreSQL ``LISTEN`` in production).

The projection is written once per event, by the replica whose consumer owns the
event's partition (the shared consumer group), and it notifies ``<schema>_applied``
inside the recording transaction (:mod:`notifier.adapters.postgres`). PostgreSQL
delivers that to every listening session after the commit, in commit order, so each
replica learns of every applied event within milliseconds without polling. A
notification carries its event (the recorded row, as JSON) when it fits PostgreSQL's
8000 bytes, which all but a very large result do; the replica fans those out to the
streams of their job as they come, and reads the others (one query per batch of
notifications, never per client). The SSE ids are the projection's per-job ids,
whichever replica wrote the event.

A notification sent while this replica's LISTEN connection is down is lost to it, so
after every (re)connect, once ``LISTEN`` is in place, every stream re-reads the history
after its last id (:meth:`FanOut.resync_all`): nothing committed in between is missed,
and the per-job ids drop anything seen twice.

A job erased (deleted, docs/architecture.md §8) is announced on the same feed: its
streams on this replica end at once (:meth:`FanOut.end`), and their clients' reconnects
hear 410. One that missed it (the connection was down) finds the job gone when it
re-reads the history.
"""

import asyncio
import contextlib
import logging

from notifier.fanout import FanOut
from notifier.ports import AppliedEvents, JobStore
from notifier.projection import JobSnapshot

log = logging.getLogger(__name__)

BATCH = 1000
"""Most rows read in one query."""


class Listener:
    def __init__(
        self,
        feed: AppliedEvents,
        store: JobStore,
        fanout: FanOut,
        *,
        reconnect_seconds: float = 1.0,
    ) -> None:
        self._feed = feed
        self._store = store
        self._fanout = fanout
        self._reconnect_seconds = reconnect_seconds
        self._pending: list[tuple[str, int, JobSnapshot | None]] = []
        self._arrived = asyncio.Event()
        self.connected = False

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        pump = asyncio.create_task(self._pump())
        try:
            while True:
                try:
                    await self._feed.listen(self._on_applied, self._on_listening, self._fanout.end)
                except Exception as exc:
                    log.warning(
                        "LISTEN connection lost (%s: %s); reconnecting", type(exc).__name__, exc
                    )
                finally:
                    self.connected = False
                await asyncio.sleep(self._reconnect_seconds)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _on_listening(self) -> None:
        self.connected = True
        # Whatever was committed while nobody listened: every stream re-reads it.
        self._fanout.resync_all()

    def _on_applied(self, job_id: str, event_id: int, snapshot: JobSnapshot | None) -> None:
        if not self._fanout.has_subscribers(job_id):
            return
        self._pending.append((job_id, event_id, snapshot))
        self._arrived.set()

    async def _pump(self) -> None:
        """Fan the notified events out in arrival order, reading in batches those the
        notifications did not carry."""
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            pending, self._pending = self._pending, []
            for start in range(0, len(pending), BATCH):
                await self._deliver(pending[start : start + BATCH])

    async def _deliver(self, batch: list[tuple[str, int, JobSnapshot | None]]) -> None:
        missing = [(job_id, event_id) for job_id, event_id, carried in batch if carried is None]
        read: dict[tuple[str, int], JobSnapshot] = {}
        unread: set[str] = set()
        if missing:
            try:
                found = await self._store.applied_events(missing)
                read = {(s.job_id, s.event_id): s for s in found}
            except Exception as exc:
                # Their streams re-read the history (and end, if the database is gone);
                # nothing later of those jobs goes ahead of what was not read.
                log.warning("reading %d notified events failed: %s", len(missing), exc)
                unread = {job_id for job_id, _ in missing}
                for job_id in unread:
                    self._fanout.resync(job_id)
        for job_id, event_id, carried in batch:
            snapshot = carried or read.get((job_id, event_id))
            if snapshot is not None and job_id not in unread:
                self._fanout.publish(snapshot)
