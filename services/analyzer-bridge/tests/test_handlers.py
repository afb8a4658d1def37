"""The ``audio.stored`` handler in memory: FastStream's TestKafkaBroker delivers the
messages, fakes stand for PostgreSQL, S3 and the analysis server. Commits, redelivery
and ordering on a real broker are in test_bridge_integration.py and
test_bridge_database_outage.py."""

import json
from dataclasses import dataclass
from typing import Any

import pytest
from analyzer_bridge_fakes import JOB, FakePresigner, FakeServer, FakeStore, stored
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from analyzer_bridge.analysis import State
from analyzer_bridge.app import Adapters, create_app
from analyzer_bridge.handlers import Intake
from analyzer_bridge.ports import DependencyUnavailable
from analyzer_bridge.settings import Settings
from contracts import CeType, JobStatus, JobStatusChanged, headers, topics
from servicekit.kafka import ce_headers, raw_body
from servicekit.service import service_of
from tests.support.kafka import publish_event

pytestmark = pytest.mark.unit


class Seen:
    """Every message published on some topics, by topic."""

    def __init__(self, broker, *names: str) -> None:
        self.messages: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        for name in names:
            self._on(broker, name)

    def _on(self, broker: KafkaBroker, topic: str) -> None:
        @broker.subscriber(topic, group_id=f"seen-{topic}", decoder=raw_body)
        async def collect(body: bytes, message: KafkaMessage) -> None:
            self.messages.setdefault(topic, []).append((dict(message.headers), body))

    def of(self, topic: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(h, json.loads(body)) for h, body in self.messages.get(topic, [])]


@dataclass
class Rig:
    broker: KafkaBroker
    intake: Intake
    store: FakeStore
    server: FakeServer
    seen: Seen


def rig() -> Rig:
    store, server = FakeStore(), FakeServer()
    # `analyzing` at once, as the tests below look for it (its delay: test_finishing.py).
    settings = Settings(analyzing_notice_seconds=0)
    svc = service_of(create_app(settings, Adapters(store, server, FakePresigner())))
    broker, intake = svc.broker, svc.get(Intake)
    intake.retry_pause_seconds = 0
    dead = topics.dead_letter(topics.AUDIO_STORED)
    seen = Seen(
        broker,
        topics.JOB_STATUS,
        topics.ANALYSIS_RESULT,
        dead,
        topics.dead_letter(topics.JOB_DELETED),
    )
    return Rig(broker, intake, store, server, seen)


async def test_stored_audio_is_recorded_and_requested_once_even_when_redelivered():
    r = rig()
    async with TestKafkaBroker(r.broker) as test_broker:
        for _ in range(2):
            await publish_event(
                test_broker, topics.AUDIO_STORED, stored(), source="/test", ce_id=f"{JOB}:stored"
            )
            await r.intake.requester.join()
    assert r.store.rows[JOB].state is State.REQUESTED
    assert len(r.server.requests) == 1
    ((status_headers, status),) = r.seen.of(topics.JOB_STATUS)
    assert (status["status"], status["progress"]) == ("analyzing", 51)
    assert status_headers[headers.ID] == f"{JOB}:status:analyzing:51"
    assert status_headers[headers.SOURCE] == "/services/analyzer-bridge"
    assert topics.dead_letter(topics.AUDIO_STORED) not in r.seen.messages


async def test_a_message_of_the_wrong_type_or_invalid_goes_to_the_dead_letter_topic():
    r = rig()
    async with TestKafkaBroker(r.broker) as test_broker:
        wrong = JobStatusChanged(job_id=JOB, status=JobStatus.UPLOADED, progress=50)
        await publish_event(test_broker, topics.AUDIO_STORED, wrong, source="/test", ce_id="x")
        await test_broker.publish(
            b'{"job_id": 1}',
            topics.AUDIO_STORED,
            key=JOB.encode(),
            headers=ce_headers(CeType.AUDIO_STORED, "y", "/test", JOB),
        )
    dead = r.seen.messages[topics.dead_letter(topics.AUDIO_STORED)]
    reasons = [h[headers.DLQ_REASON] for h, _ in dead]
    assert len(reasons) == 2
    assert reasons[0] == f"unexpected JobStatusChanged on {topics.AUDIO_STORED}"
    assert reasons[1].startswith(f"invalid {CeType.AUDIO_STORED}")
    assert r.store.rows == {} and r.server.requests == []


async def test_a_database_outage_fails_the_message_so_it_is_not_committed():
    r = rig()
    r.store.down = 1
    async with TestKafkaBroker(r.broker) as test_broker:
        with pytest.raises(DependencyUnavailable):
            await publish_event(
                test_broker, topics.AUDIO_STORED, stored(), source="/test", ce_id="s"
            )
        assert r.store.rows == {}
        # Redelivered once the database is back: recorded and requested.
        await publish_event(test_broker, topics.AUDIO_STORED, stored(), source="/test", ce_id="s")
        await r.intake.requester.join()
    assert r.store.rows[JOB].state is State.REQUESTED
    assert topics.dead_letter(topics.AUDIO_STORED) not in r.seen.messages


async def test_a_deletion_erases_the_analysis_and_a_redelivered_audio_stored_starts_nothing():
    from contracts import DeletionReason, Erase, JobDeleted

    r = rig()
    deleted = JobDeleted(job_id=JOB, reason=DeletionReason.REQUESTED, erase=Erase.JOB)
    audio_only = JobDeleted(job_id=JOB, reason=DeletionReason.RETENTION, erase=Erase.AUDIO)
    async with TestKafkaBroker(r.broker) as test_broker:
        await publish_event(test_broker, topics.AUDIO_STORED, stored(), source="/t", ce_id="s")
        await r.intake.requester.join()
        # The recording only: the bridge holds no copy of it, its analysis stays.
        await publish_event(test_broker, topics.JOB_DELETED, audio_only, source="/t", ce_id="a")
        assert JOB in r.store.rows
        for _ in range(2):  # twice is harmless
            await publish_event(test_broker, topics.JOB_DELETED, deleted, source="/t", ce_id="d")
        await publish_event(test_broker, topics.AUDIO_STORED, stored(), source="/t", ce_id="s")
        await r.intake.requester.join()
        not_a_job = deleted.model_copy(update={"job_id": "x"})
        await publish_event(test_broker, topics.JOB_DELETED, not_a_job, source="/t", ce_id="p")
    assert r.store.rows == {} and r.store.tombstones == {JOB}
    assert len(r.server.requests) == 1
    assert [s["status"] for _, s in r.seen.of(topics.JOB_STATUS)] == ["analyzing"]
    assert r.seen.of(topics.ANALYSIS_RESULT) == []
    ((parked, _),) = r.seen.of(topics.dead_letter(topics.JOB_DELETED))
    assert parked[headers.DLQ_REASON] == "job_id 'x' is not a UUID"
