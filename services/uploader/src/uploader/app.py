"""The uploader's composition root: its adapters, the rules around them, then the
service wired with both (docs/architecture.md §15)."""

from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI
from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy

from contracts import topics
from servicekit.kafka import CoalescedCommits, broker_connected, raw_body, retention_configs
from servicekit.metrics import watch_consumer_lag
from servicekit.service import Service
from uploader import handlers
from uploader.adapters.kafka import KafkaEventPublisher
from uploader.adapters.postgres import PostgresCheckpoints
from uploader.adapters.rereading import KafkaChunkReader
from uploader.adapters.s3 import S3ObjectStore
from uploader.assembly import Assembler
from uploader.erasure import Erasure
from uploader.handlers import Rebalance, Uploads
from uploader.ports import ChunkSource, Database, ObjectStore
from uploader.retention import Retention
from uploader.settings import Settings
from uploader.sweeper import sweep_forever

SERVICE = "uploader"
DESCRIPTION = "Consumes audio.upload and writes each job's audio to S3."


@dataclass(frozen=True)
class Adapters:
    """The uploader's systems besides Kafka; unit tests pass fakes. Without ``chunks``
    the memory budget is not enforced (nothing can be read back)."""

    store: ObjectStore
    database: Database
    chunks: ChunkSource | None = None

    @classmethod
    def real(cls, settings: Settings) -> "Adapters":
        return cls(
            S3ObjectStore(settings),
            PostgresCheckpoints(settings),
            KafkaChunkReader(settings, settings.reread_timeout_seconds),
        )


def create_app(settings: Settings | None = None, adapters: Adapters | None = None) -> FastAPI:
    settings = settings or Settings()
    adapters = adapters or Adapters.real(settings)
    store, database = adapters.store, adapters.database
    svc = Service(
        settings, name=SERVICE, description=DESCRIPTION, topic_configs=topic_configs(settings)
    )
    events = KafkaEventPublisher(svc.broker)

    assembler = Assembler(
        store,
        events,
        settings.s3_bucket,
        settings.key_prefix,
        settings.part_bytes,
        progress_interval=settings.progress_interval_seconds,
        checkpoints=database,
        budget=settings.memory_budget_bytes,
        chunks=adapters.chunks,
        tombstones=database,
    )
    uploads = Uploads(
        assembler, events, commits=CoalescedCommits(settings.kafka_commit_interval_seconds)
    )
    erasure = Erasure(
        assembler,
        uploads.tracker,
        uploads.lock,
        database,
        database,
        store,
        events,
        settings.key_prefix,
    )
    retention = Retention(
        store,
        events,
        database,
        database,
        prefix=settings.key_prefix,
        audio_seconds=settings.audio_retention_seconds,
        tombstone_seconds=settings.job_tombstone_seconds,
        interval_seconds=settings.audio_retention_sweep_seconds,
    )
    stale = timedelta(seconds=settings.stale_upload_seconds)

    async def sweep_stale_uploads() -> None:
        await sweep_forever(
            store,
            settings.key_prefix,
            stale,
            settings.stale_sweep_interval_seconds,
            assembler.owned_uploads,
            assembler.checkpointed_uploads,
            timedelta(seconds=settings.upload_max_age_seconds) + stale,
            database.delete,
        )

    svc.provide(Uploads, uploads)
    svc.provide(Erasure, erasure)
    subscribe(svc, settings, uploads)
    svc.resource(store, "S3")
    svc.resource(database, "PostgreSQL")
    svc.resource(adapters.chunks, "Kafka")
    # Stopped before the broker: its last commit is made while the consumer still runs.
    svc.background(uploads.commits.run, name="offset-commits")
    svc.background(sweep_stale_uploads, name="stale-uploads")
    svc.background(retention.run, name="audio-retention")  # it publishes
    svc.background(lambda: watch_consumer_lag(svc.broker), name="consumer-lag")
    svc.readiness(broker_connected(svc.broker))
    return svc.app(title="audiopipe uploader")


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """``audio.upload`` (and its dead-letter topic, which may hold a chunk) keeps the raw
    audio only as long as a replay needs it (docs/scaling.md)."""
    kept = retention_configs(settings.audio_upload_retention_seconds)
    return {topics.AUDIO_UPLOAD: kept, topics.dead_letter(topics.AUDIO_UPLOAD): kept}


def subscribe(svc: Service, settings: Settings, uploads: Uploads) -> None:
    """The subscribers: ``audio.upload`` into S3, ``job.deleted`` erased."""
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
        title="audio.upload:uploader",
        description="Reassembles uploads into S3 objects.",
    )(handlers.on_upload)
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
    svc.broker.include_router(router)
