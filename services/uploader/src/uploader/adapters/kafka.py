"""The uploader's events on Kafka: :class:`uploader.ports.EventPublisher` for a broker."""

from faststream.kafka import KafkaBroker

from contracts import AudioStored, JobDeleted, JobStatusChanged, topics
from servicekit.kafka import ce_source, dead_letter, publish_event

SOURCE = ce_source("uploader")


class KafkaEventPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def stored(self, event: AudioStored) -> None:
        await publish_event(
            self._broker, topics.AUDIO_STORED, event, source=SOURCE, ce_id=f"{event.job_id}:stored"
        )

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        await publish_event(self._broker, topics.JOB_STATUS, event, source=SOURCE, ce_id=ce_id)

    async def deleted(self, event: JobDeleted) -> None:
        await publish_event(
            self._broker, topics.JOB_DELETED, event, source=SOURCE, ce_id=event.ce_id
        )

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        await dead_letter(self._broker, topic, key, value, headers, reason)
