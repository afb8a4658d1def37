"""Chunks of ``audio.upload`` read again by offset (:class:`uploader.ports.ChunkSource`).

A consumer of its own, outside the consumer group: it is assigned the one partition a
read needs, seeks to each wanted record and fetches from there. A fetch returns the
record and what follows it up to ``max_partition_fetch_bytes``, so reading back a part
costs about one fetch per chunk, not the partition's traffic in between. After a read
the partition is paused, so that the consumer fetches nothing more in the background
(docs/architecture.md §12).
"""

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from aiokafka.structs import ConsumerRecord

from contracts import topics
from servicekit.kafka import bootstrap_list
from servicekit.settings import ServiceSettings
from uploader.ports import StorageError

log = logging.getLogger(__name__)

FETCH_BYTES = 1024 * 1024
"""Per fetch: a chunk message or two (a larger one still comes whole, KIP-74)."""


class KafkaChunkReader:
    """An async context manager: the consumer is started on entry, stopped on exit.
    One read at a time; each is bounded by ``timeout`` seconds."""

    def __init__(self, settings: ServiceSettings, timeout: float) -> None:
        self._bootstrap = bootstrap_list(settings.kafka_bootstrap_servers)
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._started: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> "KafkaChunkReader":
        # aiokafka wants its running loop: the consumer is made here, not in __init__.
        self._started = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id="uploader-reread",
            group_id=None,
            enable_auto_commit=False,
            # A record gone with the topic's retention is an error, not another record.
            auto_offset_reset="none",
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
            # The bytes are verified against the upload's sha256 (docs/architecture.md §5.4).
            check_crcs=False,
        )
        await self._started.start()
        return self

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._started is None:
            raise StorageError("the chunk reader is not started")
        return self._started

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    async def read(
        self, job_id: str, partition: int, offsets: Sequence[int]
    ) -> AsyncGenerator[bytes, None]:
        if not offsets:
            return
        tp = TopicPartition(topics.AUDIO_UPLOAD, partition)
        key = job_id.encode()
        async with self._lock:
            self._consumer.assign([tp])  # a fresh assignment: not paused, no position
            try:
                wanted = deque(offsets)
                while wanted:
                    target = wanted[0]
                    self._consumer.seek(tp, target)
                    found = {record.offset: record for record in await self._fetch(tp)}
                    if target not in found:
                        raise StorageError(f"record {target} of {tp} is not in Kafka")
                    while wanted and wanted[0] in found:
                        record = found[wanted.popleft()]
                        if record.key != key or record.value is None:
                            raise StorageError(f"record {record.offset} of {tp} is not {job_id}'s")
                        yield record.value
            except OffsetOutOfRangeError as exc:
                raise StorageError(
                    f"the upload's bytes at {offsets[0]} of {tp} are no longer in Kafka "
                    "(retention of audio.upload)"
                ) from exc
            except (KafkaError, TimeoutError) as exc:
                raise StorageError(f"chunks of {tp} could not be read again: {exc!r}") from exc
            finally:
                self._consumer.pause(tp)

    async def _fetch(self, tp: TopicPartition) -> "list[ConsumerRecord[bytes, bytes]]":
        async with asyncio.timeout(self._timeout):
            while True:
                batch = await self._consumer.getmany(tp, timeout_ms=500)
                records: list[ConsumerRecord[bytes, bytes]] = batch.get(tp, [])
                if records:
                    return records
