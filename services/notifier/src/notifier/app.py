"""The notifier's composition root: its adapters, the rules around them, then the
service wired with both (docs/architecture.md §15)."""

from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaRouter

from contracts import topics
from notifier import gcpauses, handlers, progress, routes
from notifier.adapters.kafka import KafkaDeletions
from notifier.adapters.postgres import PostgresAppliedEvents, PostgresStore
from notifier.deps import Services
from notifier.fanout import FanOut
from notifier.handlers import Erasures, Statuses
from notifier.lifecycle import Deleter, Retention
from notifier.listener import Listener
from notifier.ports import AppliedEvents, Database, Deletions
from notifier.progress import ProgressStreams
from notifier.projector import Projector
from notifier.settings import Settings
from notifier.slots import StreamSlots
from notifier.streams import Heartbeats
from servicekit import http
from servicekit.auth import owner_auth
from servicekit.kafka import (
    BATCH_TIMEOUT_MS,
    CoalescedCommits,
    DeadLetters,
    broker_connected,
    raw_body,
)
from servicekit.metrics import watch_consumer_lag
from servicekit.postgres import connect
from servicekit.service import Service
from servicekit.tokens import JobTokens

SERVICE = "notifier"
DESCRIPTION = "Job progress as Server-Sent Events, replayable from PostgreSQL."

FETCH_MIN_BYTES = 256 * 1024
"""What the broker gathers before it answers the projection's fetch early: a few
hundred statuses (about 0.5 KiB each), so that only a heavy load cuts the wait short."""


@dataclass(frozen=True)
class Adapters:
    """The notifier's PostgreSQL: the projection and lifecycle (``database``) and the
    feed of what was applied (``applied``); tests pass fakes. Without ``deletions`` the
    notifier announces deletions on its broker (``adapters/kafka.py``)."""

    database: Database
    applied: AppliedEvents
    deletions: Deletions | None = None

    @classmethod
    def real(cls, settings: Settings) -> "Adapters":
        timeout = settings.database_timeout_seconds
        store = PostgresStore(
            settings.database_dsn,
            settings.database_schema,
            pool_size=settings.database_pool_size,
            timeout_seconds=timeout,
        )
        applied = PostgresAppliedEvents(
            lambda: connect(settings.database_dsn, timeout_seconds=timeout),
            store.channel,
            check_seconds=settings.listen_check_seconds,
        )
        return cls(store, applied)


def create_app(settings: Settings | None = None, adapters: Adapters | None = None) -> FastAPI:
    settings = settings or Settings()
    adapters = adapters or Adapters.real(settings)
    database = adapters.database
    gcpauses.watch()
    svc = Service(
        settings,
        name=SERVICE,
        description=DESCRIPTION,
        topics=(topics.JOB_STATUS, topics.JOB_DELETED),
    )
    dead_letters = DeadLetters(svc.broker, (topics.JOB_STATUS, topics.JOB_DELETED))
    deletions = adapters.deletions or KafkaDeletions(svc.broker, settings.kafka_timeout_seconds)

    fanout = FanOut(settings.sse_queue_size)
    listener = Listener(
        adapters.applied,
        database,
        fanout,
        reconnect_seconds=settings.listen_reconnect_seconds,
    )
    retention = Retention(
        database,
        deletions,
        retention_seconds=settings.job_retention_seconds,
        tombstone_seconds=settings.job_tombstone_seconds,
        interval_seconds=settings.job_retention_sweep_seconds,
    )
    # The identity provider's keys (JWKS, discovery): small, rare requests, bounded as
    # the gateway bounds them.
    http_client = httpx.AsyncClient(timeout=settings.kafka_timeout_seconds)
    services = Services(
        settings=settings,
        tokens=JobTokens(
            settings.job_token_secret.get_secret_value(), settings.job_token_ttl_seconds
        ),
        fanout=fanout,
        slots=StreamSlots(
            settings.sse_max_streams,
            per_job=settings.sse_max_streams_per_job,
            per_client=settings.sse_max_streams_per_client,
        ),
        history=database,
        heartbeats=Heartbeats(settings.sse_heartbeat_seconds, settings.sse_max_stream_seconds),
        auth=owner_auth(settings, http_client),
        lifecycle=database,
        deleter=Deleter(database, deletions),
    )

    async def listening() -> bool:
        return listener.connected

    commits = CoalescedCommits(settings.kafka_commit_interval_seconds)
    svc.provide(Statuses, Statuses(Projector(database), dead_letters, commits))
    svc.provide(Erasures, Erasures(database, dead_letters))
    svc.provide(Services, services)
    streams = svc.provide(ProgressStreams, ProgressStreams(services, SERVICE, svc.ensure_available))
    subscribe(svc, settings, commits)
    svc.on_stop(http_client.aclose)
    svc.resource(database, "PostgreSQL")
    svc.background(listener.run, name="applied-events-listener", before_broker=True)
    svc.background(lambda: watch_consumer_lag(svc.broker), name="consumer-lag")
    # Stopped before the broker: its last commit is made while the consumer still runs.
    svc.background(commits.run, name="offset-commits")
    svc.background(retention.run, name="job-retention")  # it publishes
    svc.readiness(database.ping, broker_connected(svc.broker), listening)
    svc.on_started(gcpauses.settle)
    # Shutdown first ends the open streams, so their clients resume elsewhere by
    # Last-Event-ID instead of holding the shutdown (docs/architecture.md §9).
    svc.on_shutdown(services.drain)
    app = svc.app(title="notifier")
    # Last-Event-ID: EventSource sends it on a reconnect, so a cross-origin stream resumes.
    http.allow_origins(
        app,
        settings.cors_allowed_origins,
        methods=["GET", "DELETE"],
        headers=["Authorization", "Last-Event-ID"],
    )
    app.include_router(routes.router)
    progress.serve_first(app, streams)
    return app


def subscribe(svc: Service, settings: Settings, commits: CoalescedCommits) -> None:
    """The subscribers: ``job.status`` projected, ``job.deleted`` erased; both in batches."""
    router = KafkaRouter()
    router.subscriber(
        topics.JOB_STATUS,
        # A shared group: each event is projected once, by the replica owning its partition.
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        # Committed only after the batch is written, several batches at once
        # (CoalescedCommits); on an error it comes again (the handler seeks back).
        ack_policy=AckPolicy.MANUAL,
        listener=commits,
        batch=True,
        max_records=handlers.MAX_BATCH,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        # The broker answers a fetch once it holds FETCH_MIN_BYTES or the wait is over:
        # under load, several statuses per batch (one transaction each, §8); idle, a
        # status waits at most the wait (docs/scaling.md, "Settings that matter").
        fetch_min_bytes=FETCH_MIN_BYTES if settings.projection_fetch_wait_ms else 1,
        fetch_max_wait_ms=settings.projection_fetch_wait_ms or BATCH_TIMEOUT_MS,
        decoder=raw_body,
        title="job.status:notifier",
        description="Projects every job status change into PostgreSQL and pushes it "
        "to the job's live SSE streams.",
    )(handlers.on_job_statuses)
    router.subscriber(
        topics.JOB_DELETED,
        # Its own group: its offsets do not depend on the projection's. Each deletion is
        # erased once, by the replica owning its partition; the others hear of it from
        # PostgreSQL, as of applied events.
        group_id=settings.deletion_consumer_group,
        auto_offset_reset="earliest",
        # Committed only once the erasure is written; on an error it comes again.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=handlers.MAX_BATCH,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        decoder=raw_body,
        title="job.deleted:notifier",
        description="Erases each deleted job's state and event history (a tombstone of "
        "its id stays, so that its late events change nothing) and ends its progress "
        "streams on every replica.",
    )(handlers.on_jobs_deleted)
    svc.broker.include_router(router)
