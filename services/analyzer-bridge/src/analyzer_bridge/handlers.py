"""The bridge's Kafka handlers: ``audio.stored`` (record the job, then request its
analysis) and ``job.deleted`` (abandon and erase it).

:func:`on_audio_stored` and :func:`on_deleted` are plain functions of the message and
the bridge's dependencies (:class:`Intake`, provided by type:
``servicekit.service.Provided``); :mod:`analyzer_bridge.app` registers them with an
explicit ack policy: an offset is committed only after its handler returned, i.e. after
the ``pending`` row (or the erasure) is committed in PostgreSQL; ``audio.stored``'s
offsets are committed together once a second (``servicekit.kafka.CoalescedCommits``,
``KAFKA_COMMIT_INTERVAL_SECONDS``). That row, not the HTTP request, is the durable
effect; a redelivered event finds it and requests nothing new (docs/architecture.md
§5.3), and finds the tombstone of a deleted job and records nothing (§8).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Annotated

from analyzer_bridge import lifecycle
from analyzer_bridge.ports import AnalysisStore, DependencyUnavailable, EventPublisher
from analyzer_bridge.requesting import Requester
from contracts import AudioStored, Erase
from servicekit.kafka import (
    CoalescedCommits,
    MessageParam,
    PoisonMessage,
    decode_event,
    decode_job_deleted,
)
from servicekit.logs import job_id_var
from servicekit.service import Provided

log = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0
"""Pause before a failed message is redelivered, so a database outage is not a busy loop."""


@dataclass
class Intake:
    """What the handler needs: where jobs are recorded, who requests them, where
    poison goes, and each job's deadline."""

    store: AnalysisStore
    requester: Requester
    events: EventPublisher
    deadline_seconds: float
    commits: CoalescedCommits = field(default_factory=lambda: CoalescedCommits(1.0))
    retry_pause_seconds: float = RETRY_PAUSE_SECONDS


async def on_audio_stored(
    message: MessageParam, intake: Annotated[Intake, Provided(Intake)]
) -> None:
    # Committed with the next flush; on an error it comes again, from this offset.
    async with intake.commits.handling(message):
        await _intake(message, intake)


async def _intake(message: MessageParam, intake: Intake) -> None:
    raw = message.raw_message
    topic = raw.topic if not isinstance(raw, tuple) else ""
    try:
        event = decode_event(message.headers, message.body)
        if not isinstance(event, AudioStored):
            raise PoisonMessage(f"unexpected {type(event).__name__} on {topic}")
    except PoisonMessage as exc:
        key = raw.key if not isinstance(raw, tuple) else None
        await intake.events.dead_letter(topic, key, message.body, dict(message.headers), str(exc))
        return
    job_id_var.set(event.job_id)
    try:
        await accept(intake, event)
    except DependencyUnavailable as exc:
        # Not committed: it comes again, from this offset, once the database is back.
        log.warning("could not record the job (%s); it will be redelivered", exc)
        await asyncio.sleep(intake.retry_pause_seconds)
        raise
    except Exception:
        log.exception("could not record the job; it will be redelivered")
        await asyncio.sleep(intake.retry_pause_seconds)
        raise


async def on_deleted(message: MessageParam, intake: Annotated[Intake, Provided(Intake)]) -> None:
    raw = message.raw_message
    topic = raw.topic if not isinstance(raw, tuple) else ""
    try:
        event = decode_job_deleted(message.headers, message.body)
    except PoisonMessage as exc:
        key = raw.key if not isinstance(raw, tuple) else None
        await intake.events.dead_letter(topic, key, message.body, dict(message.headers), str(exc))
        return
    job_id_var.set(event.job_id)
    if event.erase is not Erase.JOB:
        return  # the recording only: the bridge holds no copy of it
    try:
        await lifecycle.erase(intake.store, intake.requester, event.job_id)
    except Exception:
        # Not committed: it comes again, from this offset.
        log.warning("could not erase the job; it will be redelivered", exc_info=True)
        await asyncio.sleep(intake.retry_pause_seconds)
        raise
    log.info("analysis erased (%s)", event.reason.value)


async def accept(intake: Intake, event: AudioStored) -> None:
    requester = intake.requester
    # Recorded already leased to this process for its first attempt.
    recorded = await intake.store.insert_pending(
        event, intake.deadline_seconds, owner=requester.owner, lease_seconds=requester.lease_seconds
    )
    if recorded is not None:
        log.info("analysis pending", extra={"job_id": event.job_id})
        requester.submit(event.job_id, recorded)
        return
    if await intake.store.deleted(event.job_id):
        log.info("audio of a deleted job; nothing to analyse", extra={"job_id": event.job_id})
        return
    # Also for a redelivery: the request is a no-op unless the row is still pending
    # and nobody holds it (e.g. this process crashed before requesting).
    requester.submit(event.job_id)
