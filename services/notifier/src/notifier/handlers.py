"""The Kafka side: a FastStream batch subscriber on `job.status` feeding the projector.

Messages come in batches (whatever has arrived, up to :data:`MAX_BATCH`) and each batch
is recorded in one transaction, so the projection keeps up with bursts. Offsets are
committed only after the batch is written (``AckPolicy.NACK_ON_ERROR``: ack on success,
seek back on an error so the events come again). Redelivery is harmless: the
projection drops a ``ce_id`` it has already recorded (docs/architecture.md §5.3). Each event's
recording is a span in its job's trace (the batch's own span only links to them).
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap

from contracts import JobStatusChanged, headers, topics
from servicekit.http import DependencyUnavailable
from servicekit.kafka import PoisonMessage, dead_letter, decode_event, raw_body

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)
_PROPAGATOR = get_global_textmap()

Project = Callable[[list[tuple[str, JobStatusChanged]], list[str | None]], Awaitable[object]]
"""Records events (by their ``ce_id``, with their ``traceparent``) durably, in order;
raises when it could not."""

MAX_BATCH = 500

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
        batch=True,
        max_records=MAX_BATCH,
        decoder=raw_body,
        title="notifier:job.status",
        description="Projects every job status change into PostgreSQL and pushes it "
        "to the job's live SSE streams.",
    )
    async def on_job_statuses(message: KafkaMessage) -> None:
        records: tuple[ConsumerRecord[bytes, bytes], ...] = message.raw_message
        events = []
        for record in records:
            record_headers = {k: v.decode(errors="replace") for k, v in record.headers}
            body = record.value or b""
            try:
                events.append((*parse(record_headers, body), record_headers))
            except PoisonMessage as exc:
                await dead_letter(
                    broker, topics.JOB_STATUS, record.key, body, record_headers, str(exc)
                )
        if not events:
            return
        spans = [
            _TRACER.start_span("job.status record", context=_PROPAGATOR.extract(hdrs),
                               attributes={"audiopipe.job_id": event.job_id})
            for _, event, hdrs in events
        ]  # fmt: skip
        try:
            await project(
                [(ce_id, event) for ce_id, event, _ in events],
                [hdrs.get(headers.TRACEPARENT) for _, _, hdrs in events],
            )
        except DependencyUnavailable as exc:
            # Not committed: the batch comes again from its first offset
            # (docs/architecture.md §5.3).
            log.warning("projecting %d events failed (%s); they come again", len(events), exc)
            await asyncio.sleep(RETRY_DELAY_SECONDS)
            raise
        except Exception:
            log.exception("projecting %d events failed; they come again", len(events))
            await asyncio.sleep(RETRY_DELAY_SECONDS)
            raise
        finally:
            for span in spans:
                span.end()
