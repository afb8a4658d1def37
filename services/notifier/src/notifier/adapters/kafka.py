"""The notifier's side of Kafka besides its subscribers: :class:`notifier.ports.DeadLetters`
and :class:`notifier.ports.Deletions`."""

import asyncio

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher import DefaultPublisher

from contracts import CE_TYPE_OF, JobDeleted
from servicekit.http import DependencyUnavailable
from servicekit.kafka import ce_headers, ce_source, dead_letter

SOURCE = ce_source("notifier")


class KafkaDeadLetters:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        await dead_letter(self._broker, topic, key, value, headers, reason)


class KafkaDeletions:
    """Publishes through the broker's declared ``job.deleted`` publisher, so that what
    goes out is what the AsyncAPI document says."""

    def __init__(self, publisher: DefaultPublisher, timeout_seconds: float) -> None:
        self._publisher = publisher
        self._timeout = timeout_seconds

    async def publish(self, event: JobDeleted) -> None:
        message_headers = ce_headers(CE_TYPE_OF[JobDeleted], event.ce_id, SOURCE, event.job_id)
        try:
            # Waits for the broker's acknowledgement (acks=all, idempotent producer).
            await asyncio.wait_for(
                self._publisher.publish(
                    event.model_dump_json().encode(),
                    key=event.job_id.encode(),
                    headers=message_headers,
                ),
                self._timeout,
            )
        except (KafkaError, TimeoutError) as exc:
            raise DependencyUnavailable("kafka", 5, f"{type(exc).__name__}: {exc}") from exc
