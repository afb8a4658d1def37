"""Kafka helpers for tests on the shared broker."""

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker

from contracts import CE_TYPE_OF, Event
from servicekit.kafka import ce_headers


async def publish_event(
    broker: KafkaBroker, topic: str, event: Event, *, source: str, ce_id: str
) -> RecordMetadata | None:
    """Put ``event`` on ``topic`` as a service would (keyed by its job, CloudEvents
    headers), from a test's own broker: a producer that is not a service, so it declares
    no publisher (``servicekit.kafka.publish_event`` is the services' way). Where the
    broker put it; nothing under FastStream's in-memory ``TestKafkaBroker``."""
    result = await broker.publish(
        event.model_dump_json().encode(),
        topic,
        key=event.job_id.encode(),
        headers=ce_headers(CE_TYPE_OF[type(event)], ce_id, source, event.job_id),
    )
    return result if isinstance(result, RecordMetadata) else None


async def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions; none when it does not exist (yet)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        described = await consumer.topics()  # refreshes the metadata for every topic
        if topic not in described:
            return []
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            return [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
        finally:
            await producer.stop()
    finally:
        await consumer.stop()


async def start_group_at_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the current end of ``topic`` for a new group, so it consumes only what
    comes next but still resumes from its commits after a crash."""
    partitions = await partitions_of(bootstrap, topic)
    if not partitions:  # a new topic: the group starts at its (empty) beginning anyway
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


async def committed_offset(bootstrap: str, group: str, partition: TopicPartition) -> int | None:
    """The offset ``group`` has committed on ``partition`` (the next one it will read),
    read without joining the group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        committed: int | None = await consumer.committed(partition)
        return committed
    finally:
        await consumer.stop()


async def end_offset(bootstrap: str, partition: TopicPartition) -> int:
    """The offset the next record appended to ``partition`` will get."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets([partition])
        return ends[partition]
    finally:
        await consumer.stop()


async def topic_ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The offset the next record appended to each partition of ``topic`` will get;
    empty when the topic does not exist (yet)."""
    partitions = await partitions_of(bootstrap, topic)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning to its current end."""
    partitions = await partitions_of(bootstrap, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                records.extend(messages)
        return records
    finally:
        await consumer.stop()
