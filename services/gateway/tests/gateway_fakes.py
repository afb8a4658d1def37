"""In-memory fakes of the gateway's ports (:mod:`gateway.ports`) for unit tests."""

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from contracts import CeType, Event, topics
from gateway.limits import FairUse, Refused, Usage, judge_bytes, judge_upload, next_rate_tat
from gateway.ports import (
    Ack,
    ChunkMessage,
    LockBusy,
    Message,
    SinkError,
    State,
    UploadRecord,
    UploadRow,
)


class FakeSink:
    """Records what would go to Kafka; can be told to fail from the n-th message on."""

    def __init__(self, fail_from: int | None = None, up: bool = True) -> None:
        self.messages: list[tuple[str, str, Any]] = []
        self.sends: list[int] = []
        """How many messages each ``send`` handed over together."""
        self.fail_from = fail_from
        self.up = up

    def available(self) -> bool:
        return self.up

    def _ack(self) -> Ack:
        future: Ack = asyncio.get_running_loop().create_future()
        if self.fail_from is not None and len(self.messages) >= self.fail_from:
            future.set_exception(SinkError("the fake broker timed out"))
        else:
            future.set_result(None)
        return future

    async def send(self, *messages: Message) -> list[Ack]:
        # One at a time, through the methods a test's fake may override.
        acks = []
        for m in messages:
            if isinstance(m, ChunkMessage):
                acks.append(await self.chunk(m.job_id, m.sequence, m.data, m.offset))
            else:
                acks.append(await self.event(m.topic, m.event, m.ce_id))
        self.sends.append(len(messages))
        return acks

    async def event(self, topic: str, event: Event, ce_id: str) -> Ack:
        ack = self._ack()
        self.messages.append((topic, ce_id, event))
        return ack

    async def chunk(
        self, job_id: str, sequence: int, data: bytes, offset: int | None = None
    ) -> Ack:
        ack = self._ack()
        self.messages.append((topics.AUDIO_UPLOAD, CeType.UPLOAD_CHUNK, (sequence, data)))
        return ack

    async def confirmed(self, ack: Ack) -> None:
        await ack

    def kinds(self) -> list[str]:
        return [type(m).__name__ if isinstance(m, Event) else "chunk" for _, _, m in self.messages]


class FakeLease:
    def __init__(self, store: "FakeUploadStore", job_id: str, generation: int) -> None:
        self._store = store
        self.job_id = job_id
        self.generation = generation
        self.taken_over = asyncio.Event()

    async def advance(
        self, offset: int, chunk_count: int, digest: bytes, media: str | None
    ) -> bool:
        row = self._store.rows.get(self.job_id)
        if row is None or row.state is not State.OPEN or row.offset > offset:
            return False
        self._store.rows[self.job_id] = dataclasses.replace(
            row,
            offset=offset,
            chunk_count=chunk_count,
            digest=digest,
            media_type=media or row.media_type,
        )
        return True

    async def set_length(self, length: int) -> None:
        row = self._store.rows[self.job_id]
        if row.length is None:
            self._store.rows[self.job_id] = dataclasses.replace(row, length=length)

    async def touch(self, expires_at: datetime) -> None:
        row = self._store.rows[self.job_id]
        if row.state is State.OPEN:
            self._store.rows[self.job_id] = dataclasses.replace(
                row, expires_at=max(row.expires_at, expires_at)
            )

    async def finish(self, state: State, result: str | None) -> bool:
        return self._store.ended(self.job_id, state, result)

    async def row(self) -> UploadRow | None:
        return self._store.rows.get(self.job_id)


class FakeUploadStore:
    """The resumable uploads in a dict. One lease at a time per upload, as the advisory
    lock gives; a second one asks the holder to stop and waits up to ``lock_wait``
    seconds for it to let go, else :class:`LockBusy` (as the real store does); ``busy``
    makes every lease fail as a holder that never lets go would."""

    def __init__(self, lock_wait: float = 0.0) -> None:
        self.rows: dict[str, UploadRow] = {}
        self.tombstones: set[str] = set()
        self.busy = False
        self.lock_wait = lock_wait
        self._held: dict[str, FakeLease] = {}
        self._released = asyncio.Condition()

    async def create(self, upload: UploadRecord) -> None:
        assert upload.job_id not in self.rows
        self.rows[upload.job_id] = UploadRow(
            **{f.name: getattr(upload, f.name) for f in dataclasses.fields(UploadRecord)},
            state=State.OPEN,
            offset=0,
            chunk_count=0,
            media_type=None,
            generation=0,
            result=None,
        )

    async def get(self, job_id: str) -> UploadRow | None:
        return self.rows.get(job_id)

    @contextlib.asynccontextmanager
    async def lease(self, job_id: str) -> AsyncIterator[FakeLease]:
        row = self.rows.get(job_id)
        generation = row.generation + 1 if row else 1
        if row is not None:
            self.rows[job_id] = dataclasses.replace(row, generation=generation)
        holder = self._held.get(job_id)
        if holder is not None:
            holder.taken_over.set()
        if self.busy:
            raise LockBusy(job_id)
        if holder is not None:
            try:
                async with self._released, asyncio.timeout(self.lock_wait):
                    await self._released.wait_for(lambda: job_id not in self._held)
            except TimeoutError:
                raise LockBusy(job_id) from None
        self._held[job_id] = lease = FakeLease(self, job_id, generation)
        try:
            yield lease
        finally:
            del self._held[job_id]
            async with self._released:
                self._released.notify_all()

    async def expired(self, now: datetime, limit: int = 100) -> list[UploadRow]:
        due = [r for r in self.rows.values() if r.state is State.OPEN and r.expires_at < now]
        for row in due[:limit]:
            self.ended(row.job_id, State.EXPIRED, None)
        return [self.rows[r.job_id] for r in due[:limit]]

    async def end(self, job_id: str, state: State) -> bool:
        return self.ended(job_id, state, None)

    def ended(self, job_id: str, state: State, result: str | None) -> bool:
        row = self.rows.get(job_id)
        if row is None or row.state is not State.OPEN:
            return False
        self.rows[job_id] = dataclasses.replace(row, state=state, result=result)
        return True

    async def erase(self, job_id: str) -> None:
        self.tombstones.add(job_id)
        self.rows.pop(job_id, None)

    async def deleted(self, job_id: str) -> bool:
        return job_id in self.tombstones

    async def prune(self, ended_seconds: float, tombstone_seconds: float) -> tuple[int, int]:
        return 0, 0


UNLIMITED = FairUse(
    rate_per_minute=0, burst=1, open_per_client=0, bytes_per_day=0, bytes_in_flight=0
)


class FakeQuota:
    """:class:`gateway.ports.Quota` in memory, with the real rules (``gateway.limits``)
    and a clock of its own (``now``); unlimited unless given rules. A resumable upload
    counts as open until :meth:`ended`."""

    def __init__(self, rules: FairUse = UNLIMITED) -> None:
        self.rules = rules
        self.now = datetime.now(UTC)
        self.tat: dict[str, datetime] = {}
        self.days: dict[str, int] = {}
        # lease id -> (kind, client, bytes, job)
        self.leases: dict[str, tuple[str, str, int, str | None]] = {}

    def usage(self, client: str) -> Usage:
        mine = [lease for lease in self.leases.values() if lease[1] == client]
        return Usage(
            now=self.now,
            rate_tat=self.tat.get(client),
            open_uploads=sum(1 for kind, *_ in mine if kind in ("upload", "resumable")),
            bytes_today=self.days.get(client, 0),
            bytes_in_flight=sum(b for kind, _, b, _ in self.leases.values() if kind != "resumable"),
        )

    def _lease(self, kind: str, client: str, n: int, job: str | None = None) -> str:
        lease_id = str(uuid.uuid4())
        self.leases[lease_id] = (kind, client, n, job)
        return lease_id

    async def admit_upload(
        self,
        client: str,
        size: int | None,
        body_bytes: int | None,
        resumable_job: str | None = None,
    ) -> str:
        usage = self.usage(client)
        refusal = judge_upload(self.rules, usage, size or body_bytes or 0)
        if refusal is not None:
            raise Refused(refusal)
        tat = next_rate_tat(self.rules, usage)
        if tat is not None:
            self.tat[client] = tat
        self.days[client] = self.days.get(client, 0) + (size or body_bytes or 0)
        if resumable_job is not None:
            self._lease("resumable", client, size or 0, resumable_job)
        return self._lease("upload" if resumable_job is None else "append", client, body_bytes or 0)

    async def admit_append(self, job_id: str, client: str, body_bytes: int | None) -> str:
        creator = next((c for k, c, _, j in self.leases.values() if j == job_id), client)
        refusal = judge_bytes(self.rules, self.usage(creator), body_bytes or 0)
        if refusal is not None:
            raise Refused(refusal)
        return self._lease("append", creator, body_bytes or 0)

    async def release(self, lease_id: str, undeclared_bytes: int = 0) -> None:
        lease = self.leases.pop(lease_id, None)
        if lease is not None:
            self.days[lease[1]] = self.days.get(lease[1], 0) + undeclared_bytes

    async def renew(self) -> None:
        pass

    async def forget(self, job_id: str) -> None:
        self.ended(job_id)

    def ended(self, job_id: str) -> None:
        self.leases = {k: v for k, v in self.leases.items() if v[3] != job_id}
