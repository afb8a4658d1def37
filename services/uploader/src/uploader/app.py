"""The uploader's wiring: S3 client, Kafka subscriber, health routes."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from contracts import AudioStored, JobStatusChanged, topics
from servicekit.http import create_app
from servicekit.kafka import broker_connected, ensure_topics, make_broker, wait_for_kafka
from servicekit.metrics import watch_consumer_lag
from servicekit.s3 import ensure_bucket, s3_client
from uploader.assembly import Assembler
from uploader.consumer import register
from uploader.outbox import KafkaOutbox
from uploader.settings import Settings
from uploader.storage import S3ObjectStore
from uploader.sweeper import sweep_forever


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    broker = make_broker(settings, "uploader", "Streams uploads from Kafka into S3.")
    broker.publisher(topics.AUDIO_STORED, schema=AudioStored, description="Audio is in S3.")
    broker.publisher(
        topics.JOB_STATUS, schema=JobStatusChanged, description="`uploading`, `uploaded`, `failed`."
    )
    store = S3ObjectStore(settings.s3_bucket)
    assembler = Assembler(
        store,
        KafkaOutbox(broker),
        settings.s3_bucket,
        settings.key_prefix,
        settings.part_bytes,
        progress_interval=settings.progress_interval_seconds,
    )
    register(broker, assembler, settings.consumer_group)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(s3_client(settings))
            if settings.s3_create_bucket:
                await ensure_bucket(client, settings.s3_bucket)
            store.client = client
            await wait_for_kafka(settings.kafka_bootstrap_servers)
            await ensure_topics(
                settings.kafka_bootstrap_servers,
                settings.kafka_topic_partitions,
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas,
            )
            await broker.start()
            stack.push_async_callback(broker.stop)
            sweeper = asyncio.create_task(
                sweep_forever(
                    store,
                    settings.key_prefix,
                    timedelta(seconds=settings.stale_upload_seconds),
                    settings.stale_sweep_interval_seconds,
                    assembler.owned_uploads,
                )
            )
            stack.callback(sweeper.cancel)
            lag = asyncio.create_task(watch_consumer_lag(broker))
            stack.callback(lag.cancel)
            yield

    app = create_app(
        title="audiopipe uploader",
        service="uploader",
        description="Consumes audio.upload and writes each job's audio to S3.",
        lifespan=lifespan,
        readiness=[broker_connected(broker)],
    )
    app.state.broker = broker
    return app
