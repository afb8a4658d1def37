"""The gateway's composition root: every dependency is built here, then the routes are
registered with them (docs/architecture.md, "Adding a service")."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter

from contracts import topics
from gateway import handlers, routes
from gateway.adapters.kafka import KafkaUploadSink, kafka_answers
from gateway.adapters.postgres import PostgresUploadStore
from gateway.adapters.postgres_limits import PostgresQuota
from gateway.ingest import UploadLimits
from gateway.limits import FairUse, NoQuota
from gateway.ports import Quota, UploadSink, UploadStore
from gateway.reachability import Reachability
from gateway.resumable import routes as resumable_routes
from gateway.resumable.uploads import Resumable, expire_forever, prune_forever
from gateway.settings import Settings
from servicekit import http
from servicekit.auth import owner_auth
from servicekit.kafka import (
    ConsumingInBackground,
    DeadLetters,
    make_broker,
    prepare_kafka,
    raw_body,
    retention_configs,
)
from servicekit.tokens import JobTokens

SERVICE = "gateway"
log = logging.getLogger(__name__)

RESUMABLE_HEADERS = (
    "Upload-Complete",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Draft-Interop-Version",
    "Repr-Digest",
    "Content-Disposition",
    "Tus-Resumable",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Defer-Length",
)

EXPOSED_HEADERS = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Complete",
    "Upload-Limit",
    "Upload-Expires",
    "Repr-Digest",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
)
"""What a resumable client on another origin must read from the answers."""


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """``audio.upload`` (and its dead-letter topic, which may hold a chunk) keeps the raw
    audio only as long as a replay needs it (docs/scaling.md)."""
    kept = retention_configs(settings.audio_upload_retention_seconds)
    return {topics.AUDIO_UPLOAD: kept, topics.dead_letter(topics.AUDIO_UPLOAD): kept}


def subscribe_deletions(broker: KafkaBroker, settings: Settings, resumable: Resumable) -> None:
    """The ``job.deleted`` subscriber: a deleted job's resumable upload ends and is erased."""
    broker.context.set_global(
        "erasures", handlers.Erasures(resumable, DeadLetters(broker, (topics.JOB_DELETED,)))
    )
    router = KafkaRouter()
    router.subscriber(
        topics.JOB_DELETED,
        group_id=settings.deletion_consumer_group,
        auto_offset_reset="earliest",
        # Committed once the erasure is written; on an error it comes again.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=raw_body,
        title="job.deleted:gateway",
        description="Ends a deleted job's resumable upload (an append in progress is "
        "stopped, UploadAborted tells the uploader) and erases its row and fair-use leases; "
        "a tombstone answers 410.",
    )(handlers.on_deleted)
    broker.include_router(router)


def create_broker(settings: Settings) -> KafkaBroker:
    """The broker of the gateway."""
    broker = make_broker(
        settings,
        SERVICE,
        "Accepts audio uploads and streams them into Kafka.",
        request_timeout_seconds=settings.kafka_timeout_seconds,
    )
    return broker


def fair_use(settings: Settings) -> FairUse:
    return FairUse(
        rate_per_minute=settings.upload_rate_per_minute,
        burst=settings.upload_rate_burst,
        open_per_client=settings.uploads_open_per_client,
        bytes_per_day=settings.upload_bytes_per_day,
        bytes_in_flight=settings.upload_bytes_in_flight,
    )


def create_app(
    settings: Settings | None = None,
    *,
    sink: UploadSink | None = None,
    store: UploadStore | None = None,
    quota: Quota | None = None,
) -> FastAPI:
    """The gateway. ``sink``, ``store`` and ``quota`` replace the Kafka and PostgreSQL
    adapters (unit tests pass fakes); the lifespan still waits for Kafka and enters the
    store and the quota when they are adapters."""
    settings = settings or Settings()
    broker = create_broker(settings)
    reachability = Reachability(
        kafka_answers(broker, settings.kafka_timeout_seconds),
        settings.kafka_probe_interval_seconds,
    )
    sink = sink or KafkaUploadSink(broker, reachability, settings.kafka_timeout_seconds)
    store = store or PostgresUploadStore(settings, settings.upload_lock_wait_seconds)
    limits = UploadLimits(
        max_bytes=settings.max_upload_bytes,
        chunk_bytes=settings.chunk_bytes,
        max_chunks_in_flight=settings.max_chunks_in_flight,
        ack_timeout_seconds=settings.kafka_timeout_seconds,
        body_idle_seconds=settings.upload_body_idle_seconds,
        body_min_bytes_per_second=settings.upload_body_min_bytes_per_second,
    )
    tokens = JobTokens(settings.job_token_secret.get_secret_value(), settings.job_token_ttl_seconds)
    # The identity provider's keys (JWKS, discovery): small, rare requests.
    http_client = httpx.AsyncClient(timeout=settings.kafka_timeout_seconds)
    auth = owner_auth(settings, http_client)
    rules = fair_use(settings)
    if quota is None:
        quota = (
            NoQuota()
            if rules.off
            else PostgresQuota(settings, rules, settings.upload_lease_seconds)
        )
    resumable = Resumable(
        store,
        sink,
        limits,
        tokens,
        quota,
        settings.upload_expiry_seconds,
        settings.tus_checksum_max_bytes,
        max_age_seconds=settings.upload_max_age_seconds,
    )
    subscribe_deletions(broker, settings, resumable)
    consumer = ConsumingInBackground(broker, topics.JOB_DELETED)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await prepare_kafka(settings, configs=topic_configs(settings))
            stack.push_async_callback(http_client.aclose)
            if isinstance(store, contextlib.AbstractAsyncContextManager):
                await stack.enter_async_context(store)
            # After the store: the quota reads its uploads table.
            if isinstance(quota, contextlib.AbstractAsyncContextManager):
                await stack.enter_async_context(quota)
            # Resumable uploads are offered once their store is open (until then 503).
            app.state.resumable = resumable
            stack.callback(delattr, app.state, "resumable")
            # The producer first, so uploads are served at once; the job.deleted consumer
            # joins its group in the background (after a crash that waits for the dead
            # member's session to expire, ~10 s).
            await broker.connect()
            stack.push_async_callback(broker.stop)
            consumer.start()
            stack.push_async_callback(consumer.stop)
            probing = asyncio.create_task(reachability.run(), name="kafka-reachability")
            stack.push_async_callback(_stopped, reachability, probing)
            expiry = asyncio.create_task(
                expire_forever(resumable, settings.upload_expiry_sweep_seconds)
            )
            stack.callback(expiry.cancel)
            pruning = asyncio.create_task(
                prune_forever(
                    store,
                    settings.upload_expiry_sweep_seconds,
                    settings.ended_upload_retention_seconds,
                    settings.job_tombstone_seconds,
                )
            )
            stack.callback(pruning.cancel)
            renewing = asyncio.create_task(
                renew_forever(quota, settings.upload_lease_seconds / 3), name="quota-renewal"
            )
            stack.callback(renewing.cancel)
            yield

    app = http.create_app(
        title="audiopipe gateway",
        service=SERVICE,
        description="Validates audio uploads and puts them on Kafka.",
        lifespan=lifespan,
        readiness=[reachability.kafka_connected, consumer.alive],
    )
    app.state.broker = broker
    app.state.sink, app.state.limits, app.state.tokens, app.state.auth = sink, limits, tokens, auth
    app.state.quota = quota
    http.allow_origins(
        app,
        settings.cors_allowed_origins,
        methods=["POST", "HEAD", "PATCH", "DELETE", "OPTIONS"],
        headers=["Authorization", "Content-Type", *RESUMABLE_HEADERS],
        expose=list(EXPOSED_HEADERS),
    )
    app.include_router(routes.router)
    app.include_router(resumable_routes.router)
    return app


async def _stopped(reachability: Reachability, probing: "asyncio.Task[None]") -> None:
    reachability.stop()
    probing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probing


async def renew_forever(quota: Quota, every_seconds: float) -> None:
    """Keep this replica's uploads counted while they last (docs/architecture.md §6)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await quota.renew()
        except Exception:
            log.warning("could not renew the uploads' leases", exc_info=True)
