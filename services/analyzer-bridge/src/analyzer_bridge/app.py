"""The analyzer-bridge's composition root: every dependency is built here, then the
handler and the routes are registered with them (docs/architecture.md, "Adding a
service")."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter

from analyzer_bridge import handlers, routes
from analyzer_bridge.adapters.analysis_server import HttpAnalysisServer
from analyzer_bridge.adapters.kafka import KafkaEventPublisher
from analyzer_bridge.adapters.postgres import PostgresStore
from analyzer_bridge.adapters.s3 import S3Presigner
from analyzer_bridge.capability import Capabilities
from analyzer_bridge.deadlines import Sweeper
from analyzer_bridge.finishing import Finisher
from analyzer_bridge.handlers import Intake
from analyzer_bridge.lifecycle import Retention
from analyzer_bridge.ports import AnalysisServer, AnalysisStore, Presigner
from analyzer_bridge.requesting import Requester
from analyzer_bridge.routes import WebhookDeps
from analyzer_bridge.settings import Settings
from servicekit import http
from servicekit.http import ReadinessCheck
from servicekit.kafka import (
    ConsumingInBackground,
    broker_connected,
    make_broker,
    prepare_kafka,
    raw_body,
)
from servicekit.metrics import watch_consumer_lag

log = logging.getLogger(__name__)

SERVICE = "analyzer-bridge"
DESCRIPTION = (
    "Asks the analysis server to analyse stored audio, turns its webhooks into "
    "`analysis.result` and `job.status` events, and owns retries and deadlines."
)


@dataclass(frozen=True)
class Bridge:
    """What :func:`create_broker` built around the adapters, for the app and for tests."""

    finisher: Finisher
    requester: Requester
    sweeper: Sweeper
    retention: Retention
    intake: Intake
    webhooks: WebhookDeps


def create_broker(
    settings: Settings, store: AnalysisStore, server: AnalysisServer, presigner: Presigner
) -> tuple[KafkaBroker, Bridge]:
    """The broker with the bridge's publishers and its ``audio.stored`` subscriber, and
    the rules wired to ``store``, ``server`` and ``presigner``."""
    broker = make_broker(settings, SERVICE, DESCRIPTION)
    events = KafkaEventPublisher(
        broker,
        settings.analysis_result_topic,
        settings.job_status_topic,
        (settings.audio_stored_topic, settings.job_deleted_topic),
    )
    finisher = Finisher(store, events)
    capabilities = Capabilities(
        settings.webhook_capability_secret.get_secret_value(),
        # Valid past the deadline, so a late result still gets its 409, not a 401.
        ttl_seconds=settings.analysis_deadline_seconds + 24 * 3600,
    )
    requester = Requester(
        store=store,
        server=server,
        presigner=presigner,
        capabilities=capabilities,
        finisher=finisher,
        public_base_url=settings.public_base_url,
        max_attempts=settings.request_max_attempts,
        base_delay=settings.retry_base_delay_seconds,
        max_delay=settings.retry_max_delay_seconds,
        lease_seconds=settings.request_lease_seconds,
        metadata=settings.analysis_request_metadata,
    )
    sweeper = Sweeper(
        store,
        finisher,
        requester,
        interval_seconds=settings.deadline_sweep_interval_seconds,
        deadline_seconds=settings.analysis_deadline_seconds,
    )
    retention = Retention(
        store,
        finished_seconds=settings.analysis_retention_seconds,
        tombstone_seconds=settings.job_tombstone_seconds,
        interval_seconds=settings.retention_sweep_seconds,
    )
    intake = Intake(store, requester, events, settings.analysis_deadline_seconds)
    broker.context.set_global("intake", intake)

    topic = settings.audio_stored_topic
    router = KafkaRouter()
    router.subscriber(
        topic,
        group_id=settings.consumer_group,
        # Commit after the handler; on an exception rewind so the message comes again.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="latest" if settings.kafka_auto_offset_reset == "latest" else "earliest",
        decoder=raw_body,
        title=f"{topic}:analyzer-bridge",
        description="Audio durably stored in S3: request its analysis.",
    )(handlers.on_audio_stored)
    router.subscriber(
        settings.job_deleted_topic,
        # Its own group: its offsets do not depend on audio.stored's.
        group_id=settings.deletion_consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="latest" if settings.kafka_auto_offset_reset == "latest" else "earliest",
        decoder=raw_body,
        title=f"{settings.job_deleted_topic}:analyzer-bridge",
        description="A deleted job: its pending analysis is abandoned and its row erased (a "
        "tombstone stays: a redelivered audio.stored starts nothing, a late webhook gets 410).",
    )(handlers.on_deleted)
    broker.include_router(router)

    signing = settings.webhook_signing_secret
    webhooks = WebhookDeps(
        store=store,
        finisher=finisher,
        capabilities=capabilities,
        signing_secret=signing.get_secret_value() if signing else None,
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    return broker, Bridge(finisher, requester, sweeper, retention, intake, webhooks)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = PostgresStore(settings)
    presigner = S3Presigner(
        settings,
        endpoint_url=settings.presign_endpoint_url,
        expires_seconds=settings.presign_expiry_seconds,
    )
    signing = settings.webhook_signing_secret
    server = HttpAnalysisServer(
        settings.analysis_server_url,
        settings.request_timeout_seconds,
        # The secret the analysis server signs its webhooks with signs our requests.
        signing_secret=signing.get_secret_value() if signing else None,
    )
    broker, bridge = create_broker(settings, store, server, presigner)
    consumer = ConsumingInBackground(broker, f"{settings.audio_stored_topic}, job.deleted")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_kafka(
            settings,
            (
                settings.audio_stored_topic,
                settings.analysis_result_topic,
                settings.job_status_topic,
                settings.job_deleted_topic,
            ),
        )
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(store)  # the pool, and the schema
            await stack.enter_async_context(presigner)
            await stack.enter_async_context(server)
            stack.push_async_callback(bridge.requester.stop)
            # The producer first, so webhooks can be served at once; the consumer joins
            # its group in the background. After a crash that join waits for the dead
            # member's session to time out (~10 s), and the analysis server's webhooks
            # for jobs requested before the crash must not be refused meanwhile.
            await broker.connect()
            stack.push_async_callback(broker.stop)
            consumer.start()
            stack.push_async_callback(consumer.stop)
            lag = asyncio.create_task(watch_consumer_lag(broker), name="consumer-lag")
            stack.push_async_callback(_cancel, lag)
            sweeping = asyncio.create_task(bridge.sweeper.run(), name="deadline-sweeper")
            stack.push_async_callback(_cancel, sweeping)
            pruning = asyncio.create_task(bridge.retention.run(), name="retention")
            stack.push_async_callback(_cancel, pruning)
            yield

    app = http.create_app(
        title="analyzer-bridge",
        service=SERVICE,
        description=DESCRIPTION,
        lifespan=lifespan,
        readiness=[_database(store), broker_connected(broker), consumer.alive],
    )
    app.include_router(routes.router)
    app.state.broker = broker
    app.state.webhooks = bridge.webhooks
    return app


def _database(store: AnalysisStore) -> ReadinessCheck:
    async def database() -> bool:
        return await store.ping()

    return database


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    # A task that failed was logged where it failed; stopping goes on regardless.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
