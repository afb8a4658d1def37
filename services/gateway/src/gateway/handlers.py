"""The gateway's one Kafka handler: ``job.deleted`` ends and erases the job's resumable
upload (:meth:`gateway.resumable.uploads.Resumable.erase`, docs/architecture.md §8).

:func:`on_deleted` is a plain function of the message and the gateway's dependencies
(:class:`Erasures`, provided by type: ``servicekit.service.Provided``);
:mod:`gateway.app` registers it with ``NACK_ON_ERROR``: the offset is committed once the
erasure is written, and an outage (the database, Kafka) makes the message come again.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated

from contracts import Erase, topics
from gateway.ports import SinkError
from gateway.resumable.uploads import Resumable
from servicekit.http import DependencyUnavailable
from servicekit.kafka import DeadLetters, MessageParam, PoisonMessage, decode_job_deleted
from servicekit.logs import job_id_var
from servicekit.service import Provided

log = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0
"""Pause before an erasure that failed comes again, so an outage is not a busy loop."""


@dataclass
class Erasures:
    resumable: Resumable
    dead_letters: DeadLetters
    """Where poison goes (``job.deleted.dlq``)."""
    retry_pause_seconds: float = RETRY_PAUSE_SECONDS


async def on_deleted(
    message: MessageParam, erasures: Annotated[Erasures, Provided(Erasures)]
) -> None:
    raw = message.raw_message
    topic = raw.topic if not isinstance(raw, tuple) else topics.JOB_DELETED
    try:
        event = decode_job_deleted(message.headers, message.body)
    except PoisonMessage as exc:
        key = raw.key if not isinstance(raw, tuple) else None
        await erasures.dead_letters.dead_letter(
            topic, key, message.body, dict(message.headers), str(exc)
        )
        return
    job_id_var.set(event.job_id)
    if event.erase is not Erase.JOB:
        return  # the recording only: the gateway keeps none (audio.upload's retention does)
    try:
        await erasures.resumable.erase(event.job_id)
    except (DependencyUnavailable, SinkError, TimeoutError) as exc:
        log.warning("erasing the job's upload failed (%s); it comes again", exc)
        await asyncio.sleep(erasures.retry_pause_seconds)
        raise
    except Exception:
        log.exception("erasing the job's upload failed; it comes again")
        await asyncio.sleep(erasures.retry_pause_seconds)
        raise
    log.info("job erased (%s)", event.reason.value)
