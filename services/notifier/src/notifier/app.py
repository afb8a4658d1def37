"""The notifier's composition root: every dependency is built here, then the handler
and the routes are registered with them (docs/architecture.md, "Adding a service")."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter

from contracts import topics
from notifier import gcpauses, handlers, progress, routes
from notifier.adapters.kafka import KafkaDeletions
from notifier.adapters.postgres import PostgresAppliedEvents, PostgresStore
from notifier.deps import Services
from notifier.fanout import FanOut
from notifier.handlers import Erasures, Statuses
from notifier.lifecycle import Deleter, Retention
from notifier.listener import Listener
from notifier.ports import Deletions, JobStore, Lifecycle
from notifier.projector import Projector
from notifier.settings import Settings
from notifier.slots import StreamSlots
from notifier.streams import Heartbeats
from servicekit import http
from servicekit.auth import owner_auth
from servicekit.kafka import (
    BATCH_TIMEOUT_MS,
    DeadLetters,
    broker_connected,
    ensure_topics,
    make_broker,
    raw_body,
    stop_if_fetching_ends,
    wait_for_kafka,
)
from servicekit.metrics import watch_consumer_lag
from servicekit.postgres import connect
from servicekit.tokens import JobTokens

SERVICE = "notifier"


@dataclass(frozen=True)
class Handled:
    """What :func:`create_broker` built around the adapters, for the app and for tests."""

    statuses: Statuses
    erasures: Erasures
    deletions: Deletions


def create_broker(
    settings: Settings, store: JobStore, lifecycle: Lifecycle
) -> tuple[KafkaBroker, Handled]:
    """The broker with the notifier's ``job.status`` subscriber, projecting into
    ``store``, its ``job.deleted`` subscriber, erasing from ``lifecycle``, and its
    ``job.deleted`` publisher; also what the handlers were given, for tests."""
    broker = make_broker(
        settings, SERVICE, "Projects job status changes and serves them as SSE streams."
    )
    dead_letters = DeadLetters(broker, (topics.JOB_STATUS, topics.JOB_DELETED))
    statuses = Statuses(Projector(store), dead_letters)
    broker.context.set_global("statuses", statuses)
    erasures = Erasures(lifecycle, dead_letters)
    broker.context.set_global("erasures", erasures)

    router = KafkaRouter()
    router.subscriber(
        topics.JOB_STATUS,
        # A shared group: each event is projected once, by the replica owning its partition.
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        # Committed only after the batch is written; on an error it comes again.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=handlers.MAX_BATCH,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        decoder=raw_body,
        title="notifier:job.status",
        description="Projects every job status change into PostgreSQL and pushes it "
        "to the job's live SSE streams.",
    )(handlers.on_job_statuses)
    router.subscriber(
        topics.JOB_DELETED,
        # Its own group: its offsets do not depend on the projection's. Each deletion is
        # erased once, by the replica owning its partition; the others hear of it from
        # PostgreSQL, as of applied events.
        group_id=settings.deletion_consumer_group,
        auto_offset_reset="earliest",
        # Committed only once the erasure is written; on an error it comes again.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=handlers.MAX_BATCH,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        decoder=raw_body,
        title="notifier:job.deleted",
        description="Erases each deleted job's state and event history (a tombstone of "
        "its id stays, so that its late events change nothing) and ends its progress "
        "streams on every replica.",
    )(handlers.on_jobs_deleted)
    broker.include_router(router)
    deletions = KafkaDeletions(broker, settings.kafka_timeout_seconds)
    return broker, Handled(statuses, erasures, deletions)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    gcpauses.watch()
    timeout = settings.database_timeout_seconds
    store = PostgresStore(
        settings.database_dsn,
        settings.database_schema,
        pool_size=settings.database_pool_size,
        timeout_seconds=timeout,
    )
    fanout = FanOut(settings.sse_queue_size)
    listener = Listener(
        PostgresAppliedEvents(
            lambda: connect(settings.database_dsn, timeout_seconds=timeout),
            store.channel,
            check_seconds=settings.listen_check_seconds,
        ),
        store,
        fanout,
        reconnect_seconds=settings.listen_reconnect_seconds,
    )
    broker, handled = create_broker(settings, store, store)
    # The identity provider's keys (JWKS, discovery): small, rare requests, bounded as
    # the gateway bounds them.
    http_client = httpx.AsyncClient(timeout=settings.kafka_timeout_seconds)
    retention = Retention(
        store,
        handled.deletions,
        retention_seconds=settings.job_retention_seconds,
        tombstone_seconds=settings.job_tombstone_seconds,
        interval_seconds=settings.job_retention_sweep_seconds,
    )
    services = Services(
        settings=settings,
        tokens=JobTokens(
            settings.job_token_secret.get_secret_value(), settings.job_token_ttl_seconds
        ),
        fanout=fanout,
        slots=StreamSlots(
            settings.sse_max_streams,
            per_job=settings.sse_max_streams_per_job,
            per_client=settings.sse_max_streams_per_client,
        ),
        history=store,
        heartbeats=Heartbeats(settings.sse_heartbeat_seconds, settings.sse_max_stream_seconds),
        auth=owner_auth(settings, http_client),
        lifecycle=store,
        deleter=Deleter(store, handled.deletions),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await wait_for_kafka(settings.kafka_bootstrap_servers, settings.kafka_wait_seconds)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.kafka_topic_partitions,
            [topics.JOB_STATUS, topics.JOB_DELETED],
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
        async with AsyncExitStack() as stack:
            stack.push_async_callback(http_client.aclose)
            await stack.enter_async_context(store)
            for work in (listener.run(), watch_consumer_lag(broker)):
                stack.push_async_callback(_cancel, asyncio.create_task(work))
            await broker.start()
            stack.push_async_callback(broker.stop)
            # It publishes: once the broker runs, and stopped before it.
            stack.push_async_callback(_cancel, asyncio.create_task(retention.run()))
            stop_if_fetching_ends(broker)
            gcpauses.settle()
            yield

    async def listening() -> bool:
        return listener.connected

    app = http.create_app(
        title="notifier",
        service=SERVICE,
        description="Job progress as Server-Sent Events, replayable from PostgreSQL.",
        lifespan=lifespan,
        readiness=[store.ping, broker_connected(broker), listening],
    )
    # Last-Event-ID: EventSource sends it on a reconnect, so a cross-origin stream resumes.
    http.allow_origins(
        app,
        settings.cors_allowed_origins,
        methods=["GET", "DELETE"],
        headers=["Authorization", "Last-Event-ID"],
    )
    app.state.services = services
    app.state.broker = broker
    app.include_router(routes.router)
    progress.serve_first(app, progress.ProgressStreams(services, SERVICE))
    return app


async def _cancel(task: "asyncio.Task[None]") -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
