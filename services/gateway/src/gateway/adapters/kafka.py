"""The Kafka producer adapter: :class:`gateway.ports.UploadSink` on the service's
FastStream broker. Every aiokafka error (and a bounded wait that ran out) leaves it as
:class:`gateway.ports.SinkError`, from a send and from its acknowledgement alike.

Each topic it writes is a publisher declared here, on the service's broker, and sent
through: the AsyncAPI document (``make docs``) lists exactly what goes out."""

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker

from contracts import (
    CE_TYPE_OF,
    CeType,
    JobStatusChanged,
    UploadAborted,
    UploadFinished,
    UploadStarted,
    headers,
    topics,
)
from gateway.ports import Ack, EventMessage, Message, SinkError
from gateway.reachability import Reachability
from gateway.settings import MARKERS_ROOM
from servicekit.compat.faststream import admin_client
from servicekit.kafka import MAX_MESSAGE_BYTES, ce_headers, ce_source

SOURCE = ce_source("gateway")


def batch_bytes(chunk_bytes: int) -> int:
    """The producer's record batch size: a whole chunk with ``UploadStarted`` before it
    and ``UploadFinished`` after it, so that a one-shot upload of one chunk is one batch,
    one produce request, which the broker takes or refuses whole (docs/architecture.md
    §5.1); within what the topics take."""
    return min(chunk_bytes + MARKERS_ROOM, MAX_MESSAGE_BYTES)


class KafkaUploadSink:
    def __init__(
        self, broker: KafkaBroker, reachability: Reachability, timeout_seconds: float
    ) -> None:
        self._publishers = {
            topics.AUDIO_UPLOAD: broker.publisher(
                topics.AUDIO_UPLOAD,
                title="audio.upload",
                description="UploadStarted, raw chunk messages (ce_sequence header), then "
                "UploadFinished or UploadAborted; keyed by job id.",
                schema=UploadStarted | UploadFinished | UploadAborted,
            ),
            topics.JOB_STATUS: broker.publisher(
                topics.JOB_STATUS, description="`accepted`", schema=JobStatusChanged
            ),
        }
        self._reachability = reachability
        self._timeout = timeout_seconds

    def available(self) -> bool:
        return self._reachability.up

    async def send(self, *messages: Message) -> list[Ack]:
        # no_confirm: the returned futures are the acknowledgements, so chunks are
        # pipelined instead of waiting one round trip each. The publishes run in one
        # task without yielding to the producer's sender in between, so those for one
        # partition go into one record batch (when it has room: batch_bytes), as one
        # produce request. A publish waits only while the partition's send buffer is
        # full (the broker is not taking batches): bounded, and a sign that the broker
        # is down. Cancelling it drops the messages not yet handed over.
        records = [self._record(message) for message in messages]

        async def publish_all() -> list[asyncio.Future[RecordMetadata]]:
            futures = []
            for topic, key, value, hdrs in records:
                future = await self._publishers[topic].publish(
                    value, key=key, headers=hdrs, no_confirm=True
                )
                assert isinstance(future, asyncio.Future)
                futures.append(future)
            return futures

        try:
            futures = await self._reachability.unless_down(publish_all(), self._timeout)
        except (KafkaError, TimeoutError) as exc:
            raise self._failed(exc) from exc
        return [_translated(future) for future in futures]

    @staticmethod
    def _record(message: Message) -> tuple[str, bytes, bytes, dict[str, str]]:
        if isinstance(message, EventMessage):
            job_id = message.event.job_id
            return (
                message.topic,
                job_id.encode(),
                message.event.model_dump_json().encode(),
                ce_headers(CE_TYPE_OF[type(message.event)], message.ce_id, SOURCE, job_id),
            )
        # A resumable upload's chunks carry their byte offset: a resumed append may send
        # bytes again that an interrupted one had put on Kafka (docs/architecture.md §12).
        offset = message.offset
        ce_id = f"{message.job_id}:chunk:{message.sequence}" + (
            "" if offset is None else f"@{offset}"
        )
        hdrs = ce_headers(CeType.UPLOAD_CHUNK, ce_id, SOURCE, message.job_id, headers.OCTET_STREAM)
        hdrs[headers.SEQUENCE] = str(message.sequence)
        if offset is not None:
            hdrs[headers.UPLOAD_OFFSET] = str(offset)
        return topics.AUDIO_UPLOAD, message.job_id.encode(), message.data, hdrs

    async def confirmed(self, ack: Ack) -> None:
        # Cancelling the acknowledgement does not take the message back: the idempotent
        # producer still delivers it when the broker returns, in order.
        try:
            await self._reachability.unless_down(ack, self._timeout)
        except SinkError as exc:
            if exc.__cause__ is not None and _is_outage(exc.__cause__):
                self._reachability.mark_down(repr(exc.__cause__))
            raise
        except (KafkaError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> SinkError:
        if _is_outage(exc):
            self._reachability.mark_down(repr(exc))
        return SinkError(repr(exc))


def kafka_answers(broker: KafkaBroker, timeout_seconds: float) -> Callable[[], Awaitable[bool]]:
    """The reachability probe: one metadata round trip (DescribeCluster), bounded.

    A broker that died refuses the connection, so the probe fails at once instead of
    after a timeout; one retry on a fresh connection keeps a connection the broker
    closed while idle from being taken for an outage."""

    async def kafka_answers() -> bool:
        for attempt in (1, 2):
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
                # cancellation that stops the probe (cpython gh-86296).
                async with asyncio.timeout(timeout_seconds):
                    await admin_client(broker).describe_cluster()
            except TimeoutError:
                return False
            except Exception:
                if attempt == 2:
                    return False
            else:
                return True
        return False

    return kafka_answers


def _translated(future: "asyncio.Future[RecordMetadata]") -> Ack:
    """The producer's acknowledgement, failing with :class:`SinkError` instead of an
    aiokafka error; cancelling it leaves the message to the producer."""
    ack: Ack = asyncio.get_running_loop().create_future()

    def settle(done: "asyncio.Future[RecordMetadata]") -> None:
        if done.cancelled():
            ack.cancel()
            return
        exc = done.exception()  # retrieved even when nobody waits for ``ack`` any more
        if ack.done():
            return
        if exc is None:
            ack.set_result(done.result())
        else:
            failure = SinkError(repr(exc))
            failure.__cause__ = exc
            ack.set_exception(failure)

    future.add_done_callback(settle)
    return ack


def _is_outage(exc: BaseException) -> bool:
    """A timeout or a retriable error (no connection, no leader), not a refusal of this
    one message (e.g. too large)."""
    return isinstance(exc, (TimeoutError, KafkaTimeoutError)) or bool(
        getattr(exc, "retriable", False)
    )
