"""A deleted job (``job.deleted``) in the gateway, on the real broker and PostgreSQL
(docs/architecture.md §8, issue 20): its resumable upload ends (an append in progress is
taken over), the uploader is told (``UploadAborted``), its row and fair-use leases go, a
tombstone answers 410 to the job's token holder; twice is harmless; and the sweep of
ended uploads, run by two replicas at once, erases each old row once."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from contracts import CeType, DeletionReason, Erase, JobDeleted, headers, topics
from gateway.adapters.postgres import PostgresUploadStore
from gateway.app import create_app
from gateway.settings import Settings
from servicekit.kafka import ensure_topics, make_broker
from servicekit.postgres import PRUNE_BATCH
from servicekit.settings import ServiceSettings
from tests.support.audio import WAV_HEAD
from tests.support.inprocess import bound_socket, serving
from tests.support.kafka import partitions_of, publish_event, start_group_at_end
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

INTEROP = {"Upload-Draft-Interop-Version": "8"}
SIZE = 3 * 1024 * 1024


@dataclass
class Gateway:
    url: str
    settings: Settings
    db: asyncpg.Pool
    producer: KafkaBroker

    @property
    def schema(self) -> str:
        return self.settings.database_schema

    async def create(self) -> tuple[str, str]:
        """A resumable upload with its first bytes appended: (job id, upload URL)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            created = await client.post(
                "/tokens/t1/upload-audio",
                content=b"",
                headers={**INTEROP, "Upload-Complete": "?0", "Upload-Length": str(SIZE)},
            )
            assert created.status_code == 201, created.text
            location = created.headers["location"]
            appended = await client.patch(location, content=audio(256 * 1024), headers=append(0))
            assert appended.status_code == 204, appended.text
        return created.json()["job_id"], location

    async def delete(self, job_id: str) -> None:
        event = JobDeleted(job_id=job_id, reason=DeletionReason.REQUESTED, erase=Erase.JOB)
        await publish_event(
            self.producer, topics.JOB_DELETED, event, source="tests", ce_id=f"{job_id}:deleted:job"
        )

    async def count(self, table: str, job_id: str) -> int:
        return int(
            await self.db.fetchval(
                f"SELECT count(*) FROM {self.schema}.{table} WHERE job_id = $1", uuid.UUID(job_id)
            )
        )

    async def erased(self, job_id: str) -> bool:
        return (
            await self.count("uploads", job_id) == 0
            and await self.count("upload_leases", job_id) == 0
            and await self.count("deleted_jobs", job_id) == 1
        )


def audio(size: int) -> bytes:
    return WAV_HEAD + b"\1" * (size - len(WAV_HEAD))


def append(offset: int) -> dict[str, str]:
    return {
        **INTEROP,
        "Content-Type": "application/partial-upload",
        "Upload-Offset": str(offset),
        "Upload-Complete": "?0",
    }


@pytest.fixture
async def gateway(infra: dict[str, str]) -> AsyncIterator[Gateway]:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=infra["DATABASE_URL"],
        database_schema=f"gwdel_{tag}",
        deletion_consumer_group=f"gateway-test-{tag}.deletions",
        chunk_bytes=64 * 1024,
    )
    await ensure_topics(bootstrap, 6)
    await start_group_at_end(bootstrap, settings.deletion_consumer_group, topics.JOB_DELETED)
    producer = make_broker(ServiceSettings(kafka_bootstrap_servers=bootstrap), "tests", "tests")
    await producer.start()
    db = await asyncpg.create_pool(infra["DATABASE_URL"], min_size=1, max_size=2)
    try:
        async with serving(create_app(settings), bound_socket()) as url:
            yield Gateway(url, settings, db, producer)
    finally:
        await db.execute(f"DROP SCHEMA IF EXISTS {settings.database_schema} CASCADE")
        await db.close()
        await producer.stop()


async def aborted_markers(bootstrap: str, job_id: str) -> int:
    """``UploadAborted`` messages of the job on ``audio.upload``."""
    partitions = await partitions_of(bootstrap, topics.AUDIO_UPLOAD)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found = 0
        while any([await consumer.position(p) < ends[p] for p in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    kind = dict(record.headers).get(headers.TYPE, b"").decode()
                    if record.key == job_id.encode() and kind == CeType.UPLOAD_ABORTED:
                        assert json.loads(record.value or b"{}")["reason"] == "job_deleted"
                        found += 1
        return found
    finally:
        await consumer.stop()


async def test_a_deleted_jobs_upload_ends_its_row_goes_and_it_answers_410(
    gateway: Gateway, infra: dict[str, str]
) -> None:
    job_id, location = await gateway.create()
    assert await gateway.count("uploads", job_id) == 1
    assert await gateway.count("upload_leases", job_id) == 1  # it counts as open

    await gateway.delete(job_id)
    await eventually(lambda: gateway.erased(job_id), what="the upload erased")
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    assert await aborted_markers(bootstrap, job_id) == 1

    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for method in ("HEAD", "PATCH", "DELETE"):
            answer = await client.request(method, location, headers=append(256 * 1024))
            assert answer.status_code == 410, (method, answer.text)
            if method != "HEAD":
                assert answer.json()["error"]["code"] == "job_deleted"
        # Without the job's token nothing is told; an unknown upload is 404.
        bare = location.split("?")[0]
        assert (await client.request("DELETE", bare)).status_code == 404
        unknown = await client.request("DELETE", f"/uploads/{uuid.uuid4()}")
        assert unknown.status_code == 404

    # Twice is harmless: nothing more to end, the tombstone stays.
    await gateway.delete(job_id)
    sentinel, _ = await gateway.create()
    await gateway.delete(sentinel)  # same handler, later: the repeat was handled before it
    await eventually(lambda: gateway.erased(sentinel), what="the next deletion")
    assert await gateway.erased(job_id)
    assert await aborted_markers(bootstrap, job_id) == 1


async def test_an_append_in_progress_is_stopped_by_the_deletion(gateway: Gateway) -> None:
    job_id, location = await gateway.create()
    more = asyncio.Event()
    done = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"\1" * (128 * 1024)
        more.set()
        await done.wait()  # a client that goes quiet, as a cut one does

    async def appending() -> httpx.Response:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            return await client.patch(location, content=body(), headers=append(256 * 1024))

    append_task = asyncio.create_task(appending())
    await more.wait()
    await gateway.delete(job_id)
    await eventually(lambda: gateway.erased(job_id), what="the upload erased")
    done.set()
    answer = await append_task
    # Taken over: the append answered with what it had stored, or 410 if it met the end.
    assert answer.status_code in (204, 410), answer.text
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.head(location, headers=INTEROP)).status_code == 410


async def test_two_replicas_sweep_ended_uploads_and_old_tombstones_once(
    gateway: Gateway,
) -> None:
    schema = gateway.schema
    old = datetime.now(UTC) - timedelta(days=3)
    ended = [uuid.uuid4() for _ in range(PRUNE_BATCH + 7)]
    rows: list[tuple[uuid.UUID, str, datetime, datetime | None]] = [
        (job, "complete" if i % 2 else "expired", old, old) for i, job in enumerate(ended)
    ]
    fresh_ended, still_open = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    rows += [(fresh_ended, "cancelled", now, now), (still_open, "open", old, None)]
    await gateway.db.executemany(
        f"""INSERT INTO {schema}.uploads (job_id, protocol, token_id, filename, digest,
                state, created_at, expires_at, ended_at)
            VALUES ($1, 'ietf', 't', 'a.wav', '\\x00', $2, $3,
                    $3::timestamptz + interval '1 day', $4)""",
        rows,
    )
    tombstones = [uuid.uuid4() for _ in range(5)]
    await gateway.db.executemany(
        f"INSERT INTO {schema}.deleted_jobs (job_id, deleted_at) VALUES ($1, $2)",
        [(t, old) for t in tombstones] + [(uuid.uuid4(), now)],
    )

    async def sweep() -> tuple[int, int]:
        async with PostgresUploadStore(gateway.settings, 1.0) as store:
            return await store.prune(24 * 3600, 2 * 24 * 3600)

    first, second = await asyncio.gather(sweep(), sweep())
    assert first[0] + second[0] == len(ended)
    assert first[1] + second[1] == len(tombstones)
    left = {r[0] for r in await gateway.db.fetch(f"SELECT job_id FROM {schema}.uploads")}
    assert left == {fresh_ended, still_open}
    assert await gateway.db.fetchval(f"SELECT count(*) FROM {schema}.deleted_jobs") == 1
