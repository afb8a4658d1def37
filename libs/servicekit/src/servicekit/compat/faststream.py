"""What servicekit uses of FastStream (and its fast_depends) that they do not promise
(checked against FastStream 0.7.8, fast-depends 3.0.9).

**Context parameters resolved on the event loop** (:class:`InlineContext`; private:
``faststream._internal.context.Context``, the class behind the function
``faststream.Context()``, which ``faststream.kafka.annotations`` uses too; undocumented:
fast_depends awaits a custom field's ``use`` when it is a coroutine function and runs it
in a worker thread otherwise, ``fast_depends.utils.run_async``). FastStream 0.7's
``Context.use`` is a plain function, so every context parameter of every message costs a
thread hop with its GIL handovers: for the uploader, which takes three per
``audio.upload`` chunk, a tenth of its CPU samples (issue 14,
bench/results/profile-ingest.md). The lookup itself is a dict access. The upgrade test
checks that it stays on the loop (and that FastStream's own still hops to a thread).

**The consumer of the message at hand** (:data:`CONSUMER`, the context key
``"handler_.consumer"``, which ``faststream.kafka.annotations.Consumer`` names).

**Each subscriber's aiokafka consumer** (:func:`kafka_consumers`; undocumented: the
attributes ``consumer``, ``group_id`` and ``topic_names_for_subscribe`` of
``faststream.kafka.subscriber.usecase.LogicSubscriber``), for the consumer lag metric and
for stopping a process whose consumer stopped fetching.

**The broker's admin client** (:func:`admin_client`; undocumented:
``broker.config.admin_client``, which ``KafkaBroker.ping`` itself uses), for the
gateway's one-round-trip reachability probe (``ping`` retries until its timeout).

**Batch subscribers that wait for records, not on a timer** (:func:`prompt_batches`;
undocumented: ``faststream.kafka.subscriber.usecase.BatchSubscriber.get_msg``, its
attributes ``batch_timeout_ms`` and ``max_records``). FastStream's batch subscriber calls
``getmany(timeout_ms=batch_timeout_ms)`` and, when nothing came, sleeps as long again
before it asks anew, so a record arriving during that sleep waits for its end and an
idle consumer wakes ``2000 / batch_timeout_ms`` times a second. aiokafka's ``getmany``
already returns as soon as a record is there; the subclass only drops the sleep, so a
long ``batch_timeout_ms`` costs nothing in latency and an idle consumer wakes twice a
second (issue 21: the notifiers' four idle batch loops took about 40 ms of CPU a
second).

``libs/servicekit/tests/test_compat_upgrade.py`` checks that each name still exists.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from faststream._internal.context import Context as ContextField
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber, LogicSubscriber

__all__ = [
    "CONSUMER",
    "ContextField",
    "InlineContext",
    "SubscribedConsumer",
    "admin_client",
    "kafka_consumers",
    "prompt_batch",
    "prompt_batches",
]

CONSUMER = "handler_.consumer"
"""The context key of the aiokafka consumer that received the message at hand."""


class InlineContext(ContextField):
    """FastStream's ``Context()`` parameter, resolved on the event loop (see the module).
    Every Kafka handler (uploader, analyzer-bridge, notifier) takes its parameters this
    way (``servicekit.kafka.MessageParam``, ``ConsumerParam``)."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = super().use(**kwargs)
        return resolved


@dataclass(frozen=True, slots=True)
class SubscribedConsumer:
    """A started subscriber's consumer, with what it consumes."""

    topics: list[str]
    group_id: str | None
    consumer: AIOKafkaConsumer


def kafka_consumers(broker: KafkaBroker) -> Iterator[SubscribedConsumer]:
    """The aiokafka consumer of each of ``broker``'s subscribers that has one (a started
    subscriber; none under FastStream's in-memory ``TestKafkaBroker``)."""
    for subscriber in broker.subscribers:
        if not isinstance(subscriber, LogicSubscriber):
            continue
        consumer = subscriber.consumer
        if isinstance(consumer, AIOKafkaConsumer):
            yield SubscribedConsumer(
                list(subscriber.topic_names_for_subscribe), subscriber.group_id, consumer
            )


def admin_client(broker: KafkaBroker) -> AIOKafkaAdminClient:
    """The admin client of a started ``broker`` (FastStream's ``IncorrectState`` before)."""
    client: AIOKafkaAdminClient = broker.config.admin_client
    return client


class _PromptBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber without the sleep after an empty poll (see the
    module)."""

    __slots__ = ()

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        batches = await consumer.getmany(
            timeout_ms=self.batch_timeout_ms, max_records=self.max_records
        )
        return tuple(chain.from_iterable(batches.values()))


def prompt_batch(subscriber: object) -> bool:
    """Make ``subscriber``, if it is FastStream's batch subscriber, wait for records
    instead of polling on a timer (before the broker starts); whether it changed."""
    if type(subscriber) is not BatchSubscriber:
        return False
    subscriber.__class__ = _PromptBatchSubscriber
    return True


def prompt_batches(broker: KafkaBroker) -> int:
    """:func:`prompt_batch` for each of ``broker``'s subscribers; how many changed."""
    return sum(prompt_batch(subscriber) for subscriber in broker.subscribers)
