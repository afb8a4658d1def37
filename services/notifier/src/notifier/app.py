"""The notifier's composition root: every dependency is built here, then the handler
and the routes are registered with them (docs/architecture.md, "Adding a service")."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter

from contracts import JobDeleted, topics
from notifier import gcpauses, handlers, progress, routes
from notifier.adapters.kafka import KafkaDeadLetters
from notifier.adapters.postgres import PostgresAppliedEvents, PostgresStore
from notifier.deps import Services
from notifier.fanout import FanOut
from notifier.handlers import Statuses
from notifier.listener import Listener
from notifier.ports import JobStore
from notifier.projector import Projector
from notifier.settings import Settings
from notifier.slots import StreamSlots
from notifier.streams import Heartbeats
from servicekit import http
from servicekit.kafka import (
    BATCH_TIMEOUT_MS,
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


def create_broker(settings: Settings, store: JobStore) -> tuple[KafkaBroker, Statuses]:
    """The broker with the notifier's ``job.status`` subscriber, projecting into
    ``store``; also what the handler was given, for tests."""
    broker = make_broker(
        settings, SERVICE, "Projects job status changes and serves them as SSE streams."
    )
    statuses = Statuses(Projector(store), KafkaDeadLetters(broker))
    broker.context.set_global("statuses", statuses)

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
    broker.include_router(router)
    broker.publisher(
        topics.JOB_DELETED,
        title="job.deleted",
        description="A job to erase everywhere: asked for by its holder or owner "
        "(DELETE /jobs/{job_id}), or past the state's retention; keyed by job id.",
        schema=JobDeleted,
    )
    return broker, statuses


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
    broker, _ = create_broker(settings, store)
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
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await wait_for_kafka(settings.kafka_bootstrap_servers, settings.kafka_wait_seconds)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.kafka_topic_partitions,
            [topics.JOB_STATUS],
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(store)
            for work in (listener.run(), watch_consumer_lag(broker)):
                stack.push_async_callback(_cancel, asyncio.create_task(work))
            await broker.start()
            stack.push_async_callback(broker.stop)
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
        methods=["GET"],
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
