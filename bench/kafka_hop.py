"""One Kafka hop into an idle consumer, by consumer setting (issue 14, item 4).

    uv run python -m bench.kafka_hop              # 300 events
    uv run python -m bench.kafka_hop --quick      # 60 events

Every stage of a job is a hop: a service publishes an event, the next one's subscriber
picks it up. Between jobs the consumers are idle, and an idle consumer is where settings
add latency. One process runs a FastStream subscriber per setting, each in its own
consumer group on one topic, so all of them receive the same events at the same moment
under the same load; a publisher sends events one by one at random gaps (the gaps put
some arrivals in each subscriber's idle sleep). Latency = publish call → handler entered,
p50/p99/max per setting over the same events.

The settings: FastStream's batch subscriber (the notifier's) with its default
``batch_timeout_ms`` (200) and as servicekit runs it (``servicekit.kafka.BATCH_TIMEOUT_MS``,
no sleep after an empty poll: ``servicekit.compat.faststream.prompt_batches``); the one-by-one
subscriber (the uploader's, the bridge's) with aiokafka's default ``fetch_max_wait_ms``
(500) and with 50. The stack comes from ``KAFKA_BOOTSTRAP_SERVERS`` or the devstack.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

from faststream.kafka import KafkaBroker

from bench import report
from bench.common import percentile
from bench.sse import ROOT
from servicekit.compat.faststream import prompt_batch
from servicekit.kafka import BATCH_TIMEOUT_MS, ensure_topics, make_broker, wait_for_kafka
from servicekit.settings import ServiceSettings

Handler = Callable[..., Awaitable[None]]

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("batch, batch_timeout_ms=200 (FastStream default)", {"batch": True, "batch_timeout_ms": 200}),
    (
        f"batch, batch_timeout_ms={BATCH_TIMEOUT_MS}, no sleep after an empty poll (servicekit)",
        {"batch": True, "batch_timeout_ms": BATCH_TIMEOUT_MS, "prompt": True},
    ),
    ("one by one, fetch_max_wait_ms=500 (aiokafka default)", {"fetch_max_wait_ms": 500}),
    ("one by one, fetch_max_wait_ms=50", {"fetch_max_wait_ms": 50}),
]


@contextlib.contextmanager
def kafka() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    from devstack import Stack

    stack = Stack(root=ROOT)
    started = stack.up(apps=False)
    try:
        yield started.env["KAFKA_BOOTSTRAP_SERVERS"]
    finally:
        stack.down(only=started)


def subscribe(
    broker: KafkaBroker,
    topic: str,
    options: dict[str, Any],
    arrivals: dict[int, float],
    expected: int,
    all_in: asyncio.Event,
) -> None:
    """A subscriber in its own group that notes when each event reached its handler."""

    def note(body: bytes) -> None:
        arrivals[json.loads(body)["n"]] = time.time()
        if len(arrivals) > expected:  # the warm-up event and every measured one
            all_in.set()

    group = f"bench-hop-{uuid.uuid4().hex[:8]}"
    # The variants' options are a dict, which FastStream's overloads cannot type.
    subscriber = cast(Callable[..., Callable[[Handler], Handler]], broker.subscriber)
    prompt = options.get("prompt", False)
    kwargs: dict[str, Any] = {
        "group_id": group,
        "auto_offset_reset": "latest",
        "decoder": lambda message: message.body,
        **{k: v for k, v in options.items() if k != "prompt"},
    }
    if options.get("batch"):

        @subscriber(topic, **kwargs)
        async def batch(bodies: list[bytes]) -> None:
            for body in bodies:
                note(body)

        if prompt:  # as servicekit.service.Service does for every batch subscriber
            prompt_batch(broker.subscribers[-1])
    else:

        @subscriber(topic, **kwargs)
        async def one(body: bytes) -> None:
            note(body)


async def run(events: int, gap_ms: tuple[float, float]) -> list[dict[str, Any]]:
    with kafka() as bootstrap:
        await wait_for_kafka(bootstrap)
        topic = f"bench.hop.{uuid.uuid4().hex[:8]}"
        await ensure_topics(bootstrap, 1, [topic])
        broker = make_broker(
            ServiceSettings(kafka_bootstrap_servers=bootstrap), "bench-hop", "hop benchmark"
        )
        seen: dict[str, dict[int, float]] = {name: {} for name, _ in VARIANTS}
        done = {name: asyncio.Event() for name, _ in VARIANTS}
        for name, options in VARIANTS:
            subscribe(broker, topic, options, seen[name], events, done[name])
        await broker.start()
        try:
            # Warm up: until every group has its partition and has seen an event.
            n = -1
            while not all(-1 in s for s in seen.values()):
                await broker.publish(json.dumps({"n": n}).encode(), topic)
                await asyncio.sleep(0.5)
            sent: dict[int, float] = {}
            for n in range(events):
                await asyncio.sleep(random.uniform(*gap_ms) / 1000)
                sent[n] = time.time()
                await broker.publish(json.dumps({"n": n}).encode(), topic)
            with contextlib.suppress(TimeoutError):  # a missing event shows in the table
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done.values())), 60)
        finally:
            await broker.stop()
    rows = []
    for name, _ in VARIANTS:
        ms = [(seen[name][n] - sent[n]) * 1000 for n in sent if n in seen[name]]
        rows.append(
            {
                "consumer": name,
                "events": f"{len(ms)}/{events}",
                "p50 ms": percentile(ms, 50),
                "p99 ms": percentile(ms, 99),
                "max ms": max(ms),
                "mean ms": statistics.fmean(ms),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="60 events")
    args = parser.parse_args()
    events = 60 if args.quick else args.events
    gap = (20.0, 400.0)
    rows = asyncio.run(run(events, gap))
    report.write(
        "kafka_hop",
        "One Kafka hop into an idle consumer, by consumer setting",
        rows,
        [
            f"{events} events, one at a time, {gap[0]:g}–{gap[1]:g} ms apart (uniform); one "
            "topic with one partition, every consumer in its own group in one process, so "
            "they see the same events under the same load. Latency = publish call → "
            "handler entered (publish acknowledged with acks=all, as the services do).",
            "Kafka and the client share this machine's cores with other work.",
        ],
    )


if __name__ == "__main__":
    main()
