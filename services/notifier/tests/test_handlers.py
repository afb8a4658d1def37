import re
import sys
import uuid
from pathlib import Path

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts import (
    AudioStored,
    CeType,
    DeletionReason,
    Erase,
    JobDeleted,
    JobStatus,
    JobStatusChanged,
    headers,
    topics,
)
from notifier.app import Adapters, create_app
from notifier.handlers import Erasures, Statuses, parse
from notifier.settings import Settings
from servicekit.http import DependencyUnavailable
from servicekit.kafka import PoisonMessage, ce_headers, raw_body
from servicekit.service import service_of

sys.path.insert(0, str(Path(__file__).parent))
from notifier_fakes import FakeDeadLetters, FakeFeed, FakeStore

pytestmark = pytest.mark.unit

JOB = str(uuid.uuid4())
STATUS = JobStatusChanged(job_id=JOB, status=JobStatus.UPLOADED, progress=50)


def test_status_message_gives_its_ce_id_and_event():
    message_headers = ce_headers(CeType.JOB_STATUS_CHANGED, "ce-1", "tests", JOB)
    assert parse(message_headers, STATUS.model_dump_json().encode()) == ("ce-1", STATUS)


@pytest.mark.parametrize(
    ("message_headers", "body"),
    [
        (ce_headers(CeType.JOB_STATUS_CHANGED, "ce-1", "t", JOB), b"{not json"),
        (ce_headers("audiopipe.unknown", "ce-1", "t", JOB), STATUS.model_dump_json().encode()),
        ({headers.TYPE: CeType.JOB_STATUS_CHANGED}, STATUS.model_dump_json().encode()),
        (
            ce_headers(CeType.JOB_STATUS_CHANGED, "ce-1", "t", "job-1"),
            STATUS.model_copy(update={"job_id": "job-1"}).model_dump_json().encode(),
        ),
        (
            ce_headers(CeType.AUDIO_STORED, "ce-1", "t", JOB),
            AudioStored(
                job_id=JOB, bucket="b", key="k", size=1, sha256="0", content_type="audio/wav"
            )
            .model_dump_json()
            .encode(),
        ),
    ],
    ids=["bad-json", "unknown-type", "no-ce-id", "job-id-not-uuid", "wrong-event"],
)
def test_unprocessable_messages_are_poison(message_headers, body):
    with pytest.raises(PoisonMessage):
        parse(message_headers, body)


# The `job.status` handler in memory: FastStream's TestKafkaBroker delivers the
# messages, fakes stand for PostgreSQL. Commits and redelivery on a real broker are in
# test_service.py and test_database_outage.py.

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class DeadLettered:
    """The messages the handler parked on ``job.status.dlq``, with their reasons."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.reasons: list[str] = []

        @broker.subscriber(topics.dead_letter(topics.JOB_STATUS), group_id="seen", decoder=raw_body)
        async def collect(body: bytes, message: KafkaMessage) -> None:
            self.reasons.append(message.headers[headers.DLQ_REASON])


def built(store: FakeStore):
    """The notifier's service, wired as it runs, over fakes of its database."""
    return service_of(create_app(Settings(), Adapters(store, FakeFeed())))


def rig(store: FakeStore):
    svc = built(store)
    broker, statuses = svc.broker, svc.get(Statuses)
    statuses.retry_delay_seconds = 0
    return broker, statuses, DeadLettered(broker)


async def send(broker, event: JobStatusChanged, ce_id: str, **extra: str) -> None:
    message_headers = ce_headers(CeType.JOB_STATUS_CHANGED, ce_id, "/test", event.job_id)
    await broker.publish(
        event.model_dump_json().encode(),
        topics.JOB_STATUS,
        key=event.job_id.encode(),
        headers=message_headers | extra,
    )


def status(status: JobStatus, progress: int) -> JobStatusChanged:
    return JobStatusChanged(job_id=JOB, status=status, progress=progress)


async def test_each_status_is_projected_once_and_only_forward_moves_are_applied() -> None:
    store = FakeStore()
    broker, _, dead = rig(store)
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, status(JobStatus.ACCEPTED, 0), "a")
        await send(test_broker, status(JobStatus.UPLOADING, 20), "b", traceparent=TRACEPARENT)
        await send(test_broker, status(JobStatus.UPLOADING, 20), "b")  # redelivered
        await send(test_broker, status(JobStatus.UPLOADING, 10), "c")  # lower progress
        await send(test_broker, status(JobStatus.ACCEPTED, 0), "d")  # backwards
    assert [(ce_id, d.outcome.value) for ce_id, d, _ in store.history] == [
        ("a", "applied"),
        ("b", "applied"),
        ("c", "ignored"),
        ("d", "ignored"),
    ]
    current = store.jobs[JOB]
    assert (current.event_id, current.status, current.progress) == (2, JobStatus.UPLOADING, 20)
    # The event's trace context is recorded with it. Which one depends on the process:
    # once a test has installed a real tracer provider, the in-memory broker's publish
    # middleware replaces the header with its own span's, so only the shape is checked
    # here; tests/integration/test_tracing.py follows one trace id across every service.
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]", store.history[1][2] or "")
    assert dead.reasons == []


async def test_unprocessable_statuses_go_to_the_dead_letter_topic_and_are_not_projected() -> None:
    store = FakeStore()
    broker, _, dead = rig(store)
    stored = AudioStored(
        job_id=JOB, bucket="b", key="k", size=1, sha256="0" * 64, content_type="audio/wav"
    )
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            stored.model_dump_json().encode(),
            topics.JOB_STATUS,
            key=JOB.encode(),
            headers=ce_headers(CeType.AUDIO_STORED, "x", "/test", JOB),
        )
        await test_broker.publish(
            STATUS.model_dump_json().encode(),
            topics.JOB_STATUS,
            headers={headers.TYPE: CeType.JOB_STATUS_CHANGED},
        )
        await send(test_broker, STATUS.model_copy(update={"job_id": "job-1"}), "y")
    assert len(dead.reasons) == 3
    assert "does not belong" in dead.reasons[0]
    assert "ce_id" in dead.reasons[1]
    assert "not a UUID" in dead.reasons[2]
    assert store.history == []


async def test_a_database_outage_fails_the_batch_so_it_comes_again() -> None:
    store = FakeStore()
    broker, statuses, dead = rig(store)
    statuses.dead_letters = fake_dead = FakeDeadLetters()
    async with TestKafkaBroker(broker) as test_broker:
        store.down = True
        with pytest.raises(DependencyUnavailable):
            await send(test_broker, STATUS, "s")
        assert store.history == [] and fake_dead.dead == [], "nothing recorded, nothing parked"
        store.down = False
        await send(test_broker, STATUS, "s")  # the redelivery
    assert [ce_id for ce_id, _, _ in store.history] == ["s"]
    assert dead.reasons == []


# The `job.deleted` handler in memory; on the real broker: test_deletion.py.


async def send_deleted(broker, job_id: str, erase: Erase = Erase.JOB) -> None:
    event = JobDeleted(job_id=job_id, reason=DeletionReason.REQUESTED, erase=erase)
    await broker.publish(
        event.model_dump_json().encode(),
        topics.JOB_DELETED,
        key=job_id.encode(),
        headers=ce_headers(CeType.JOB_DELETED, f"{job_id}:deleted:{erase}", "/test", job_id),
    )


def erasing_rig(store: FakeStore):
    svc = built(store)
    erasures = svc.get(Erasures)
    erasures.retry_delay_seconds = 0
    erasures.dead_letters = dead = FakeDeadLetters()
    return svc.broker, dead


async def test_a_deleted_job_is_erased_and_a_redelivery_erases_nothing_more() -> None:
    store = FakeStore()
    broker, dead = erasing_rig(store)
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, STATUS, "s")
        await send_deleted(test_broker, JOB)
        await send_deleted(test_broker, JOB)  # redelivered
        await send(test_broker, status(JobStatus.COMPLETED, 100), "late")
    assert store.erased == [[JOB], [JOB]]
    assert JOB in store.tombstones
    assert store.history == [] and JOB not in store.jobs, "the late event is dropped"
    assert dead.dead == []


async def test_an_audio_erasure_leaves_the_job_and_poison_is_dead_lettered() -> None:
    store = FakeStore()
    broker, dead = erasing_rig(store)
    async with TestKafkaBroker(broker) as test_broker:
        await send(test_broker, STATUS, "s")
        await send_deleted(test_broker, JOB, Erase.AUDIO)
        await test_broker.publish(
            STATUS.model_dump_json().encode(),
            topics.JOB_DELETED,
            key=JOB.encode(),
            headers=ce_headers(CeType.JOB_STATUS_CHANGED, "x", "/test", JOB),
        )
    assert store.erased == [] and JOB in store.jobs
    assert [(topic, "does not belong" in reason) for topic, reason in dead.dead] == [
        (topics.JOB_DELETED, True)
    ]


async def test_an_erasure_the_database_cannot_take_comes_again() -> None:
    store = FakeStore()
    broker, _ = erasing_rig(store)
    async with TestKafkaBroker(broker) as test_broker:
        store.down = True
        with pytest.raises(DependencyUnavailable):
            await send_deleted(test_broker, JOB)
        store.down = False
        await send_deleted(test_broker, JOB)  # the redelivery
    assert store.erased == [[JOB]]
