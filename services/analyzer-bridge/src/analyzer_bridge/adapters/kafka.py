"""The bridge's events on Kafka: :class:`analyzer_bridge.ports.EventPublisher` for a
broker. Every failure to publish leaves as :class:`~analyzer_bridge.ports.PublishError`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.kafka import KafkaBroker

from analyzer_bridge.ports import PublishError
from contracts import AnalysisCompleted, AnalysisFailed, Event, JobStatusChanged
from servicekit.kafka import ce_source, dead_letter, publish_event

SOURCE = ce_source("analyzer-bridge")


@asynccontextmanager
async def _publish_errors() -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:  # aiokafka's errors, timeouts, a broker not connected
        raise PublishError(f"{type(exc).__name__}: {exc}") from exc


class KafkaEventPublisher:
    def __init__(self, broker: KafkaBroker, result_topic: str, status_topic: str) -> None:
        self._broker = broker
        self._result_topic = result_topic
        self._status_topic = status_topic

    async def result(self, event: AnalysisCompleted | AnalysisFailed, ce_id: str) -> None:
        await self._publish(self._result_topic, event, ce_id)

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        await self._publish(self._status_topic, event, ce_id)

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        async with _publish_errors():
            await dead_letter(self._broker, topic, key, value, headers, reason)

    async def _publish(self, topic: str, event: Event, ce_id: str) -> None:
        async with _publish_errors():
            await publish_event(self._broker, topic, event, source=SOURCE, ce_id=ce_id)
