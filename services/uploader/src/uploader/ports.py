"""What the uploader's rules need from the outside world, as small interfaces.

The rules (:mod:`uploader.assembly`, :mod:`uploader.erasure`, :mod:`uploader.sweeper`,
:mod:`uploader.retention`) import only these;
:mod:`uploader.adapters` implements them for S3 and Kafka, and the unit tests have
fakes of them (``tests/fakes.py``). An adapter raises only the exceptions named here,
so no botocore or aiokafka error reaches the rules.
"""

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts import AudioStored, JobDeleted, JobStatusChanged, UploadStarted


class StorageError(Exception):
    """The object store failed (unreachable, refused, or an unexpected answer)."""


class JobErased(StorageError):
    """The job was deleted (``job.deleted``) while this process held it: what it held is
    dropped, nothing of it is stored or announced (docs/architecture.md §8)."""


class ObjectStore(Protocol):
    """Objects in one bucket: multipart uploads, or one request for a one-part file."""

    async def start(self, key: str, content_type: str) -> str:
        """Begin a multipart upload, first aborting any left on ``key``; its upload id."""

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> str:
        """Upload part ``number`` (1-based); its ETag."""

    async def complete(
        self,
        key: str,
        upload_id: str,
        etags: list[str],
        metadata: dict[str, str],
        content_type: str,
    ) -> None:
        """Assemble the parts into the object and record ``metadata`` on it."""

    async def put(
        self, key: str, data: bytes | bytearray, metadata: dict[str, str], content_type: str
    ) -> None:
        """Store ``data`` as the whole object at ``key`` with ``metadata``, in one request."""

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one that is gone already is not an error."""

    async def stored_sha256(self, key: str) -> str | None:
        """The sha256 recorded on a complete object at ``key``, if there is one."""

    async def delete(self, key: str) -> None:
        """Remove the complete object at ``key``; one that is gone already is not an error."""

    async def unfinished(self, prefix: str) -> list[tuple[str, str, datetime]]:
        """Multipart uploads in progress under ``prefix``: (key, upload id, initiated)."""

    async def abort_all(self, key: str) -> int:
        """Abort every multipart upload in progress on exactly ``key``; how many."""

    def stored_before(self, prefix: str, cutoff: datetime) -> AsyncIterator[str]:
        """The keys of complete objects under ``prefix`` last modified before ``cutoff``,
        page by page (the bucket is listed, not loaded whole)."""
        ...


class EventPublisher(Protocol):
    """Where the uploader's own events go; each call returns once Kafka acknowledged it."""

    async def stored(self, event: AudioStored) -> None:
        """``audio.stored``: the job's audio is complete and verified in S3."""

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        """``job.status``, with ``ce_id`` as its idempotency key."""

    async def deleted(self, event: JobDeleted) -> None:
        """``job.deleted``: the audio's retention ended (every subscriber erases it)."""

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        """Park a message that cannot be processed on ``<topic>.dlq`` with the reason."""


@dataclass(frozen=True)
class Checkpoint:
    """What resuming a long-open (resumable) upload needs, once its parts up to ``size``
    bytes are in S3: so the committed Kafka offset can pass the job's older messages."""

    started: UploadStarted
    key: str
    upload_id: str
    etags: list[str]
    size: int
    digest: bytes
    """The SHA-256 state after ``size`` bytes (servicekit.digest)."""
    next_sequence: int


class CheckpointStore(Protocol):
    """Durable checkpoints of open resumable uploads, by job id."""

    async def save(self, checkpoint: Checkpoint) -> bool:
        """Record (or replace) the job's checkpoint; False, recording nothing, when the
        job has a tombstone (it was deleted)."""

    async def load(self, job_id: str) -> Checkpoint | None:
        """The job's checkpoint, if it has one."""

    async def delete(self, job_id: str) -> None:
        """Forget the job's checkpoint (it finished, failed or was aborted)."""

    async def uploads(self) -> dict[str, str]:
        """The multipart upload of every checkpointed job: upload id → job id."""


class Tombstones(Protocol):
    """The ids of deleted jobs and when (no personal data), so that nothing of a deleted
    job is stored again from a message that comes later (docs/architecture.md §8)."""

    async def record(self, job_id: str) -> None:
        """The job is deleted; recording it again changes nothing."""

    async def deleted(self, job_id: str) -> bool:
        """Whether the job has a tombstone."""

    async def prune(self, older_than_seconds: float) -> int:
        """Forget tombstones older than that; how many. Safe on several replicas at once."""


class SweepLock(Protocol):
    """One replica at a time for a sweep that publishes what it finds."""

    def held(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Whether this process got the lock ``name``; held until the block ends (or the
        process dies): a replica that did not get it skips the sweep."""
        ...


class Database(CheckpointStore, Tombstones, SweepLock, Protocol):
    """The uploader's PostgreSQL: checkpoints, tombstones and the sweep lock, in its
    schema."""


class ChunkSource(Protocol):
    """``audio.upload`` again, record by record: where the uploader reads back the part
    of a job it let go to stay within its memory budget (docs/architecture.md §12)."""

    def read(
        self, job_id: str, partition: int, offsets: Sequence[int]
    ) -> AsyncGenerator[bytes, None]:
        """The values of the records at ``offsets`` (ascending) of ``partition``, one by
        one in that order; each must be keyed ``job_id``. :class:`StorageError` when one
        cannot be read (gone with the topic's retention, or Kafka does not answer)."""
        ...
