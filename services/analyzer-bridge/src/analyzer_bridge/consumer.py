"""The ``audio.stored`` subscriber: record the job, then request its analysis.

The offset is committed after the handler returns (explicit ack policy), i.e. after
the ``pending`` row is committed in PostgreSQL; that row, not the HTTP request, is the
durable effect. A redelivered event finds the row and requests nothing new.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from analyzer_bridge.requests import Requester
from analyzer_bridge.store import Store
from contracts import AudioStored
from servicekit.http import DependencyUnavailable
from servicekit.kafka import PoisonMessage, dead_letter, decode_event, raw_body
from servicekit.logs import job_id_var

log = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0
"""Pause before a failed message is redelivered, so a database outage is not a busy loop."""


async def accept(store: Store, requester: Requester, event: AudioStored, deadline: float) -> None:
    if await store.insert_pending(event, deadline):
        log.info("analysis pending", extra={"job_id": event.job_id})
    # Also for a redelivery: the request is a no-op unless the row is still pending
    # and nobody holds it (e.g. this process crashed before requesting).
    requester.submit(event.job_id)


def register(
    broker: KafkaBroker,
    *,
    topic: str,
    group_id: str,
    auto_offset_reset: str,
    on_event: Callable[[AudioStored], Awaitable[None]],
) -> None:
    @broker.subscriber(
        topic,
        group_id=group_id,
        # Commit after the handler; on an exception rewind so the message comes again.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="latest" if auto_offset_reset == "latest" else "earliest",
        decoder=raw_body,
        title=f"{topic}:analyzer-bridge",
        description="Audio durably stored in S3: request its analysis.",
    )
    async def on_audio_stored(message: KafkaMessage) -> None:
        try:
            event = decode_event(message.headers, message.body)
            if not isinstance(event, AudioStored):
                raise PoisonMessage(f"unexpected {type(event).__name__} on {topic}")
        except PoisonMessage as exc:
            raw = message.raw_message
            key = raw.key if not isinstance(raw, tuple) else None
            await dead_letter(broker, topic, key, message.body, dict(message.headers), str(exc))
            return
        job_id_var.set(event.job_id)
        try:
            await on_event(event)
        except DependencyUnavailable as exc:
            # Not committed: it comes again, from this offset, once the database is back.
            log.warning("could not record the job (%s); it will be redelivered", exc)
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            raise
        except Exception:
            log.exception("could not record the job; it will be redelivered")
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            raise
