"""The notifier's Kafka handlers: batches of `job.status` changes into the projection,
and batches of `job.deleted` erasures out of it.

:func:`on_job_statuses` and :func:`on_jobs_deleted` are plain functions of the message
and the notifier's dependencies (:class:`Statuses`, :class:`Erasures`, provided by type:
``servicekit.service.Provided``); :mod:`notifier.app` registers them as batch subscribers.

Messages come in batches (whatever has arrived, up to :data:`MAX_BATCH`) and each batch
is recorded in one transaction, so the projection keeps up with bursts. Offsets are
committed only after the batch is written: a `job.status` batch that fails is sought
back so its events come again; one written is handed to
:class:`servicekit.kafka.CoalescedCommits`, which commits the handled offsets of many
batches at once (at this rate a batch holds about one event, and each commit is a round
trip and a write to the broker). `job.deleted` batches are rare and committed each
(``AckPolicy.NACK_ON_ERROR``). Redelivery is harmless: the projection drops a ``ce_id``
it has already recorded (docs/architecture.md §5.3). Each event's recording is a span in
its job's trace (the batch's own span only links to them).
"""

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

from aiokafka.structs import ConsumerRecord
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap

from contracts import Erase, JobDeleted, JobStatusChanged, headers, topics
from notifier.ports import DeadLetters, Lifecycle
from notifier.projector import Projector
from servicekit.http import DependencyUnavailable
from servicekit.kafka import (
    CoalescedCommits,
    MessageParam,
    PoisonMessage,
    decode_event,
    decode_job_deleted,
)
from servicekit.service import Provided

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer(__name__)
_PROPAGATOR = get_global_textmap()

MAX_BATCH = 500
"""Most records in one batch (the subscriber's ``max_records``)."""

RETRY_DELAY_SECONDS = 1.0
"""Pause before an event whose projection failed (e.g. database down) comes again."""


@dataclass
class Statuses:
    """What the handler needs: the projection's writer, where poison goes, and the
    commits of the batches it wrote."""

    projector: Projector
    dead_letters: DeadLetters
    commits: CoalescedCommits = field(default_factory=lambda: CoalescedCommits(1.0))
    retry_delay_seconds: float = RETRY_DELAY_SECONDS


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


async def on_job_statuses(
    message: MessageParam, statuses: Annotated[Statuses, Provided(Statuses)]
) -> None:
    # Committed with the next flush; on an error the batch comes again from its first
    # offset (§5.3).
    async with statuses.commits.handling(message):
        await _project(message, statuses)


async def _project(message: MessageParam, statuses: Statuses) -> None:
    # A batch subscriber: a tuple of records.
    records = cast("tuple[ConsumerRecord[bytes, bytes], ...]", message.raw_message)
    events = []
    for record in records:
        record_headers = {k: v.decode(errors="replace") for k, v in record.headers}
        body = record.value or b""
        try:
            events.append((*parse(record_headers, body), record_headers))
        except PoisonMessage as exc:
            await statuses.dead_letters.dead_letter(
                topics.JOB_STATUS, record.key, body, record_headers, str(exc)
            )
    if not events:
        return
    spans = [
        _TRACER.start_span(
            "job.status record",
            context=_PROPAGATOR.extract(hdrs),
            attributes={"audiopipe.job_id": event.job_id},
        )
        for _, event, hdrs in events
    ]
    try:
        await statuses.projector.handle(
            [(ce_id, event) for ce_id, event, _ in events],
            [hdrs.get(headers.TRACEPARENT) for _, _, hdrs in events],
        )
    except DependencyUnavailable as exc:
        log.warning("projecting %d events failed (%s); they come again", len(events), exc)
        await asyncio.sleep(statuses.retry_delay_seconds)
        raise
    except Exception:
        log.exception("projecting %d events failed; they come again", len(events))
        await asyncio.sleep(statuses.retry_delay_seconds)
        raise
    finally:
        for span in spans:
            span.end()


# --- job.deleted -------------------------------------------------------------------


@dataclass
class Erasures:
    """What the `job.deleted` handler needs: where the jobs are erased, where poison
    goes."""

    lifecycle: Lifecycle
    dead_letters: DeadLetters
    retry_delay_seconds: float = RETRY_DELAY_SECONDS


async def on_jobs_deleted(
    message: MessageParam, erasures: Annotated[Erasures, Provided(Erasures)]
) -> None:
    """Erase each deleted job's state and history, leaving its tombstone, in one
    transaction per batch; committed only once that is durable (docs/architecture.md
    §8). Erasing again is harmless, so a redelivered batch is too. An ``audio``
    erasure asks for the recording only, of which the notifier holds nothing."""
    records = cast("tuple[ConsumerRecord[bytes, bytes], ...]", message.raw_message)
    deleted: list[JobDeleted] = []
    for record in records:
        record_headers = {k: v.decode(errors="replace") for k, v in record.headers}
        body = record.value or b""
        try:
            deleted.append(decode_job_deleted(record_headers, body))
        except PoisonMessage as exc:
            await erasures.dead_letters.dead_letter(
                topics.JOB_DELETED, record.key, body, record_headers, str(exc)
            )
    jobs = [event for event in deleted if event.erase is Erase.JOB]
    if not jobs:
        return
    try:
        await erasures.lifecycle.erase([event.job_id for event in jobs])
    except DependencyUnavailable as exc:
        log.warning("erasing %d jobs failed (%s); they come again", len(jobs), exc)
        await asyncio.sleep(erasures.retry_delay_seconds)
        raise
    except Exception:
        log.exception("erasing %d jobs failed; they come again", len(jobs))
        await asyncio.sleep(erasures.retry_delay_seconds)
        raise
    for event in jobs:
        log.info(
            "job %s erased (%s)", event.job_id, event.reason.value, extra={"job_id": event.job_id}
        )
