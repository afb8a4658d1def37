"""servicekit.kafka.CoalescedCommits against the real broker: only handled records are
committed, several at once after the interval; a rebalance and the stop commit what is
pending at once."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from servicekit.kafka import CoalescedCommits, bootstrap_list
from tests.support.kafka import committed_offset
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def topic(infra) -> str:
    """A new one-partition topic holding three records."""
    name = f"commits-{uuid.uuid4().hex[:8]}"
    bootstrap = bootstrap_list(infra["KAFKA_BOOTSTRAP_SERVERS"])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(name, f"record {n}".encode(), partition=0)
    finally:
        await producer.stop()
    return name


async def member(
    bootstrap: str, group: str, topic: str, commits: CoalescedCommits | None = None
) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_list(bootstrap),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    consumer.subscribe([topic], listener=commits)
    return consumer


async def records_of(consumer: AIOKafkaConsumer, count: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < count:
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            got += batch
    return got


def handled(commits: CoalescedCommits, consumer: AIOKafkaConsumer, records: list[Any]) -> None:
    commits.handled(SimpleNamespace(raw_message=tuple(records), consumer=consumer))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(commits: CoalescedCommits) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(commits.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_only_handled_records_are_committed_after_the_interval(infra, topic) -> None:
    bootstrap, group = infra["KAFKA_BOOTSTRAP_SERVERS"], f"g-{uuid.uuid4().hex[:8]}"
    partition = TopicPartition(topic, 0)
    commits = CoalescedCommits(0.2)
    consumer = await member(bootstrap, group, topic, commits)
    try:
        async with running(commits):
            first, second, _third = await records_of(consumer, 3)
            handled(commits, consumer, [first])
            handled(commits, consumer, [second])  # the third is not done
            committed = await eventually(
                lambda: committed_offset(bootstrap, group, partition), what="a commit"
            )
            assert committed == second.offset + 1
    finally:
        await consumer.stop()


async def test_a_rebalance_commits_what_is_pending_before_the_partition_goes(infra, topic) -> None:
    bootstrap, group = infra["KAFKA_BOOTSTRAP_SERVERS"], f"g-{uuid.uuid4().hex[:8]}"
    partition = TopicPartition(topic, 0)
    commits = CoalescedCommits(3600)  # the interval would never come in this test
    consumer = await member(bootstrap, group, topic, commits)
    other = None
    try:
        async with running(commits):
            records = await records_of(consumer, 3)
            handled(commits, consumer, records)
            assert await committed_offset(bootstrap, group, partition) is None
            polling = asyncio.create_task(records_of(consumer, 1))  # a member keeps polling
            other = await member(bootstrap, group, topic)  # joining makes the group rebalance
            committed = await eventually(
                lambda: committed_offset(bootstrap, group, partition),
                what="the commit of the revoked partition",
            )
            assert committed == records[-1].offset + 1
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
    finally:
        await consumer.stop()
        if other is not None:
            await other.stop()


async def test_the_stop_commits_what_is_pending(infra, topic) -> None:
    bootstrap, group = infra["KAFKA_BOOTSTRAP_SERVERS"], f"g-{uuid.uuid4().hex[:8]}"
    partition = TopicPartition(topic, 0)
    commits = CoalescedCommits(3600)
    consumer = await member(bootstrap, group, topic, commits)
    try:
        async with running(commits):
            records = await records_of(consumer, 3)
            handled(commits, consumer, records)
            assert await committed_offset(bootstrap, group, partition) is None
        # run() was cancelled, as the service's stop does before the broker's.
        assert await committed_offset(bootstrap, group, partition) == records[-1].offset + 1
    finally:
        await consumer.stop()


async def test_an_offset_given_by_the_consumer_replaces_the_one_pending(infra, topic) -> None:
    # The uploader's way: the offset it knows to be safe (its earliest unfinished job),
    # below the records it has handled.
    bootstrap, group = infra["KAFKA_BOOTSTRAP_SERVERS"], f"g-{uuid.uuid4().hex[:8]}"
    partition = TopicPartition(topic, 0)
    commits = CoalescedCommits(3600)
    consumer = await member(bootstrap, group, topic, commits)
    try:
        records = await records_of(consumer, 3)
        handled(commits, consumer, records)
        commits.commit_at(consumer, partition, records[1].offset)
        assert commits.pending == {partition: records[1].offset}
        await commits.flush()
        assert await committed_offset(bootstrap, group, partition) == records[1].offset
        assert commits.pending == {}
    finally:
        await consumer.stop()


class HangingConsumer(AIOKafkaConsumer):
    """A member whose commit never answers (aiokafka waiting for a group coordinator
    after a broker restart)."""

    def __init__(self, partition: TopicPartition) -> None:  # never started
        self.partition = partition

    def __del__(self, _warn: Any = None) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return {self.partition}

    async def commit(self, offsets: Any = None) -> None:
        await asyncio.Event().wait()


async def test_a_commit_that_does_not_answer_is_given_up_and_kept_for_the_next() -> None:
    partition = TopicPartition("t", 0)
    commits = CoalescedCommits(3600, timeout=0.05)
    commits.commit_at(HangingConsumer(partition), partition, 7)
    await commits.flush()  # returns: bounded by the timeout
    assert commits.pending == {partition: 7}
