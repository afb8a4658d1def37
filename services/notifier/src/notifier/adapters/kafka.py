"""The notifier's side of Kafka besides its subscribers: :class:`notifier.ports.Deletions`
(its dead letters are ``servicekit.kafka.DeadLetters``).

The topic it writes is a publisher declared here, on the service's broker, and sent
through: the AsyncAPI document (``make docs``) lists exactly what goes out."""

import asyncio

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from contracts import CE_TYPE_OF, JobDeleted, topics
from servicekit.http import DependencyUnavailable
from servicekit.kafka import ce_headers, ce_source

SOURCE = ce_source("notifier")


class KafkaDeletions:
    """Publishes ``job.deleted``, waiting at most ``timeout_seconds`` for the broker's
    acknowledgement."""

    def __init__(self, broker: KafkaBroker, timeout_seconds: float) -> None:
        self._publisher = broker.publisher(
            topics.JOB_DELETED,
            title="job.deleted",
            description="A job to erase everywhere: asked for by its holder or owner "
            "(DELETE /jobs/{job_id}), or past the state's retention; keyed by job id.",
            schema=JobDeleted,
        )
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
