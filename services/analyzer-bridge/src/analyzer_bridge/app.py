"""The analyzer-bridge application: the one place its dependencies are wired."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from analyzer_bridge import consumer
from analyzer_bridge.capability import Capabilities
from analyzer_bridge.deadlines import Sweeper
from analyzer_bridge.events import KafkaEvents, Topics
from analyzer_bridge.finishing import Finisher
from analyzer_bridge.presign import S3Presigner
from analyzer_bridge.requests import HttpAnalysisServer, Requester
from analyzer_bridge.settings import Settings
from analyzer_bridge.store import Store
from analyzer_bridge.webhook_routes import WebhookDeps, router
from contracts import AnalysisCompleted, AnalysisFailed, AudioStored, JobStatusChanged
from servicekit.http import create_app
from servicekit.kafka import broker_connected, ensure_topics, make_broker, wait_for_kafka
from servicekit.metrics import watch_consumer_lag
from servicekit.postgres import create_pool
from servicekit.s3 import s3_client

log = logging.getLogger(__name__)

SERVICE = "analyzer-bridge"
DESCRIPTION = (
    "Asks the analysis server to analyse stored audio, turns its webhooks into "
    "`analysis.result` and `job.status` events, and owns retries and deadlines."
)


@dataclass
class Running:
    store: Store
    requester: Requester


def create(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    broker = make_broker(settings, SERVICE, DESCRIPTION)
    # Declared for the AsyncAPI document; events go out through publish_event.
    broker.publisher(
        settings.analysis_result_topic,
        title=f"{settings.analysis_result_topic}:analyzer-bridge",
        description="The analysis server's final answer for a job.",
        schema=AnalysisCompleted | AnalysisFailed,
    )
    broker.publisher(
        settings.job_status_topic,
        title=f"{settings.job_status_topic}:analyzer-bridge",
        description="`analyzing` progress and the final `completed` or `failed`.",
        schema=JobStatusChanged,
    )
    running: list[Running] = []

    async def on_audio_stored(event: AudioStored) -> None:
        await consumer.accept(
            running[0].store, running[0].requester, event, settings.analysis_deadline_seconds
        )

    consumer.register(
        broker,
        topic=settings.audio_stored_topic,
        group_id=settings.consumer_group,
        auto_offset_reset=settings.kafka_auto_offset_reset,
        on_event=on_audio_stored,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await wait_for_kafka(settings.kafka_bootstrap_servers)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.kafka_topic_partitions,
            (
                settings.audio_stored_topic,
                settings.analysis_result_topic,
                settings.job_status_topic,
            ),
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
        async with contextlib.AsyncExitStack() as stack:
            pool = await create_pool(
                settings.database_dsn,
                max_size=settings.database_pool_size,
                timeout_seconds=settings.database_timeout_seconds,
            )
            stack.push_async_callback(pool.close)
            store = Store(pool, settings.database_schema)
            await store.create_schema()
            s3 = await stack.enter_async_context(
                s3_client(settings, endpoint_url=settings.presign_endpoint_url)
            )
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.request_timeout_seconds)
            )
            capabilities = Capabilities(
                settings.webhook_capability_secret.get_secret_value(),
                # Valid past the deadline, so a late result still gets its 409, not a 401.
                ttl_seconds=settings.analysis_deadline_seconds + 24 * 3600,
            )
            topics = Topics(settings.analysis_result_topic, settings.job_status_topic)
            finisher = Finisher(store, KafkaEvents(broker), topics)
            requester = Requester(
                store=store,
                server=HttpAnalysisServer(http, settings.analysis_server_url),
                presigner=S3Presigner(s3, settings.presign_expiry_seconds),
                capabilities=capabilities,
                finisher=finisher,
                public_base_url=settings.public_base_url,
                max_attempts=settings.request_max_attempts,
                base_delay=settings.retry_base_delay_seconds,
                max_delay=settings.retry_max_delay_seconds,
                lease_seconds=settings.request_lease_seconds,
                metadata=settings.analysis_request_metadata,
            )
            stack.push_async_callback(requester.stop)
            running.append(Running(store, requester))
            signing = settings.webhook_signing_secret
            app.state.webhook_deps = WebhookDeps(
                store=store,
                finisher=finisher,
                capabilities=capabilities,
                signing_secret=signing.get_secret_value() if signing else None,
                tolerance_seconds=settings.webhook_tolerance_seconds,
            )
            app.state.requester = requester
            # The producer first, so webhooks can be served at once; the consumer joins
            # its group in the background. After a crash that join waits for the dead
            # member's session to time out (~10 s), and the analysis server's webhooks
            # for jobs requested before the crash must not be refused meanwhile.
            await broker.connect()
            stack.push_async_callback(broker.stop)
            consuming = asyncio.create_task(_consume(broker), name="audio-stored-consumer")
            stack.push_async_callback(_cancel, consuming)
            app.state.consuming = consuming
            lag = asyncio.create_task(watch_consumer_lag(broker), name="consumer-lag")
            stack.push_async_callback(_cancel, lag)
            sweeper = Sweeper(
                store,
                finisher,
                requester,
                interval_seconds=settings.deadline_sweep_interval_seconds,
                deadline_seconds=settings.analysis_deadline_seconds,
            )
            sweeping = asyncio.create_task(sweeper.run(), name="deadline-sweeper")
            try:
                yield
            finally:
                await _cancel(sweeping)
                running.clear()

    async def database() -> bool:
        return bool(running) and await running[0].store.ping()

    async def consumer_alive() -> bool:
        """Joining the group may take a while; failing to start may not pass unseen."""
        consuming: asyncio.Task[None] | None = getattr(app.state, "consuming", None)
        if consuming is None:
            return False
        if not consuming.done():
            return True
        return not consuming.cancelled() and consuming.exception() is None

    app = create_app(
        title="analyzer-bridge",
        service="analyzer-bridge",
        description=DESCRIPTION,
        lifespan=lifespan,
        readiness=[database, broker_connected(broker), consumer_alive],
    )
    app.include_router(router)
    app.state.broker = broker
    return app


async def _consume(broker: KafkaBroker) -> None:
    try:
        await broker.start()
    except Exception:
        log.exception("the audio.stored consumer did not start; the service is not ready")
        raise


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    # A task that failed was logged where it failed; stopping goes on regardless.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
