"""The uploader's Kafka handlers: ``audio.upload`` (dispatch by ``ce_type``, commit only
what is durable) and ``job.deleted`` (erase the job).

:func:`on_upload` and :func:`on_deleted` are plain functions of the message and the
uploader's dependencies (:class:`Uploads`, :class:`uploader.erasure.Erasure`, provided
by type: ``servicekit.service.Provided``); :mod:`uploader.app` registers them. Both
consumers run on one event loop and share the open jobs: :attr:`Uploads.lock` lets an
erasure drop a job only between two ``audio.upload`` messages, never in the middle of
one.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Annotated, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from contracts import CeType, UploadAborted, UploadFinished, UploadStarted, headers, topics
from servicekit.http import DependencyUnavailable
from servicekit.kafka import (
    CoalescedCommits,
    ConsumerParam,
    MessageParam,
    PoisonMessage,
    decode_event,
    decode_job_deleted,
)
from servicekit.logs import job_id_var
from servicekit.service import Provided
from uploader.assembly import Assembler
from uploader.erasure import Erasure
from uploader.offsets import AppendedSinceAssignment, CommitTracker
from uploader.ports import EventPublisher, JobErased, StorageError

log = logging.getLogger(__name__)

COMMIT_EVERY = 64
"""Besides when a job closes, commit after this many messages, so that the jobs that
finished meanwhile are committed promptly. The committed offset still never passes the
first message of the earliest job not yet finished (offsets.CommitTracker), except that
a checkpointed resumable upload holds only its bytes not yet in a saved part."""


@dataclass
class Uploads:
    """What the handler needs: the rules, the commit bookkeeping, where poison goes."""

    assembler: Assembler
    events: EventPublisher
    tracker: CommitTracker = field(default_factory=CommitTracker)
    appended: AppendedSinceAssignment = field(default_factory=AppendedSinceAssignment)
    commits: CoalescedCommits = field(default_factory=lambda: CoalescedCommits(1.0))
    """The safe offsets, committed together once per interval (a round trip and a write
    to the broker each otherwise), and before a partition is revoked."""
    since_commit: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a message is applied, and by an erasure while it drops a job."""


class Rebalance(ConsumerRebalanceListener):
    """A revoked partition's safe offset is committed, and its open jobs are dropped: its
    next owner redoes them."""

    def __init__(self, uploads: Uploads) -> None:
        self.uploads = uploads

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # What is safe to commit now goes before the partitions do: their next owner
        # replays from there.
        for partition in revoked:
            _commit_soon(self.uploads, None, partition)
        await self.uploads.commits.flush(set(revoked))
        for partition in revoked:
            self.uploads.appended.forget(partition)
            dropped = self.uploads.tracker.forget(partition)
            if dropped:
                log.info(
                    "partition %s revoked; %d open uploads handed over", partition, len(dropped)
                )
            await self.uploads.assembler.drop(dropped)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{p.topic}:{p.partition}" for p in assigned))


async def on_upload(
    message: MessageParam, consumer: ConsumerParam, uploads: Annotated[Uploads, Provided(Uploads)]
) -> None:
    # One record: a single (not batch) subscriber.
    record = cast("ConsumerRecord[bytes, bytes]", message.raw_message)
    partition = TopicPartition(record.topic, record.partition)
    job_id = (record.key or b"").decode(errors="replace")
    job_id_var.set(job_id)
    tracker = uploads.tracker
    # FastStream's in-memory test broker hands over no aiokafka consumer.
    highwater = consumer.highwater(partition) if isinstance(consumer, AIOKafkaConsumer) else None
    fresh = uploads.appended.fresh(partition, record.offset, highwater)
    closing = False
    async with uploads.lock:
        try:
            closing = await _dispatch(
                uploads.assembler, tracker, partition, record, message.headers, fresh=fresh
            )
        except PoisonMessage as exc:
            await uploads.events.dead_letter(
                record.topic, record.key, message.body, message.headers, str(exc)
            )
        except JobErased:
            await uploads.assembler.erased_meanwhile(job_id)
            tracker.closed(partition, job_id)
            closing = True
        except (KafkaError, DependencyUnavailable, OSError):
            # An outage (a publish that timed out may even have been delivered): nothing
            # is decided; the job stays open and uncommitted, and its messages come again
            # after a rebalance (a broker gone long brings one) or a restart.
            raise
        except Exception as exc:
            # A StorageError, or a bug: the job fails `storage_failed`, rather than (a
            # bug) staying open, unanswered and holding its partition's commits until a
            # restart replays it into the same bug. A job not open here has nothing to
            # fail; its message is passed.
            if not isinstance(exc, StorageError):
                log.exception("unexpected error on %s of job %s", record.topic, job_id)
            await uploads.assembler.fail_storage(job_id, exc)
            tracker.closed(partition, job_id)
            closing = True
    tracker.processed(partition, record.offset)
    uploads.since_commit += 1
    if closing or uploads.since_commit >= COMMIT_EVERY:
        uploads.since_commit = 0
        _commit_soon(uploads, consumer, partition)


def _commit_soon(uploads: Uploads, consumer: object, partition: TopicPartition) -> None:
    """Commit ``partition`` at its safe offset with the next flush."""
    offset = uploads.tracker.safe_offset(partition, uploads.assembler.holds())
    if offset is not None:
        uploads.commits.commit_at(consumer, partition, offset)


async def _dispatch(
    assembler: Assembler,
    tracker: CommitTracker,
    partition: TopicPartition,
    record: "ConsumerRecord[bytes, bytes]",
    message_headers: dict[str, str],
    *,
    fresh: bool = False,
) -> bool:
    """Apply one message; True when it closed a job. ``fresh``: the record was appended
    after this consumer was assigned its partition (:class:`AppendedSinceAssignment`)."""
    ce_type = message_headers.get(headers.TYPE)
    if ce_type == CeType.UPLOAD_CHUNK:
        sequence = message_headers.get(headers.SEQUENCE, "")
        if not sequence.isdigit() or record.key is None:
            raise PoisonMessage("chunk without a job key or ce_sequence header")
        offset = message_headers.get(headers.UPLOAD_OFFSET)
        if offset is not None and not offset.isdigit():
            raise PoisonMessage(f"chunk with a bad {headers.UPLOAD_OFFSET} header")
        job_id = record.key.decode()
        known = job_id in assembler.jobs
        await assembler.chunk(
            job_id,
            int(sequence),
            record.value or b"",
            int(offset) if offset is not None else None,
            record.offset,
            record.partition,
        )
        if not known and job_id in assembler.jobs:
            tracker.opened(partition, job_id, record.offset)  # resumed from its checkpoint
        return False
    event = decode_event(message_headers, record.value or b"")
    if isinstance(event, UploadStarted):
        if await assembler.started(event, stored_before=not fresh):
            tracker.opened(partition, event.job_id, record.offset)
        return False
    if isinstance(event, UploadFinished):
        await assembler.finished(event)
    elif isinstance(event, UploadAborted):
        await assembler.aborted(event)
    else:
        raise PoisonMessage(f"{ce_type} does not belong on {topics.AUDIO_UPLOAD}")
    tracker.closed(partition, event.job_id)
    return True


RETRY_PAUSE_SECONDS = 1.0
"""Pause before an erasure that failed comes again, so an outage is not a busy loop."""


async def on_deleted(message: MessageParam, erasure: Annotated[Erasure, Provided(Erasure)]) -> None:
    """Erase the job (:mod:`uploader.erasure`); committed once that is durable (the
    subscriber's ``NACK_ON_ERROR``): an outage raises, and the message comes again."""
    raw = message.raw_message
    topic = raw.topic if not isinstance(raw, tuple) else topics.JOB_DELETED
    try:
        event = decode_job_deleted(message.headers, message.body)
    except PoisonMessage as exc:
        key = raw.key if not isinstance(raw, tuple) else None
        await erasure.events.dead_letter(topic, key, message.body, dict(message.headers), str(exc))
        return
    job_id_var.set(event.job_id)
    try:
        await erasure.erase(event.job_id)
    except (DependencyUnavailable, StorageError) as exc:
        log.warning("erasing the job failed (%s); it comes again", exc)
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
        raise
    except Exception:
        log.exception("erasing the job failed; it comes again")
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
        raise
    log.info("job erased (%s, %s)", event.reason.value, event.erase.value)
