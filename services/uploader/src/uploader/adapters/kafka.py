"""The uploader's events on Kafka: :class:`uploader.ports.EventPublisher` for a broker.

Each topic it writes is a publisher declared here, on the service's broker, and sent
through: the AsyncAPI document (``make docs``) lists exactly what goes out."""

from faststream.kafka import KafkaBroker

from contracts import AudioStored, JobDeleted, JobStatusChanged, topics
from servicekit.kafka import DeadLetters, ce_source, publish_event

SOURCE = ce_source("uploader")


class KafkaEventPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._stored = broker.publisher(
            topics.AUDIO_STORED, schema=AudioStored, description="Audio is in S3."
        )
        self._status = broker.publisher(
            topics.JOB_STATUS,
            schema=JobStatusChanged,
            description="`uploading`, `uploaded`, `failed`.",
        )
        self._deleted = broker.publisher(
            topics.JOB_DELETED,
            title="job.deleted",
            schema=JobDeleted,
            description="The audio's retention: a recording stored longer than "
            "AUDIO_RETENTION_SECONDS ago is erased (reason `retention`, erase `audio`).",
        )
        self._dead_letters = DeadLetters(broker, (topics.AUDIO_UPLOAD, topics.JOB_DELETED))

    async def stored(self, event: AudioStored) -> None:
        await publish_event(self._stored, event, source=SOURCE, ce_id=f"{event.job_id}:stored")

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        await publish_event(self._status, event, source=SOURCE, ce_id=ce_id)

    async def deleted(self, event: JobDeleted) -> None:
        await publish_event(self._deleted, event, source=SOURCE, ce_id=event.ce_id)

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        await self._dead_letters.dead_letter(topic, key, value, headers, reason)
