"""What the gateway's rules need from the outside world, as small interfaces.

The ingest logic (:mod:`gateway.ingest`) and the resumable uploads
(:mod:`gateway.resumable`) import only these; :mod:`gateway.adapters` implements them
for Kafka and PostgreSQL, and the unit tests have fakes of them
(``tests/gateway_fakes.py``). An adapter raises only the exceptions named here (and
``servicekit.http.DependencyUnavailable`` for a database outage, docs/architecture.md
§2), so no aiokafka or asyncpg error reaches the rules.
"""

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from contracts import Event

Ack = asyncio.Future[object]
"""Completes when the broker acknowledged the message; fails with :class:`SinkError`
if it could not."""


class SinkError(Exception):
    """Kafka did not take or did not acknowledge a message: the broker is down or did
    not answer in time, or it refused the message."""


@dataclass(frozen=True)
class EventMessage:
    """``event`` on ``topic``, with ``ce_id`` as its idempotency key."""

    topic: str
    event: Event
    ce_id: str


@dataclass(frozen=True)
class ChunkMessage:
    """Chunk ``sequence`` of a job's audio on ``audio.upload`` (at byte ``offset`` of a
    resumable upload)."""

    job_id: str
    sequence: int
    data: bytes
    offset: int | None = None


Message = EventMessage | ChunkMessage


@runtime_checkable
class UploadSink(Protocol):
    """Where an upload goes: the ``audio.upload`` topic (and ``job.status`` for the
    acceptance), keyed by the job id."""

    def available(self) -> bool:
        """False when the broker is known to be down: refuse before reading a body."""
        ...

    async def send(self, *messages: Message) -> list[Ack]:
        """Hand ``messages`` to the producer in this order, with no request to the
        broker going out between them; their acknowledgements. Messages for one
        partition then share a record batch where it has room, which the broker takes
        or refuses whole (docs/architecture.md §5.1). Raises :class:`SinkError` if the
        producer could not take them all; the ones before may have been taken."""
        ...

    async def confirmed(self, ack: Ack) -> None:
        """Wait, bounded, until the broker acknowledged; raise if it could not."""
        ...


class State(StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"
    DELETED = "deleted"
    """Its job was deleted (``job.deleted``): ended, and erased right after."""


@dataclass(frozen=True)
class UploadRecord:
    """What the store records when a resumable upload is created: open, at offset 0."""

    job_id: str
    protocol: str
    token_id: str
    owner: str | None
    filename: str
    length: int | None
    repr_sha256: str | None
    digest: bytes
    """The SHA-256 state (servicekit.digest): of no bytes at creation."""
    expires_at: datetime
    """When the sweep ends it: after the idle expiry, never past its maximum age."""
    created_at: datetime
    """Its maximum age counts from here (docs/architecture.md §12)."""


@dataclass(frozen=True)
class UploadRow(UploadRecord):
    """One resumable upload's durable state (docs/architecture.md §12): as created, and
    how far it got."""

    state: State
    offset: int
    """Bytes Kafka has acknowledged; ``digest`` is the SHA-256 state after them."""
    chunk_count: int
    media_type: str | None
    generation: int
    result: str | None
    """The JSON answer of the completing request, to replay it."""


class LockBusy(Exception):
    """Another append still holds the upload after it was asked to stop."""


class Lease(Protocol):
    """The right to append to one upload, for one generation."""

    job_id: str
    generation: int
    taken_over: asyncio.Event
    """Set when a newer request asked this append to stop."""

    async def advance(
        self, offset: int, chunk_count: int, digest: bytes, media: str | None
    ) -> bool:
        """Store what Kafka acknowledged; False when the upload is no longer open."""
        ...

    async def set_length(self, length: int) -> None:
        """Record the length once it is known (an upload created without it)."""
        ...

    async def touch(self, expires_at: datetime) -> None:
        """Push an open upload's expiry out to ``expires_at`` (never in)."""
        ...

    async def finish(self, state: State, result: str | None) -> bool:
        """End the open upload in ``state``; False when it was not open."""
        ...

    async def row(self) -> UploadRow | None:
        """The upload's state now."""
        ...


class UploadStore(Protocol):
    """The resumable uploads, shared by every gateway replica."""

    async def create(self, upload: UploadRecord) -> None:
        """Record a new open upload at offset 0."""
        ...

    async def get(self, job_id: str) -> UploadRow | None: ...

    def lease(self, job_id: str) -> AbstractAsyncContextManager[Lease]:
        """End any append in progress on ``job_id`` and hold the upload until exit;
        :class:`LockBusy` when the holder does not let go in time. Whatever is done
        under a lease goes through it (its own connection), never back to the store:
        with every pooled connection held by a lease, that would wait for ever."""
        ...

    async def expired(self, now: datetime, limit: int = 100) -> list[UploadRow]:
        """Mark open uploads idle past their expiry as expired; those this call ended."""
        ...

    async def end(self, job_id: str, state: State) -> bool:
        """Cancel from outside an append (DELETE): True when it was open."""
        ...

    async def erase(self, job_id: str) -> None:
        """Its job was deleted: the row goes, a tombstone (the id and when) stays."""
        ...

    async def deleted(self, job_id: str) -> bool:
        """Whether the job has a tombstone."""
        ...

    async def prune(self, ended_seconds: float, tombstone_seconds: float) -> tuple[int, int]:
        """Erase uploads ended longer ago than ``ended_seconds`` and tombstones older than
        ``tombstone_seconds``; how many of each. Safe on several replicas at once."""
        ...


@runtime_checkable
class Quota(Protocol):
    """The fair-use counts every replica shares (docs/architecture.md §6); the rules
    are :mod:`gateway.limits`. Each admission raises ``gateway.limits.Refused`` (a 429)
    or returns the id of a lease on the request's body, which the caller releases once
    the body is over."""

    async def admit_upload(
        self,
        client: str,
        size: int | None,
        body_bytes: int | None,
        resumable_job: str | None = None,
    ) -> str:
        """A new upload of ``size`` bytes (None: not declared) whose request carries
        ``body_bytes`` (Content-Length): one-shot, or the resumable upload
        ``resumable_job``, which then counts as open until it ends."""
        ...

    async def admit_append(self, job_id: str, client: str, body_bytes: int | None) -> str:
        """A body appended to the open resumable upload ``job_id``; counted against the
        client that created it (else ``client``)."""
        ...

    async def release(self, lease_id: str, undeclared_bytes: int = 0) -> None:
        """The body is over (whatever became of it); ``undeclared_bytes`` that came
        without a declared length are charged now. Never raises: a lease not released
        lapses by itself."""
        ...

    async def renew(self) -> None:
        """Keep this replica's leases alive; forget what no longer counts."""
        ...

    async def forget(self, job_id: str) -> None:
        """The job was deleted: its leases go (they name it)."""
        ...
