import asyncio

from aiokafka.errors import KafkaTimeoutError

from contracts import CeType, Event, topics
from gateway.sink import Ack


class FakeSink:
    """Records what would go to Kafka; can be told to fail from the n-th message on."""

    def __init__(self, fail_from: int | None = None, up: bool = True) -> None:
        self.messages: list[tuple[str, str, object]] = []
        self.fail_from = fail_from
        self.up = up

    def available(self) -> bool:
        return self.up

    def _ack(self) -> Ack:
        future: Ack = asyncio.get_running_loop().create_future()
        if self.fail_from is not None and len(self.messages) >= self.fail_from:
            future.set_exception(KafkaTimeoutError())
        else:
            future.set_result(None)
        return future

    async def event(self, topic: str, event: Event, ce_id: str) -> Ack:
        ack = self._ack()
        self.messages.append((topic, ce_id, event))
        return ack

    async def chunk(
        self, job_id: str, sequence: int, data: bytes, offset: int | None = None
    ) -> Ack:
        ack = self._ack()
        self.messages.append((topics.AUDIO_UPLOAD, CeType.UPLOAD_CHUNK, (sequence, data)))
        return ack

    async def confirmed(self, ack: Ack) -> None:
        await ack

    def kinds(self) -> list[str]:
        return [type(m).__name__ if isinstance(m, Event) else "chunk" for _, _, m in self.messages]
