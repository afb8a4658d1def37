"""Kafka plumbing shared by the services: the broker, topics, CloudEvents envelopes.

Events travel in CloudEvents binary mode (docs/architecture.md §4): attributes in ``ce_*`` headers,
the JSON (or raw chunk bytes) as the value, the job id as the key.
"""

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher import DefaultPublisher
from faststream.message import StreamMessage
from pydantic import ValidationError

from contracts import CE_TYPE_OF, EVENT_TYPES, Event, JobDeleted, headers, topics
from servicekit.compat.aiokafka import fetch_task, install_closed_transport_guard
from servicekit.compat.faststream import CONSUMER, InlineContext, kafka_consumers
from servicekit.metrics import registry
from servicekit.settings import ServiceSettings

__all__ = [
    "BATCH_TIMEOUT_MS",
    "MAX_MESSAGE_BYTES",
    "TOPIC_MAX_MESSAGE_BYTES",
    "CoalescedCommits",
    "ConsumerParam",
    "ConsumingInBackground",
    "DeadLetters",
    "MessageParam",
    "PoisonMessage",
    "bootstrap_list",
    "broker_connected",
    "ce_headers",
    "ce_source",
    "decode_event",
    "decode_job_deleted",
    "ensure_topics",
    "make_broker",
    "prepare_kafka",
    "publish_event",
    "publish_together",
    "raw_body",
    "replication_for",
    "retention_configs",
    "stop_if_fetching_ends",
    "wait_for_kafka",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 2 * 1024 * 1024
"""Largest message we produce; upload chunks and the events carrying an analysis
result (at most 1 MiB, the webhook body limit) stay well below it."""

TOPIC_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES + 64 * 1024
"""``max.message.bytes`` of the topics we create: a record batch of one largest
message with room for its headers (the broker default is 1 MiB)."""


BATCH_TIMEOUT_MS = 500
"""``batch_timeout_ms`` of batch subscribers: how long one poll waits for records. A
record that arrives meanwhile is handed over at once (aiokafka's ``getmany`` returns
then); servicekit's services drop FastStream's sleep after an empty poll
(:func:`servicekit.compat.faststream.prompt_batches`, applied by
:class:`servicekit.service.Service`), so an idle consumer wakes twice a second and a
record never waits for a timer (bench/kafka_hop.py)."""


MessageParam = Annotated[KafkaMessage, InlineContext("message")]
"""``faststream.kafka.annotations.KafkaMessage``, resolved inline."""

ConsumerParam = Annotated[AIOKafkaConsumer, InlineContext(CONSUMER)]
"""``faststream.kafka.annotations.Consumer``, resolved inline."""


def bootstrap_list(servers: str) -> list[str]:
    """``host:port,host:port`` as a list: FastStream takes a string for one address and
    hands it to aiokafka whole, so a comma-separated cluster would be one unknown host."""
    return [s.strip() for s in servers.split(",") if s.strip()]


def make_broker(
    settings: ServiceSettings,
    service: str,
    description: str,
    *,
    request_timeout_seconds: float = 40.0,
    max_batch_bytes: int = 16 * 1024,
) -> KafkaBroker:
    """A broker whose publishes are idempotent and acknowledged by all in-sync replicas,
    so an acknowledged message survives a broker crash (docs/architecture.md §5.1).

    ``request_timeout_seconds`` bounds each request to the cluster and, in aiokafka, also
    a publish's wait for metadata and for a free slot in the send buffer (aiokafka's
    default is 40 s); a service that answers clients while Kafka is down lowers it.
    ``max_batch_bytes`` is the size up to which records for one partition share a
    record batch (aiokafka's ``max_batch_size``, whose default it keeps; a larger
    record travels alone); at most :data:`MAX_MESSAGE_BYTES`, which the topics we
    create take.

    Before any connection, aiokafka's connections of the whole process are guarded so
    that a connection the broker dropped cannot end a consumer's fetch task on uvloop
    (:func:`servicekit.compat.aiokafka.install_closed_transport_guard`)."""
    if max_batch_bytes > MAX_MESSAGE_BYTES:
        raise ValueError(
            f"record batches of {max_batch_bytes} bytes: more than MAX_MESSAGE_BYTES "
            f"({MAX_MESSAGE_BYTES}), which the topics take"
        )
    install_closed_transport_guard()
    return KafkaBroker(
        bootstrap_list(settings.kafka_bootstrap_servers),
        client_id=service,
        enable_idempotence=True,
        acks="all",
        max_request_size=MAX_MESSAGE_BYTES,
        max_batch_size=max_batch_bytes,
        request_timeout_ms=round(request_timeout_seconds * 1000),
        description=description,
        logger=logging.getLogger(f"audiopipe.kafka.{service}"),
        log_level=logging.DEBUG,
        # Trace context travels in every message's headers; consumed/produced counts
        # and durations become faststream_* Prometheus series.
        middlewares=[
            KafkaTelemetryMiddleware(),
            KafkaPrometheusMiddleware(registry=registry(), app_name=service),
        ],
    )


def broker_connected(broker: KafkaBroker) -> Callable[[], Awaitable[bool]]:
    """The readiness check every service has: the broker answers."""

    async def kafka_connected() -> bool:
        return await broker.ping(timeout=2.0)

    return kafka_connected


def _terminate() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def stop_if_fetching_ends(broker: KafkaBroker, stop: Callable[[], None] = _terminate) -> None:
    """Once ``broker`` has started: should a consumer's fetch task end with an error,
    log it and ``stop`` the process (SIGTERM: the graceful shutdown).

    aiokafka fetches in one background task per consumer; an error it does not expect
    ends that task for good, while the consumer, its group membership and the
    process's readiness carry on, and nothing is consumed again (servicekit.compat.aiokafka
    tells of one such error). A process that stops instead is restarted by whatever
    supervises it, and resumes from its committed offsets (docs/architecture.md §5)."""
    for subscribed in kafka_consumers(broker):
        fetching = fetch_task(subscribed.consumer)
        if fetching is None:
            continue
        topics_of = ",".join(subscribed.topics)

        def ended(task: "asyncio.Future[None]", topics_of: str = topics_of) -> None:
            if task.cancelled() or task.exception() is None:
                return  # the consumer was stopped
            log.critical(
                "the consumer of %s stopped fetching; stopping the process so that it is restarted",
                topics_of,
                exc_info=task.exception(),
            )
            stop()

        fetching.add_done_callback(ended)


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) when the settings leave them open: three
    copies with two in sync where the cluster has three brokers or more, so that one
    broker may die without losing an acknowledged write or refusing new ones
    (docs/scaling.md); one copy on a single node."""
    factor = max(1, min(3, brokers))
    return factor, 2 if factor >= 3 else 1


SEGMENT_MOST_MS = 3600 * 1000
"""Longest ``segment.ms`` of a topic with a retention of its own (:func:`retention_configs`)."""


def retention_configs(seconds: float) -> dict[str, str]:
    """Topic configs that keep records about ``seconds`` and not much longer.

    Kafka deletes whole segments, once their newest record is past ``retention.ms``, and
    never the segment being written; that one is rolled after ``segment.ms`` (7 days by
    default) or ``segment.bytes``. On a quiet topic a record would then outlive its
    retention by up to a week, so segments are rolled every quarter of the retention, at
    most hourly: a record lives at most about retention + segment + the broker's
    ``log.retention.check.interval.ms`` (docs/scaling.md)."""
    retention_ms = max(1, round(seconds * 1000))
    segment_ms = max(1, min(SEGMENT_MOST_MS, retention_ms // 4))
    return {"retention.ms": str(retention_ms), "segment.ms": str(segment_ms)}


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    names: Iterable[str] = topics.ALL,
    *,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics (and their dead-letter twins) that do not exist yet.

    The replication factor and ``min.insync.replicas`` come from the service's settings
    (``KAFKA_REPLICATION_FACTOR``, ``KAFKA_MIN_INSYNC_REPLICAS``); left unset, they follow
    the cluster's size (:func:`replication_for`). aiokafka's ``NewTopic`` rejects the
    broker-default factor ``-1`` without replica assignments, hence an explicit number.
    ``configs`` adds topic configs by topic name (a dead-letter twin is named on its
    own), e.g. ``audio.upload``'s retention (:func:`retention_configs`). Topics that
    exist are left as they are: their configs too (an operator changes them with
    ``kafka-configs.sh``, docs/scaling.md).
    """
    install_closed_transport_guard()  # as for every Kafka client servicekit makes
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for name in names for n in (name, topics.dead_letter(name))]
        if not (set(wanted) - existing):
            return
        brokers = len((await admin.describe_cluster())["brokers"])
        factor = replication_factor or replication_for(brokers)[0]
        min_isr = min_insync_replicas or replication_for(factor)[1]
        missing = [
            NewTopic(
                name,
                num_partitions=partitions if not name.endswith(topics.DLQ_SUFFIX) else 1,
                replication_factor=factor,
                topic_configs={
                    "min.insync.replicas": str(min_isr),
                    "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
                    **(configs or {}).get(name, {}),
                },
            )
            for name in wanted
            if name not in existing
        ]
        response = await admin.create_topics(missing)
        failed = [
            (topic, code, message)
            for topic, code, message in _topic_errors(response)
            # Another service may have been first.
            if code not in (0, TopicAlreadyExistsError.errno)
        ]
        if failed:
            raise RuntimeError(f"could not create topics: {failed}")
        log.info(
            "created topics %s (replication factor %d, min.insync.replicas %d)",
            [t.name for t in missing],
            factor,
            min_isr,
        )
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) of a CreateTopics answer; v0 has no messages."""
    return [
        (entry[0], entry[1], entry[2] if len(entry) > 2 else None)
        for entry in response.topic_errors
    ]


async def wait_for_kafka(bootstrap_servers: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Block until the cluster answers a metadata request, for services that start
    before the broker does."""
    install_closed_transport_guard()  # as for every Kafka client servicekit makes
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def prepare_kafka(
    settings: ServiceSettings,
    names: Iterable[str] = topics.ALL,
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """One attempt at what a service's start does before its broker starts: the cluster
    answers, and the topics ``names`` that are missing are created with the partitions,
    replicas and ``min.insync.replicas`` of the service's settings, and ``configs`` by
    topic name (:func:`ensure_topics`); bounded by ``KAFKA_WAIT_SECONDS`` (a cluster
    that does not answer raises ``TimeoutError``). :class:`servicekit.service.Service`
    tries again, with backoff, until it succeeds or the service is stopped."""
    async with asyncio.timeout(settings.kafka_wait_seconds):
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.kafka_topic_partitions,
            names,
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
            configs=configs,
        )


class ConsumingInBackground:
    """A broker's subscribers, started in the background once its producer is connected.

    ``KafkaBroker.start`` returns only once every subscriber joined its group, and after
    a crash that join waits for the dead member's session to expire (~10 s). A service
    that answers HTTP (webhooks, uploads) must not wait for it: it connects the producer,
    serves, and lets its consumers join meanwhile. :meth:`alive` is a readiness check: a
    consumer that failed to start does not pass unseen."""

    def __init__(self, broker: KafkaBroker, what: str) -> None:
        self._broker = broker
        self._what = what
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name=f"consumer: {self._what}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # A failure was logged where it happened; stopping goes on regardless.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def alive(self) -> bool:
        if self._task is None:
            return False
        if not self._task.done():
            return True
        return not self._task.cancelled() and self._task.exception() is None

    async def _consume(self) -> None:
        try:
            await self._broker.start()
        except Exception:
            log.exception("the %s consumer did not start; the service is not ready", self._what)
            raise
        stop_if_fetching_ends(self._broker)


def ce_source(service: str) -> str:
    """The ``ce_source`` of every event ``service`` publishes: ``/services/<service>``
    (a URI-reference, CloudEvents 1.0 §3.1.1), e.g. ``/services/analyzer-bridge``."""
    return f"/services/{service}"


def ce_headers(
    ce_type: str, ce_id: str, source: str, job_id: str, content_type: str = headers.JSON
) -> dict[str, str]:
    return {
        headers.SPECVERSION: headers.SPEC_VERSION,
        headers.ID: ce_id,
        headers.TYPE: ce_type,
        headers.SOURCE: source,
        headers.SUBJECT: job_id,
        headers.TIME: datetime.now(UTC).isoformat(),
        headers.CONTENT_TYPE: content_type,
    }


async def publish_event(
    publisher: DefaultPublisher, event: Event, *, source: str, ce_id: str
) -> RecordMetadata | None:
    """Publish ``event`` keyed by its job through ``publisher``, one the service declared
    on its broker (so the AsyncAPI document names what is sent), and wait for the
    acknowledgement.

    ``ce_id`` must be derived from what happened (e.g. ``"<job>:stored"``), not random,
    so that a redelivered input republishes the same id and readers can drop it.
    """
    result = await publisher.publish(
        event.model_dump_json().encode(),
        key=event.job_id.encode(),
        headers=ce_headers(CE_TYPE_OF[type(event)], ce_id, source, event.job_id),
    )
    # Where the broker put it; FastStream's in-memory TestKafkaBroker has no such thing.
    return result if isinstance(result, RecordMetadata) else None


async def publish_together(*sends: Awaitable[Any]) -> None:
    """Await several publishes at once, so that the producer puts them in one produce
    request instead of one round trip each; they are not ordered against each other
    (each topic is ordered by itself, docs/architecture.md §4). Returns once every one
    is acknowledged; if any failed, raises the first failure, after all have ended."""
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def raw_body(message: StreamMessage[Any]) -> bytes:
    """A subscriber ``decoder`` that hands over the value untouched. Decoding is ours (by
    ``ce_type``, :func:`decode_event`), so that a bad payload is dead-lettered; with
    FastStream's JSON decoding it would fail before the handler and be dropped."""
    return message.body


class CoalescedCommits(ConsumerRebalanceListener):
    """The offsets of handled messages, committed together at most once per
    ``interval`` seconds instead of one commit round trip per message or batch (a write
    to ``__consumer_offsets`` each; issue 21). For a subscriber with
    ``AckPolicy.MANUAL`` whose handler does its work within :meth:`handling` (or calls
    :meth:`handled` when a message is done and nacks it on an error); give it as the
    subscriber's ``listener`` and run :meth:`run` as a background task of the service
    (stopped before the broker).

    Delivery stays at least once: only handled messages are committed, so a crash
    replays at most ``interval`` of them, which the handler must take twice as it takes
    any redelivery; partitions being revoked, and a shutdown, commit what is pending
    first, so a rebalance or a restart replays nothing. A commit that fails, or takes
    longer than ``timeout`` (after a broker restart aiokafka can wait long for a group
    coordinator), is logged and tried again at the next flush; its messages come again
    to whoever owns their partition next.

    A consumer whose safe offset is not simply past its last handled message (the
    uploader's, held at its earliest unfinished job) gives that offset instead
    (:meth:`commit_at`), from its handler or its own rebalance listener."""

    def __init__(self, interval: float, timeout: float = 5.0) -> None:
        self.interval = interval
        self.timeout = timeout
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._waiting = asyncio.Event()

    @property
    def pending(self) -> dict[TopicPartition, int]:
        """The offsets to commit at the next flush, by partition."""
        return dict(self._pending)

    def handled(self, message: KafkaMessage) -> None:
        """``message`` (one record or a batch) is done: commit past it soon."""
        raw = message.raw_message
        for record in raw if isinstance(raw, tuple | list) else (raw,):  # a batch, or one
            partition = TopicPartition(record.topic, record.partition)
            self._pending[partition] = max(self._pending.get(partition, 0), record.offset + 1)
        self._soon(getattr(message, "consumer", None))

    @contextlib.asynccontextmanager
    async def handling(self, message: KafkaMessage) -> AsyncIterator[None]:
        """Around a handler's work on ``message``: done, it is :meth:`handled`; on an
        error it is nacked (it comes again from its first offset) and the error goes on."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                await message.nack()
            raise
        self.handled(message)

    def commit_at(self, consumer: object, partition: TopicPartition, offset: int) -> None:
        """Commit ``partition`` at ``offset`` soon: an offset the caller knows to be safe,
        which replaces the one pending (it may be below the last message handled)."""
        self._pending[partition] = offset
        self._soon(consumer)

    def _soon(self, consumer: object) -> None:
        if not isinstance(consumer, AIOKafkaConsumer):
            return  # FastStream's test client: there is no group to commit to
        self._consumer = consumer
        self._waiting.set()

    async def run(self) -> None:
        """Commit what is pending ``interval`` after a message is handled, until
        cancelled; then once more (the stop: the consumer still runs)."""
        try:
            while True:
                await self._waiting.wait()
                await asyncio.sleep(self.interval)
                self._waiting.clear()
                await self.flush()
        finally:
            await self.flush()

    async def flush(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit what is pending now (of ``partitions`` only, when given). What could
        not be committed stays pending for the next flush, unless its partition is no
        longer this consumer's."""
        consumer = self._consumer
        chosen = {
            tp: offset
            for tp, offset in self._pending.items()
            if partitions is None or tp in partitions
        }
        if consumer is None or not chosen:
            return
        assigned = consumer.assignment()
        for tp in chosen.keys() - assigned:
            del self._pending[tp]  # another member's now: it replays them
        offsets = {tp: offset for tp, offset in chosen.items() if tp in assigned}
        if not offsets:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await consumer.commit(offsets)
        except Exception as exc:  # not a member any more, the broker gone, too slow, ...
            log.warning("offsets %s not committed yet (%r)", offsets, exc)
            return
        for tp, offset in offsets.items():
            if self._pending.get(tp) == offset:  # not moved on meanwhile
                del self._pending[tp]

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self.flush(set(revoked))

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        pass


class PoisonMessage(Exception):
    """A message no retry can make processable; it belongs on the dead-letter topic."""


def decode_event(message_headers: dict[str, Any], body: bytes) -> Event:
    """The event model of a message, by its ``ce_type`` header."""
    ce_type = message_headers.get(headers.TYPE)
    model = EVENT_TYPES.get(ce_type) if isinstance(ce_type, str) else None
    if model is None:
        raise PoisonMessage(f"unknown ce_type {ce_type!r}")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonMessage(f"invalid {ce_type}: {exc.errors()[:3]}") from exc


def decode_job_deleted(message_headers: dict[str, Any], body: bytes) -> JobDeleted:
    """The event of a ``job.deleted`` message, its job id in the canonical form the
    gateway gives every job (``str(uuid4())``), from which each service derives its keys
    and rows; :class:`PoisonMessage` when it is not a ``JobDeleted`` of a UUID."""
    event = decode_event(message_headers, body)
    if not isinstance(event, JobDeleted):
        raise PoisonMessage(f"{type(event).__name__} does not belong on {topics.JOB_DELETED}")
    try:
        canonical = str(uuid.UUID(event.job_id))
    except ValueError as exc:
        raise PoisonMessage(f"job_id {event.job_id!r} is not a UUID") from exc
    return event if canonical == event.job_id else event.model_copy(update={"job_id": canonical})


class DeadLetters:
    """Where a service parks poison messages: ``<topic>.dlq`` of each topic it consumes,
    with the reason, so that a message neither blocks its partition nor vanishes
    (docs/architecture.md §4). Each dead-letter topic is a publisher declared on the
    service's broker, so the AsyncAPI document lists it."""

    def __init__(self, broker: KafkaBroker, consumed: Iterable[str]) -> None:
        self._publishers = {
            topic: broker.publisher(
                topics.dead_letter(topic),
                description=f"Messages of `{topic}` that no retry can process, as they "
                f"came, with the reason in the `{headers.DLQ_REASON}` header.",
            )
            for topic in consumed
        }

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        """Park a message of ``topic`` (one the service consumes) on its dead-letter
        topic, its ``headers`` kept and the reason added."""
        publisher = self._publishers.get(topic)
        if publisher is None:
            raise LookupError(f"{topic!r} is not a topic this service dead-letters")
        log.error("dead-lettering a message from %s: %s", topic, reason)
        await publisher.publish(value, key=key, headers={**headers, _DLQ_REASON: reason[:1000]})


_DLQ_REASON = headers.DLQ_REASON
