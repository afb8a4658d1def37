"""The ``audio.upload`` handler in memory: FastStream's TestKafkaBroker delivers the
messages, fakes stand for S3. Ordering, commits and redelivery on a real broker are in
test_crash_and_scale.py."""

import hashlib
import json

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from uploader_testing import FakeCheckpoints, FakeStore

from contracts import AudioStored, CeType, UploadFinished, UploadStarted, headers, topics
from servicekit.kafka import ce_headers, raw_body
from servicekit.service import service_of
from tests.support.kafka import publish_event
from uploader.app import Adapters, create_app
from uploader.handlers import Uploads
from uploader.ports import StorageError
from uploader.settings import Settings

pytestmark = pytest.mark.unit

JOB = "5f0c8a1e-0000-4000-8000-00000000a001"
PART_BYTES = 5 * 1024 * 1024


def settings() -> Settings:
    return Settings.model_validate({"part_bytes": PART_BYTES, "s3_bucket": "b"})


def started() -> UploadStarted:
    return UploadStarted(
        job_id=JOB, token_id="t", filename="a.wav", content_type="audio/wav", chunk_size=4
    )


def finished(data: bytes, chunks: int) -> UploadFinished:
    return UploadFinished(
        job_id=JOB, chunk_count=chunks, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


class Seen:
    """Every message the handler published, by topic, and the offsets it had committed."""

    def __init__(self, uploads: Uploads) -> None:
        self.messages: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.uploads = uploads

    @property
    def commits(self) -> list[int]:
        return list(self.uploads.commits.pending.values())

    def on(self, broker: KafkaBroker, topic: str) -> None:
        @broker.subscriber(topic, group_id=f"seen-{topic}", decoder=raw_body)
        async def collect(body: bytes, message: KafkaMessage) -> None:
            self.messages.setdefault(topic, []).append((dict(message.headers), body))

    def statuses(self) -> list[str]:
        return [json.loads(body)["status"] for _, body in self.messages.get(topics.JOB_STATUS, [])]


def built(store: FakeStore) -> tuple[KafkaBroker, Uploads]:
    """The uploader's broker and handler state, wired as the service is, over fakes."""
    svc = service_of(create_app(settings(), Adapters(store, FakeCheckpoints())))
    return svc.broker, svc.get(Uploads)


def rig(store: FakeStore) -> tuple[KafkaBroker, Seen]:
    broker, uploads = built(store)
    seen = Seen(uploads)
    for topic in (topics.JOB_STATUS, topics.AUDIO_STORED, topics.dead_letter(topics.AUDIO_UPLOAD)):
        seen.on(broker, topic)
    return broker, seen


async def send_chunk(broker, sequence: int, data: bytes) -> None:
    message_headers = ce_headers(
        CeType.UPLOAD_CHUNK, f"{JOB}:chunk:{sequence}", "/test", JOB, headers.OCTET_STREAM
    )
    message_headers[headers.SEQUENCE] = str(sequence)
    await broker.publish(data, topics.AUDIO_UPLOAD, key=JOB.encode(), headers=message_headers)


async def upload(broker, data: bytes) -> None:
    await publish_event(broker, topics.AUDIO_UPLOAD, started(), source="/test", ce_id="s")
    chunks = [data[i : i + 4] for i in range(0, len(data), 4)]
    for n, chunk in enumerate(chunks):
        await send_chunk(broker, n, chunk)
    await publish_event(
        broker, topics.AUDIO_UPLOAD, finished(data, len(chunks)), source="/test", ce_id="f"
    )


async def test_an_upload_becomes_a_stored_object_and_its_events_and_is_committed() -> None:
    store = FakeStore()
    broker, seen = rig(store)
    data = bytes(range(200))
    async with TestKafkaBroker(broker) as test_broker:
        await upload(test_broker, data)
    body, metadata = store.objects[f"audio/{JOB}"]
    assert body == data and metadata["sha256"] == hashlib.sha256(data).hexdigest()
    ((stored_headers, stored),) = seen.messages[topics.AUDIO_STORED]
    assert json.loads(stored)["sha256"] == metadata["sha256"]
    assert stored_headers[headers.ID] == f"{JOB}:stored"
    assert stored_headers[headers.SOURCE] == "/services/uploader"
    assert seen.statuses() == ["uploaded"]  # within the progress interval: no `uploading`
    assert seen.commits, "closing a job commits its partition"


async def test_a_message_of_the_wrong_type_or_invalid_goes_to_the_dead_letter_topic() -> None:
    broker, seen = rig(FakeStore())
    async with TestKafkaBroker(broker) as test_broker:
        stored = AudioStored(
            job_id=JOB, bucket="b", key="k", size=1, sha256="0" * 64, content_type="audio/wav"
        )
        await publish_event(test_broker, topics.AUDIO_UPLOAD, stored, source="/test", ce_id="x")
        await test_broker.publish(
            b"{}",
            topics.AUDIO_UPLOAD,
            key=JOB.encode(),
            headers=ce_headers(CeType.UPLOAD_STARTED, "y", "/test", JOB),
        )
    dead = seen.messages[topics.dead_letter(topics.AUDIO_UPLOAD)]
    reasons = [h[headers.DLQ_REASON] for h, _ in dead]
    assert len(reasons) == 2
    assert "does not belong" in reasons[0]
    assert reasons[1].startswith("invalid audiopipe.upload.started")
    assert seen.statuses() == []


async def test_a_chunk_without_a_sequence_is_dead_lettered_not_dropped() -> None:
    broker, seen = rig(FakeStore())
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            b"abcd",
            topics.AUDIO_UPLOAD,
            key=JOB.encode(),
            headers=ce_headers(CeType.UPLOAD_CHUNK, "c", "/test", JOB, headers.OCTET_STREAM),
        )
    assert len(seen.messages[topics.dead_letter(topics.AUDIO_UPLOAD)]) == 1


class FailingStore(FakeStore):
    async def complete(self, key, upload_id, etags, metadata, content_type) -> None:
        raise StorageError("the bucket is gone")

    async def put(self, key, data, metadata, content_type) -> None:
        raise StorageError("the bucket is gone")


async def test_a_storage_failure_fails_the_job_and_closes_it() -> None:
    store = FailingStore()
    broker, seen = rig(store)
    async with TestKafkaBroker(broker) as test_broker:
        await upload(test_broker, bytes(64))
    assert seen.statuses()[-1] == "failed"
    failed = json.loads(seen.messages[topics.JOB_STATUS][-1][1])
    assert failed["error"]["code"] == "storage_failed"
    assert not store.uploads and not store.objects, "nothing is left in the bucket"
    assert topics.AUDIO_STORED not in seen.messages
    assert seen.commits


class BuggyStore(FakeStore):
    """A store whose code has a bug: an error no adapter turns into a StorageError."""

    async def complete(self, key, upload_id, etags, metadata, content_type) -> None:
        raise AttributeError("'NoneType' object has no attribute 'etag'")

    async def put(self, key, data, metadata, content_type) -> None:
        raise AttributeError("'NoneType' object has no attribute 'etag'")


async def test_an_unexpected_error_fails_the_job_instead_of_leaving_it_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = BuggyStore()
    broker, seen = rig(store)
    async with TestKafkaBroker(broker) as test_broker:
        await upload(test_broker, bytes(64))
    failed = json.loads(seen.messages[topics.JOB_STATUS][-1][1])
    assert (failed["status"], failed["error"]["code"]) == ("failed", "storage_failed")
    assert not seen.uploads.assembler.jobs, "the job is closed, not left open"
    assert seen.commits, "its partition is committed past it"
    assert any(r.exc_info and "unexpected error" in r.getMessage() for r in caplog.records)


class UnreachableStore(FakeStore):
    """A store whose connection broke in a way no adapter named: an outage all the same."""

    async def put(self, key, data, metadata, content_type) -> None:
        raise ConnectionResetError("connection reset by peer")


async def test_an_outage_that_escapes_the_adapters_fails_nothing_and_commits_nothing() -> None:
    broker, seen = rig(UnreachableStore())
    async with TestKafkaBroker(broker) as test_broker:
        with pytest.raises(ConnectionResetError):
            await upload(test_broker, bytes(64))
    assert "failed" not in seen.statuses()
    assert not seen.commits, "the job's messages come again after a restart or rebalance"
