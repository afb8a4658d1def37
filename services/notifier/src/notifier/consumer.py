"""The Kafka side: a FastStream subscriber on `job.status` feeding the projector.

Offsets are committed only after the projection is written (``AckPolicy.NACK_ON_ERROR``:
ack on success, seek back on an error so the event comes again). Redelivery is
harmless: the projection drops a ``ce_id`` it has already recorded (DESIGN §5.3).
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts import JobStatusChanged, headers, topics
from servicekit.kafka import PoisonMessage, dead_letter, decode_event, raw_body

log = logging.getLogger(__name__)

Project = Callable[[str, JobStatusChanged], Awaitable[object]]
"""Records one event (by its ``ce_id``) durably; raises when it could not."""

RETRY_DELAY_SECONDS = 1.0
"""Pause before an event whose projection failed (e.g. database down) comes again."""


def parse(message_headers: dict[str, Any], body: bytes) -> tuple[str, JobStatusChanged]:
    """The ``ce_id`` and event of a `job.status` message; PoisonMessage if it has none."""
    event = decode_event(message_headers, body)
    if not isinstance(event, JobStatusChanged):
        raise PoisonMessage(f"{type(event).__name__} does not belong on {topics.JOB_STATUS}")
    ce_id = message_headers.get(headers.ID)
    if not isinstance(ce_id, str) or not ce_id:
        raise PoisonMessage(f"no {headers.ID} header")
    try:
        uuid.UUID(event.job_id)
    except ValueError as exc:
        raise PoisonMessage(f"job_id {event.job_id!r} is not a UUID") from exc
    return ce_id, event


def subscribe(broker: KafkaBroker, project: Project, group_id: str) -> None:
    @broker.subscriber(
        topics.JOB_STATUS,
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=raw_body,
        title="notifier:job.status",
        description="Projects every job status change into PostgreSQL and pushes it "
        "to the job's live SSE streams.",
    )
    async def on_job_status(body: bytes, message: KafkaMessage) -> None:
        try:
            ce_id, event = parse(message.headers, body)
        except PoisonMessage as exc:
            record = message.raw_message
            key = record.key if not isinstance(record, tuple) else None
            await dead_letter(broker, topics.JOB_STATUS, key, body, dict(message.headers), str(exc))
            return
        try:
            await project(ce_id, event)
        except Exception:
            log.exception(
                "projecting %s failed; it comes again", ce_id, extra={"job_id": event.job_id}
            )
            await asyncio.sleep(RETRY_DELAY_SECONDS)
            raise
