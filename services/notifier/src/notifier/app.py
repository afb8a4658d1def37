"""The one place where the notifier's parts are built and wired together."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from contracts import JobStatusChanged, topics
from notifier import consumer, routes
from notifier.deps import Services
from notifier.fanout import FanOut
from notifier.listener import Listener
from notifier.projector import Projector
from notifier.settings import Settings
from notifier.store import Store
from notifier.streams import StreamSlots
from servicekit.http import allow_origins
from servicekit.http import create_app as create_http_app
from servicekit.kafka import broker_connected, ensure_topics, make_broker, wait_for_kafka
from servicekit.metrics import watch_consumer_lag
from servicekit.postgres import connect, create_pool
from servicekit.tokens import JobTokens

SERVICE = "notifier"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = Services(
        settings=settings,
        tokens=JobTokens(
            settings.job_token_secret.get_secret_value(), settings.job_token_ttl_seconds
        ),
        fanout=FanOut(settings.sse_queue_size),
        slots=StreamSlots(settings.sse_max_streams),
    )
    broker = make_broker(
        settings, SERVICE, "Projects job status changes and serves them as SSE streams."
    )

    projector: Projector | None = None
    listener: Listener | None = None

    async def project(
        events: list[tuple[str, JobStatusChanged]], traceparents: list[str | None]
    ) -> None:
        assert projector is not None, "the broker starts after the projector exists"
        await projector.handle(events, traceparents)

    consumer.subscribe(broker, project, settings.consumer_group)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal projector, listener
        await wait_for_kafka(settings.kafka_bootstrap_servers, settings.kafka_wait_seconds)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.kafka_topic_partitions,
            [topics.JOB_STATUS],
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
        timeout = settings.database_timeout_seconds
        pool = await create_pool(
            settings.database_dsn, max_size=settings.database_pool_size, timeout_seconds=timeout
        )
        try:
            store = Store(pool, settings.database_schema)
            await store.create_schema()
            services.store = store
            projector = Projector(store)
            listener = Listener(
                lambda: connect(settings.database_dsn, timeout_seconds=timeout),
                store,
                services.fanout,
                check_seconds=settings.listen_check_seconds,
                reconnect_seconds=settings.listen_reconnect_seconds,
            )
            listening = asyncio.create_task(listener.run())
            lag = asyncio.create_task(watch_consumer_lag(broker))
            try:
                await broker.start()
                try:
                    yield
                finally:
                    await broker.stop()
            finally:
                for task in (listening, lag):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            services.store = None
            await pool.close()

    async def database_answers() -> bool:
        return services.store is not None and await services.store.ping()

    async def listening() -> bool:
        return listener is not None and listener.connected

    app = create_http_app(
        title="notifier",
        service="notifier",
        description="Job progress as Server-Sent Events, replayable from PostgreSQL.",
        lifespan=lifespan,
        readiness=[database_answers, broker_connected(broker), listening],
    )
    # Last-Event-ID: EventSource sends it on a reconnect, so a cross-origin stream resumes.
    allow_origins(
        app,
        settings.cors_allowed_origins,
        methods=["GET"],
        headers=["Authorization", "Last-Event-ID"],
    )
    app.state.services = services
    app.state.broker = broker
    app.include_router(routes.router)
    return app
