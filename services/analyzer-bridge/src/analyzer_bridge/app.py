"""The analyzer-bridge's composition root: its adapters, the rules around them, then the
service wired with both (docs/architecture.md §15)."""

from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaRouter

from analyzer_bridge import handlers, routes
from analyzer_bridge.adapters.analysis_server import HttpAnalysisServer
from analyzer_bridge.adapters.kafka import KafkaEventPublisher
from analyzer_bridge.adapters.postgres import PostgresStore
from analyzer_bridge.adapters.s3 import S3Presigner
from analyzer_bridge.capability import Capabilities
from analyzer_bridge.deadlines import Sweeper
from analyzer_bridge.deps import WebhookDeps
from analyzer_bridge.finishing import Finisher
from analyzer_bridge.handlers import Intake
from analyzer_bridge.lifecycle import Retention
from analyzer_bridge.ports import AnalysisServer, AnalysisStore, EventPublisher, Presigner
from analyzer_bridge.requesting import Requester
from analyzer_bridge.settings import Settings
from servicekit.http import ReadinessCheck
from servicekit.kafka import CoalescedCommits, broker_connected, raw_body
from servicekit.metrics import watch_consumer_lag
from servicekit.service import Service

SERVICE = "analyzer-bridge"
DESCRIPTION = (
    "Asks the analysis server to analyse stored audio, turns its webhooks into "
    "`analysis.result` and `job.status` events, and owns retries and deadlines."
)


@dataclass(frozen=True)
class Adapters:
    """The bridge's external systems; tests pass fakes. Without ``events`` the bridge
    publishes on its broker (``adapters/kafka.py``)."""

    store: AnalysisStore
    server: AnalysisServer
    presigner: Presigner
    events: EventPublisher | None = None

    @classmethod
    def real(cls, settings: Settings) -> "Adapters":
        signing = settings.webhook_signing_secret
        return cls(
            PostgresStore(settings),
            HttpAnalysisServer(
                settings.analysis_server_url,
                settings.request_timeout_seconds,
                # The secret the analysis server signs its webhooks with signs our requests.
                signing_secret=signing.get_secret_value() if signing else None,
            ),
            S3Presigner(
                settings,
                endpoint_url=settings.presign_endpoint_url,
                expires_seconds=settings.presign_expiry_seconds,
            ),
        )


def create_app(settings: Settings | None = None, adapters: Adapters | None = None) -> FastAPI:
    settings = settings or Settings()
    adapters = adapters or Adapters.real(settings)
    store = adapters.store
    svc = Service(
        settings,
        name=SERVICE,
        description=DESCRIPTION,
        topics=(
            settings.audio_stored_topic,
            settings.analysis_result_topic,
            settings.job_status_topic,
            settings.job_deleted_topic,
        ),
        # The producer first, so webhooks are served at once; the consumers join their
        # groups meanwhile. After a crash that join waits for the dead member's session to
        # time out (~10 s), and the analysis server's webhooks for jobs requested before
        # the crash must not be refused meanwhile.
        consume_in_background=True,
    )
    events = adapters.events or KafkaEventPublisher(
        svc.broker,
        settings.analysis_result_topic,
        settings.job_status_topic,
        (settings.audio_stored_topic, settings.job_deleted_topic),
    )

    finisher = Finisher(store, events, analyzing_notice_seconds=settings.analyzing_notice_seconds)
    capabilities = Capabilities(
        settings.webhook_capability_secret.get_secret_value(),
        # Valid past the deadline, so a late result still gets its 409, not a 401.
        ttl_seconds=settings.analysis_deadline_seconds + 24 * 3600,
    )
    requester = Requester(
        store=store,
        server=adapters.server,
        presigner=adapters.presigner,
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
    signing = settings.webhook_signing_secret

    commits = CoalescedCommits(settings.kafka_commit_interval_seconds)
    svc.provide(
        Intake,
        Intake(store, requester, events, settings.analysis_deadline_seconds, commits),
    )
    svc.provide(
        WebhookDeps,
        WebhookDeps(
            store=store,
            finisher=finisher,
            capabilities=capabilities,
            signing_secret=signing.get_secret_value() if signing else None,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        ),
    )
    subscribe(svc, settings, commits)
    svc.resource(store, "PostgreSQL")  # the pool, and the schema
    svc.resource(adapters.presigner, "S3")
    svc.resource(adapters.server, "the analysis server")
    # Requests under way are cancelled once the broker stopped; their rows stay pending.
    svc.on_stop(requester.stop)
    svc.on_stop(finisher.stop)
    svc.background(lambda: watch_consumer_lag(svc.broker), name="consumer-lag")
    # Stopped before the broker: its last commit is made while the consumer still runs.
    svc.background(commits.run, name="offset-commits")
    svc.background(sweeper.run, name="deadline-sweeper")
    svc.background(retention.run, name="retention")
    svc.readiness(_database(store), broker_connected(svc.broker))
    app = svc.app(title="analyzer-bridge")
    app.include_router(routes.router)
    return app


def subscribe(svc: Service, settings: Settings, commits: CoalescedCommits) -> None:
    """The subscribers: ``audio.stored`` requested, ``job.deleted`` abandoned and erased."""
    offset_reset: Literal["latest", "earliest"] = (
        "latest" if settings.kafka_auto_offset_reset == "latest" else "earliest"
    )
    router = KafkaRouter()
    router.subscriber(
        settings.audio_stored_topic,
        group_id=settings.consumer_group,
        # Committed once the job is recorded, several at once (CoalescedCommits: a
        # replay records nothing twice); on an error it comes again (the handler seeks
        # back).
        ack_policy=AckPolicy.MANUAL,
        listener=commits,
        auto_offset_reset=offset_reset,
        decoder=raw_body,
        title=f"{settings.audio_stored_topic}:analyzer-bridge",
        description="Audio durably stored in S3: request its analysis.",
    )(handlers.on_audio_stored)
    router.subscriber(
        settings.job_deleted_topic,
        # Its own group: its offsets do not depend on audio.stored's.
        group_id=settings.deletion_consumer_group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset=offset_reset,
        decoder=raw_body,
        title=f"{settings.job_deleted_topic}:analyzer-bridge",
        description="A deleted job: its pending analysis is abandoned and its row erased (a "
        "tombstone stays: a redelivered audio.stored starts nothing, a late webhook gets 410).",
    )(handlers.on_deleted)
    svc.broker.include_router(router)


def _database(store: AnalysisStore) -> ReadinessCheck:
    async def database() -> bool:
        return await store.ping()

    return database
