"""The ``audio.upload`` subscriber: dispatch by ``ce_type``, commit only what is durable."""

import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from botocore.exceptions import BotoCoreError, ClientError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer, KafkaMessage
from faststream.middlewares import AckPolicy

from contracts import CeType, UploadAborted, UploadFinished, UploadStarted, headers, topics
from servicekit.kafka import PoisonMessage, dead_letter, decode_event, raw_body
from servicekit.logs import job_id_var
from uploader.assembly import Assembler
from uploader.offsets import CommitTracker

log = logging.getLogger(__name__)

COMMIT_EVERY = 64
"""Besides when a job closes, commit after this many messages, so that the jobs that
finished meanwhile are committed promptly. The committed offset still never passes the
first message of the earliest job not yet finished (offsets.CommitTracker): a long open
upload holds it back, and a crash replays from there."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assembler: Assembler, tracker: CommitTracker) -> None:
        self.assembler = assembler
        self.tracker = tracker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for partition in revoked:
            dropped = self.tracker.forget(partition)
            if dropped:
                log.info(
                    "partition %s revoked; %d open uploads handed over", partition, len(dropped)
                )
            await self.assembler.drop(dropped)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{p.topic}:{p.partition}" for p in assigned))


def register(broker: KafkaBroker, assembler: Assembler, group_id: str) -> None:
    tracker = CommitTracker()
    since_commit = 0

    @broker.subscriber(
        topics.AUDIO_UPLOAD,
        group_id=group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        # Prefetched records count against memory too: a couple of chunks per partition
        # and a small total, instead of aiokafka's 1 MiB per partition and 50 MiB total.
        max_partition_fetch_bytes=2 * 1024 * 1024,
        fetch_max_bytes=8 * 1024 * 1024,
        listener=_Rebalance(assembler, tracker),
        decoder=raw_body,
        title="audio.upload",
        description="Reassembles uploads into S3 objects.",
    )
    async def on_upload(message: KafkaMessage, consumer: Consumer) -> None:
        nonlocal since_commit
        record: ConsumerRecord[bytes, bytes] = message.raw_message
        partition = TopicPartition(record.topic, record.partition)
        job_id = (record.key or b"").decode(errors="replace")
        job_id_var.set(job_id)
        closing = False
        try:
            closing = await _dispatch(assembler, tracker, partition, record, message.headers)
        except PoisonMessage as exc:
            await dead_letter(
                broker, record.topic, record.key, message.body, message.headers, str(exc)
            )
        except (ClientError, BotoCoreError) as exc:
            await assembler.fail_storage(job_id, exc)
            tracker.closed(partition, job_id)
            closing = True
        tracker.processed(partition, record.offset)
        since_commit += 1
        if closing or since_commit >= COMMIT_EVERY:
            since_commit = 0
            await _commit(consumer, partition, tracker)


async def _dispatch(
    assembler: Assembler,
    tracker: CommitTracker,
    partition: TopicPartition,
    record: "ConsumerRecord[bytes, bytes]",
    message_headers: dict[str, str],
) -> bool:
    """Apply one message; True when it closed a job."""
    ce_type = message_headers.get(headers.TYPE)
    if ce_type == CeType.UPLOAD_CHUNK:
        sequence = message_headers.get(headers.SEQUENCE, "")
        if not sequence.isdigit() or record.key is None:
            raise PoisonMessage("chunk without a job key or ce_sequence header")
        await assembler.chunk(record.key.decode(), int(sequence), record.value or b"")
        return False
    event = decode_event(message_headers, record.value or b"")
    if isinstance(event, UploadStarted):
        if await assembler.started(event):
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


async def _commit(
    consumer: AIOKafkaConsumer, partition: TopicPartition, tracker: CommitTracker
) -> None:
    offset = tracker.safe_offset(partition)
    if offset is not None:
        await consumer.commit({partition: offset})
