"""The notifier's side of Kafka besides its subscriber: :class:`notifier.ports.DeadLetters`."""

from faststream.kafka import KafkaBroker

from servicekit.kafka import dead_letter


class KafkaDeadLetters:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        await dead_letter(self._broker, topic, key, value, headers, reason)
