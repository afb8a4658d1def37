"""The bridge's events on Kafka: :class:`analyzer_bridge.ports.EventPublisher` for a
broker. Every failure to publish leaves as :class:`~analyzer_bridge.ports.PublishError`.

Each topic it writes is a publisher declared here, on the service's broker, and sent
through: the AsyncAPI document (``make docs``) lists exactly what goes out."""

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from faststream.kafka import KafkaBroker

from analyzer_bridge.ports import PublishError
from contracts import AnalysisCompleted, AnalysisFailed, JobStatusChanged
from servicekit.kafka import DeadLetters, ce_source, publish_event

SOURCE = ce_source("analyzer-bridge")


@asynccontextmanager
async def _publish_errors() -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:  # aiokafka's errors, timeouts, a broker not connected
        raise PublishError(f"{type(exc).__name__}: {exc}") from exc


class KafkaEventPublisher:
    """Publishes on ``result_topic`` and ``status_topic``; dead-letters messages of the
    ``consumed`` topics."""

    def __init__(
        self, broker: KafkaBroker, result_topic: str, status_topic: str, consumed: Iterable[str]
    ) -> None:
        self._result = broker.publisher(
            result_topic,
            title=f"{result_topic}:analyzer-bridge",
            description="The analysis server's final answer for a job.",
            schema=AnalysisCompleted | AnalysisFailed,
        )
        self._status = broker.publisher(
            status_topic,
            title=f"{status_topic}:analyzer-bridge",
            description="`analyzing` progress and the final `completed` or `failed`.",
            schema=JobStatusChanged,
        )
        self._dead_letters = DeadLetters(broker, consumed)

    async def result(self, event: AnalysisCompleted | AnalysisFailed, ce_id: str) -> None:
        async with _publish_errors():
            await publish_event(self._result, event, source=SOURCE, ce_id=ce_id)

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        async with _publish_errors():
            await publish_event(self._status, event, source=SOURCE, ce_id=ce_id)

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        async with _publish_errors():
            await self._dead_letters.dead_letter(topic, key, value, headers, reason)
