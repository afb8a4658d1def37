"""Where an upload goes: the ``audio.upload`` topic (and ``job.status`` for the
acceptance). An interface so that the ingest logic is unit-tested without Kafka."""

import asyncio
from typing import Protocol

from faststream.kafka import KafkaBroker

from contracts import CE_TYPE_OF, CeType, Event, headers, topics
from servicekit.kafka import ce_headers

SOURCE = "/services/gateway"

Ack = asyncio.Future[object]
"""Completes when the broker acknowledged the message; fails if it could not."""


class UploadSink(Protocol):
    async def event(self, topic: str, event: Event, ce_id: str) -> Ack: ...

    async def chunk(
        self, job_id: str, sequence: int, data: bytes, offset: int | None = None
    ) -> Ack: ...


class KafkaUploadSink:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def event(self, topic: str, event: Event, ce_id: str) -> Ack:
        return await self._send(
            topic,
            event.job_id,
            event.model_dump_json().encode(),
            ce_headers(CE_TYPE_OF[type(event)], ce_id, SOURCE, event.job_id),
        )

    async def chunk(
        self, job_id: str, sequence: int, data: bytes, offset: int | None = None
    ) -> Ack:
        # A resumable upload's chunks carry their byte offset: a resumed append may send
        # bytes again that an interrupted one had put on Kafka (docs/architecture.md §12).
        ce_id = f"{job_id}:chunk:{sequence}" + ("" if offset is None else f"@{offset}")
        message_headers = ce_headers(
            CeType.UPLOAD_CHUNK, ce_id, SOURCE, job_id, headers.OCTET_STREAM
        )
        message_headers[headers.SEQUENCE] = str(sequence)
        if offset is not None:
            message_headers[headers.UPLOAD_OFFSET] = str(offset)
        return await self._send(topics.AUDIO_UPLOAD, job_id, data, message_headers)

    async def _send(self, topic: str, job_id: str, value: bytes, hdrs: dict[str, str]) -> Ack:
        # no_confirm: the returned future is the acknowledgement, so chunks are pipelined
        # instead of waiting one round trip each.
        future = await self._broker.publish(
            value, topic, key=job_id.encode(), headers=hdrs, no_confirm=True
        )
        assert isinstance(future, asyncio.Future)
        return future
