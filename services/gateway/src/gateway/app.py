"""The gateway's wiring: settings, Kafka broker, routes."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from contracts import JobStatusChanged, UploadAborted, UploadFinished, UploadStarted, topics
from gateway.adapters.postgres import UploadStore
from gateway.auth import UploadAuth
from gateway.ingest import UploadLimits
from gateway.reachability import Reachability
from gateway.resumable import routes as resumable_routes
from gateway.resumable.uploads import Resumable, expire_forever
from gateway.routes import router
from gateway.settings import Settings
from gateway.sink import KafkaUploadSink, kafka_answers
from servicekit.http import allow_origins, create_app
from servicekit.kafka import ensure_topics, make_broker, wait_for_kafka
from servicekit.tokens import JobTokens

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


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    broker = make_broker(
        settings,
        "gateway",
        "Accepts audio uploads and streams them into Kafka.",
        request_timeout_seconds=settings.kafka_timeout_seconds,
    )
    reachability = Reachability(
        kafka_answers(broker, settings.kafka_timeout_seconds),
        settings.kafka_probe_interval_seconds,
    )
    broker.publisher(
        topics.AUDIO_UPLOAD,
        title="audio.upload",
        description="UploadStarted, raw chunk messages (ce_sequence header), then "
        "UploadFinished or UploadAborted; keyed by job id.",
        schema=UploadStarted | UploadFinished | UploadAborted,
    )
    broker.publisher(topics.JOB_STATUS, description="`accepted`", schema=JobStatusChanged)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await wait_for_kafka(settings.kafka_bootstrap_servers)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
        )
        async with asyncpg.create_pool(settings.database_dsn, min_size=1) as pool:
            store = UploadStore(pool, settings.upload_lock_wait_seconds)
            await store.create_schema()
            app.state.resumable = Resumable(
                store,
                app.state.sink,
                app.state.limits,
                app.state.tokens,
                settings.upload_expiry_seconds,
                settings.tus_checksum_max_bytes,
            )
            await broker.start()
            probing = asyncio.create_task(reachability.run(), name="kafka-reachability")
            expiry = asyncio.create_task(
                expire_forever(app.state.resumable, settings.upload_expiry_sweep_seconds)
            )
            try:
                yield
            finally:
                expiry.cancel()
                reachability.stop()
                probing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probing
                await broker.stop()

    app = create_app(
        title="audiopipe gateway",
        service="gateway",
        description="Validates audio uploads and puts them on Kafka.",
        lifespan=lifespan,
        readiness=[reachability.kafka_connected],
    )
    app.state.sink = KafkaUploadSink(broker, reachability, settings.kafka_timeout_seconds)
    app.state.limits = UploadLimits(
        max_bytes=settings.max_upload_bytes,
        chunk_bytes=settings.chunk_bytes,
        max_chunks_in_flight=settings.max_chunks_in_flight,
        ack_timeout_seconds=settings.kafka_timeout_seconds,
    )
    app.state.tokens = JobTokens(
        settings.job_token_secret.get_secret_value(), settings.job_token_ttl_seconds
    )
    app.state.broker = broker
    app.state.auth = UploadAuth(
        key=settings.upload_jwt_key.get_secret_value() if settings.upload_jwt_key else None,
        algorithm=settings.upload_jwt_algorithm,
        audience=settings.upload_jwt_audience,
        issuer=settings.upload_jwt_issuer,
    )
    allow_origins(
        app,
        settings.cors_allowed_origins,
        methods=["POST", "HEAD", "PATCH", "DELETE", "OPTIONS"],
        headers=["Authorization", "Content-Type", *RESUMABLE_HEADERS],
        # What a resumable client on another origin must read from the answers.
        expose=[
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
        ],
    )
    app.include_router(router)
    app.include_router(resumable_routes.router)
    return app
