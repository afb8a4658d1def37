"""A consumer whose fetch task ends with an error stops the process (so that its
supervisor restarts it) instead of living on without consuming; a consumer stopped on
purpose does not (servicekit.kafka.stop_if_fetching_ends). Against the real broker."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from servicekit.kafka import ensure_topics, make_broker, stop_if_fetching_ends
from servicekit.settings import ServiceSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def consuming(infra: dict[str, str]) -> AsyncIterator[tuple[KafkaBroker, Any]]:
    """A started broker with one subscriber; the broker and the subscriber's consumer."""
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"fetching-ends-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, 1, [topic])
    broker = make_broker(ServiceSettings(kafka_bootstrap_servers=bootstrap), "test", "a test")

    consumed = asyncio.Event()

    @broker.subscriber(topic, group_id=topic, auto_offset_reset="earliest")
    async def handle(body: bytes) -> None:
        consumed.set()

    await broker.start()
    try:
        # Consuming: its partition assigned, its position known, fetch requests going.
        await broker.publish(b"x", topic)
        async with asyncio.timeout(60):
            await consumed.wait()
        consumer = broker.subscribers[0].consumer  # type: ignore[attr-defined]
        yield broker, consumer
    finally:
        try:
            await broker.stop()
        except ExceptionGroup:
            # A consumer whose fetch task failed raises it again from stop(), before it
            # closes its connections (aiokafka), and FastStream then skips its producer.
            await consumer._client.close()
            await cast(Any, broker).config.disconnect()


async def test_a_fetch_task_ended_by_an_error_stops_the_process(
    consuming: tuple[KafkaBroker, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, consumer = consuming
    stopped = asyncio.Event()
    stop_if_fetching_ends(broker, stopped.set)

    def unexpected(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("an error aiokafka's fetch routine does not expect")

    # The fetch routine's next request meets it, as it met uvloop's (servicekit.compat.aiokafka).
    monkeypatch.setattr(consumer._fetcher._client, "send", unexpected)
    async with asyncio.timeout(30):
        await stopped.wait()
    assert consumer._fetcher.error_future.exception() is not None


async def test_a_consumer_stopped_on_purpose_stops_nothing(
    consuming: tuple[KafkaBroker, Any],
) -> None:
    broker, consumer = consuming
    stopped: list[bool] = []
    stop_if_fetching_ends(broker, lambda: stopped.append(True))
    await broker.stop()
    assert consumer._fetcher.error_future.done()
    await asyncio.sleep(0)  # the done callbacks run on the loop's next turn
    assert stopped == []
