"""The gateway's wiring: settings, Kafka broker, routes."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from contracts import JobStatusChanged, UploadAborted, UploadFinished, UploadStarted, topics
from gateway.auth import UploadAuth
from gateway.ingest import UploadLimits
from gateway.reachability import Reachability
from gateway.routes import router
from gateway.settings import Settings
from gateway.sink import KafkaUploadSink, kafka_answers
from servicekit.http import allow_origins, create_app
from servicekit.kafka import ensure_topics, make_broker, wait_for_kafka
from servicekit.tokens import JobTokens


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
        await broker.start()
        probing = asyncio.create_task(reachability.run(), name="kafka-reachability")
        try:
            yield
        finally:
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
        methods=["POST"],
        headers=["Authorization", "Content-Type"],
    )
    app.include_router(router)
    return app
