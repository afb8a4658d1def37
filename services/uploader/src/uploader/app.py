"""The uploader's composition root: every dependency is built here, then the handler
and the routes are registered with them (docs/architecture.md, "Adding a service")."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.middlewares import AckPolicy

from contracts import topics
from servicekit import http
from servicekit.kafka import (
    broker_connected,
    make_broker,
    prepare_kafka,
    raw_body,
    retention_configs,
    stop_if_fetching_ends,
)
from servicekit.metrics import watch_consumer_lag
from uploader import handlers
from uploader.adapters.kafka import KafkaEventPublisher
from uploader.adapters.postgres import PostgresCheckpoints
from uploader.adapters.rereading import KafkaChunkReader
from uploader.adapters.s3 import S3ObjectStore
from uploader.assembly import Assembler
from uploader.erasure import Erasure
from uploader.handlers import Rebalance, Uploads
from uploader.ports import CheckpointStore, ChunkSource, ObjectStore, Tombstones
from uploader.retention import Retention
from uploader.settings import Settings
from uploader.sweeper import sweep_forever

SERVICE = "uploader"


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """``audio.upload`` (and its dead-letter topic, which may hold a chunk) keeps the raw
    audio only as long as a replay needs it (docs/scaling.md)."""
    kept = retention_configs(settings.audio_upload_retention_seconds)
    return {topics.AUDIO_UPLOAD: kept, topics.dead_letter(topics.AUDIO_UPLOAD): kept}


def create_broker(
    settings: Settings,
    store: ObjectStore,
    checkpoints: CheckpointStore | None = None,
    chunks: ChunkSource | None = None,
    tombstones: Tombstones | None = None,
) -> tuple[KafkaBroker, Uploads]:
    """The broker with the uploader's publishers and its ``audio.upload`` subscriber,
    wired to ``store``, and, given ``checkpoints`` and ``tombstones``, its ``job.deleted``
    subscriber; also what the handler was given, for the app and for tests. Without
    ``chunks`` (unit tests) the memory budget is not enforced."""
    broker = make_broker(settings, SERVICE, "Streams uploads from Kafka into S3.")
    events = KafkaEventPublisher(broker)
    assembler = Assembler(
        store,
        events,
        settings.s3_bucket,
        settings.key_prefix,
        settings.part_bytes,
        progress_interval=settings.progress_interval_seconds,
        checkpoints=checkpoints,
        budget=settings.memory_budget_bytes,
        chunks=chunks,
        tombstones=tombstones,
    )
    uploads = Uploads(assembler, events)
    broker.context.set_global("uploads", uploads)

    router = KafkaRouter()
    router.subscriber(
        topics.AUDIO_UPLOAD,
        group_id=settings.consumer_group,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        # Prefetched records count against memory too: a couple of chunks per partition
        # and a small total, instead of aiokafka's 1 MiB per partition and 50 MiB total.
        max_partition_fetch_bytes=2 * 1024 * 1024,
        fetch_max_bytes=8 * 1024 * 1024,
        # Every byte is verified against the gateway's sha256 before an upload is
        # completed (docs/architecture.md §5.4), so the CRC32C of each fetched batch
        # would be a second pass over it that catches nothing more (issue 14).
        check_crcs=False,
        listener=Rebalance(uploads),
        decoder=raw_body,
        title="audio.upload",
        description="Reassembles uploads into S3 objects.",
    )(handlers.on_upload)
    if checkpoints is not None and tombstones is not None:
        erasure = Erasure(
            assembler,
            uploads.tracker,
            uploads.lock,
            tombstones,
            checkpoints,
            store,
            events,
            settings.key_prefix,
        )
        broker.context.set_global("erasure", erasure)
        router.subscriber(
            topics.JOB_DELETED,
            # Its own group: erasures do not wait for uploads' commits, nor hold them.
            group_id=settings.deletion_consumer_group,
            auto_offset_reset="earliest",
            # Committed once the erasure is done; on an error it comes again.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=raw_body,
            title="job.deleted:uploader",
            description="Erases a deleted job's audio: no later message of it is stored (a "
            "tombstone), its open upload is dropped, its multipart upload aborted, its "
            "checkpoint and its object deleted.",
        )(handlers.on_deleted)
    broker.include_router(router)
    return broker, uploads


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = S3ObjectStore(settings)
    database = PostgresCheckpoints(settings)
    chunks = KafkaChunkReader(settings, settings.reread_timeout_seconds)
    broker, uploads = create_broker(settings, store, database, chunks, database)
    retention = Retention(
        store,
        uploads.events,
        database,
        database,
        prefix=settings.key_prefix,
        audio_seconds=settings.audio_retention_seconds,
        tombstone_seconds=settings.job_tombstone_seconds,
        interval_seconds=settings.audio_retention_sweep_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(store)
            await stack.enter_async_context(database)
            await prepare_kafka(settings, configs=topic_configs(settings))
            await stack.enter_async_context(chunks)
            await broker.start()
            stack.push_async_callback(broker.stop)
            stop_if_fetching_ends(broker)
            stale = timedelta(seconds=settings.stale_upload_seconds)
            sweeper = asyncio.create_task(
                sweep_forever(
                    store,
                    settings.key_prefix,
                    stale,
                    settings.stale_sweep_interval_seconds,
                    uploads.assembler.owned_uploads,
                    uploads.assembler.checkpointed_uploads,
                    timedelta(seconds=settings.upload_max_age_seconds) + stale,
                    database.delete,
                )
            )
            stack.callback(sweeper.cancel)
            # It publishes: once the broker runs, and stopped before it.
            sweeping = asyncio.create_task(retention.run())
            stack.callback(sweeping.cancel)
            lag = asyncio.create_task(watch_consumer_lag(broker))
            stack.callback(lag.cancel)
            yield

    app = http.create_app(
        title="audiopipe uploader",
        service=SERVICE,
        description="Consumes audio.upload and writes each job's audio to S3.",
        lifespan=lifespan,
        readiness=[broker_connected(broker)],
    )
    app.state.broker = broker
    return app
