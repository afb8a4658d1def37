"""The gateway's composition root: its adapters, the rules around them, then the service
wired with both (docs/architecture.md §15)."""

from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaRouter

from contracts import topics
from gateway import handlers, routes
from gateway.adapters.kafka import KafkaUploadSink, batch_bytes, kafka_answers
from gateway.adapters.postgres import PostgresUploadStore
from gateway.adapters.postgres_limits import PostgresQuota
from gateway.handlers import Erasures
from gateway.ingest import UploadLimits
from gateway.limits import FairUse, NoQuota, renew_forever
from gateway.ports import Quota, UploadSink, UploadStore
from gateway.reachability import Reachability
from gateway.resumable import routes as resumable_routes
from gateway.resumable.uploads import Resumable, expire_forever, prune_forever
from gateway.settings import Settings
from servicekit import http
from servicekit.auth import OwnerAuth, owner_auth
from servicekit.kafka import DeadLetters, raw_body, retention_configs
from servicekit.service import Service
from servicekit.tokens import JobTokens

SERVICE = "gateway"
DESCRIPTION = "Validates audio uploads and puts them on Kafka."

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


@dataclass(frozen=True)
class Adapters:
    """The gateway's external systems; tests pass fakes. Without ``sink`` the gateway
    sends on its broker (``adapters/kafka.py``)."""

    store: UploadStore
    quota: Quota
    sink: UploadSink | None = None

    @classmethod
    def real(cls, settings: Settings) -> "Adapters":
        rules = fair_use(settings)
        # With every limit off no database is asked (a one-shot upload needs none).
        lease_seconds = settings.upload_lease_seconds
        quota: Quota = NoQuota() if rules.off else PostgresQuota(settings, rules, lease_seconds)
        return cls(PostgresUploadStore(settings, settings.upload_lock_wait_seconds), quota)


def create_app(settings: Settings | None = None, adapters: Adapters | None = None) -> FastAPI:
    settings = settings or Settings()
    adapters = adapters or Adapters.real(settings)
    store, quota = adapters.store, adapters.quota
    svc = Service(
        settings,
        name=SERVICE,
        description=DESCRIPTION,
        topic_configs=topic_configs(settings),
        # The producer first, so uploads are served at once; the job.deleted consumer
        # joins its group meanwhile (after a crash that waits for the dead member's
        # session to expire, ~10 s).
        consume_in_background=True,
        request_timeout_seconds=settings.kafka_timeout_seconds,
        max_batch_bytes=batch_bytes(settings.chunk_bytes),
    )
    reachability = Reachability(
        kafka_answers(svc.broker, settings.kafka_timeout_seconds),
        settings.kafka_probe_interval_seconds,
    )
    sink = adapters.sink or KafkaUploadSink(
        svc.broker, reachability, settings.kafka_timeout_seconds
    )

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

    async def expire_uploads() -> None:
        await expire_forever(resumable, settings.upload_expiry_sweep_seconds)

    async def prune_uploads() -> None:
        await prune_forever(
            store,
            settings.upload_expiry_sweep_seconds,
            settings.ended_upload_retention_seconds,
            settings.job_tombstone_seconds,
        )

    async def renew_leases() -> None:
        await renew_forever(quota, settings.upload_lease_seconds / 3)

    svc.provide(UploadSink, sink)
    svc.provide(UploadLimits, limits)
    svc.provide(JobTokens, tokens)
    svc.provide(Quota, quota)
    svc.provide(OwnerAuth, owner_auth(settings, http_client))
    svc.provide(Resumable, resumable)
    svc.provide(Erasures, Erasures(resumable, DeadLetters(svc.broker, (topics.JOB_DELETED,))))
    subscribe(svc, settings)
    svc.on_stop(http_client.aclose)
    svc.resource(store, "PostgreSQL")
    svc.resource(quota, "PostgreSQL")  # after the store: the quota reads its uploads table
    svc.background(reachability.run, name="kafka-reachability", stop=reachability.stop)
    svc.background(expire_uploads, name="upload-expiry")  # it publishes
    svc.background(prune_uploads, name="upload-pruning")
    svc.background(renew_leases, name="quota-renewal")
    svc.readiness(reachability.kafka_connected)
    app = svc.app(title="audiopipe gateway")
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


def fair_use(settings: Settings) -> FairUse:
    return FairUse(
        rate_per_minute=settings.upload_rate_per_minute,
        burst=settings.upload_rate_burst,
        open_per_client=settings.uploads_open_per_client,
        bytes_per_day=settings.upload_bytes_per_day,
        bytes_in_flight=settings.upload_bytes_in_flight,
    )


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """``audio.upload`` (and its dead-letter topic, which may hold a chunk) keeps the raw
    audio only as long as a replay needs it (docs/scaling.md)."""
    kept = retention_configs(settings.audio_upload_retention_seconds)
    return {topics.AUDIO_UPLOAD: kept, topics.dead_letter(topics.AUDIO_UPLOAD): kept}


def subscribe(svc: Service, settings: Settings) -> None:
    """The ``job.deleted`` subscriber: a deleted job's resumable upload ends and is erased."""
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
    svc.broker.include_router(router)
