from faststream.kafka import KafkaBroker

from contracts import AudioStored, JobStatusChanged, topics
from servicekit.kafka import publish_event

SOURCE = "/services/uploader"


class KafkaOutbox:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def stored(self, event: AudioStored) -> None:
        await publish_event(
            self._broker, topics.AUDIO_STORED, event, source=SOURCE, ce_id=f"{event.job_id}:stored"
        )

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        await publish_event(self._broker, topics.JOB_STATUS, event, source=SOURCE, ce_id=ce_id)
