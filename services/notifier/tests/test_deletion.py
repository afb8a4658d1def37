"""Deleting jobs, owners' lists and the retention sweep against the real Kafka and
PostgreSQL, over real HTTP, with two replicas (docs/architecture.md §8, issue 20)."""

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from notifier_testing import (
    LIFECYCLE,
    PROGRESS,
    Stream,
    follow,
    owner,
    projected,
    running,
)

from contracts import DeletionReason, Erase, JobDeleted, JobStatus, JobStatusChanged, topics
from notifier.adapters.kafka import KafkaDeletions
from notifier.adapters.postgres import PostgresStore
from notifier.lifecycle import Retention
from servicekit.kafka import make_broker
from tests.support.kafka import committed_offset, partitions_of, publish_event
from tests.support.processes import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


class Announced:
    """What goes onto ``job.deleted`` from the moment it was made."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def of(self, job: str) -> list[tuple[str, JobDeleted, ConsumerRecord[bytes, bytes]]]:
        """The deletions of ``job`` announced so far: (ce_id, event, record)."""
        for records in (await self._consumer.getmany(timeout_ms=200)).values():
            self.records += records
        found = []
        for record in self.records:
            event = JobDeleted.model_validate_json(record.value or b"")
            if event.job_id == job:
                found.append((dict(record.headers)["ce_id"].decode(), event, record))
        return found


@pytest.fixture
async def announced(notifier_settings, notifier_url) -> AsyncIterator[Announced]:
    bootstrap = notifier_settings.kafka_bootstrap_servers
    partitions = await partitions_of(bootstrap, topics.JOB_DELETED)
    assert partitions, "the notifier created job.deleted"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)  # the end as of now, not when first read
        yield Announced(consumer)
    finally:
        await consumer.stop()


async def consumed(group: str, settings, record: ConsumerRecord[bytes, bytes]) -> None:
    """Wait until ``group`` has committed past ``record``: its handler has run."""
    partition = TopicPartition(record.topic, record.partition)

    async def past() -> bool:
        offset = await committed_offset(settings.kafka_bootstrap_servers, group, partition)
        return offset is not None and offset > record.offset

    await eventually(past, what=f"{group} to consume offset {record.offset}")


async def rows(db, settings, job: str) -> dict[str, int]:
    schema, job_id = settings.database_schema, uuid.UUID(job)
    return {
        table: await db.fetchval(f"SELECT count(*) FROM {schema}.{table} WHERE job_id = $1", job_id)
        for table in ("jobs", "job_events", "deleted_jobs")
    }


def holder(tokens, job: str) -> dict[str, str]:
    """The upload's answer's ``access_token``: reads and writes the job."""
    return {"Authorization": f"Bearer {tokens.issue(job)}"}


async def test_the_access_token_deletes_a_job_everywhere_at_once_and_for_good(
    client, publish, job, tokens, db, notifier_settings, announced
):
    for status, progress in LIFECYCLE:
        await publish(status, progress)
    await projected(client, job, holder(tokens, job), JobStatus.COMPLETED)

    answer = await client.delete(f"/jobs/{job}", params={"access_token": tokens.issue(job)})
    assert answer.status_code == 202
    assert answer.json() == {"job_id": job, "status": "deleting"}

    # At once: gone, its rows erased, only the tombstone left (its id and when).
    gone = await client.get(f"/jobs/{job}", headers=holder(tokens, job))
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "job_deleted")
    stream = await client.get(PROGRESS.format(job), headers=holder(tokens, job))
    assert (stream.status_code, stream.json()["error"]["code"]) == (410, "job_deleted")
    assert await rows(db, notifier_settings, job) == {"jobs": 0, "job_events": 0, "deleted_jobs": 1}
    [tombstone] = await db.fetch(
        f"SELECT * FROM {notifier_settings.database_schema}.deleted_jobs WHERE job_id = $1",
        uuid.UUID(job),
    )
    assert set(dict(tombstone)) == {"job_id", "deleted_at"}, "no personal data"

    # Announced to every service, and erased again by the notifier's own consumer.
    [(ce_id, event, record)] = await eventually(lambda: announced.of(job))
    assert ce_id == f"{job}:deleted:job"
    assert (event.reason, event.erase) == (DeletionReason.REQUESTED, Erase.JOB)
    await consumed(notifier_settings.deletion_consumer_group, notifier_settings, record)
    assert await rows(db, notifier_settings, job) == {"jobs": 0, "job_events": 0, "deleted_jobs": 1}

    again = await client.delete(f"/jobs/{job}", headers=holder(tokens, job))
    assert again.status_code == 204


async def test_a_token_that_only_reads_cannot_delete_and_nothing_changes(
    client, publish, job, tokens, db, notifier_settings
):
    await publish(JobStatus.ACCEPTED, 0)
    state = await projected(client, job, holder(tokens, job), JobStatus.ACCEPTED)
    before = await rows(db, notifier_settings, job)
    answer = await client.delete(
        f"/jobs/{job}", params={"access_token": tokens.issue_progress(job)}
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "insufficient_scope")
    assert await rows(db, notifier_settings, job) == before
    assert (await client.get(f"/jobs/{job}", headers=holder(tokens, job))).json() == state


async def test_two_owners_see_and_delete_only_their_own_jobs(
    client, publish, producer, job, tokens, db, notifier_settings
):
    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"
    await publish(JobStatus.ACCEPTED, 0, owner=alice)
    bobs = str(uuid.uuid4())
    await publish_event(
        producer,
        topics.JOB_STATUS,
        JobStatusChanged(job_id=bobs, status=JobStatus.ACCEPTED, progress=0, owner=bob),
        source="tests",
        ce_id=f"{bobs}:accepted",
    )

    async def listed(who: str) -> list[str]:
        answer = await client.get("/jobs", headers=owner(who))
        assert answer.status_code == 200
        return [j["job_id"] for j in answer.json()["jobs"]]

    assert await eventually(lambda: listed(alice)) == [job]
    assert await eventually(lambda: listed(bob)) == [bobs]

    before = await rows(db, notifier_settings, job)
    refused = await client.delete(f"/jobs/{job}", headers=owner(bob))
    assert (refused.status_code, refused.json()["error"]["code"]) == (404, "not_found")
    assert await rows(db, notifier_settings, job) == before

    assert (await client.delete(f"/jobs/{job}", headers=owner(alice))).status_code == 202
    assert await listed(alice) == []
    assert await listed(bob) == [bobs]
    assert (await client.get(f"/jobs/{job}", headers=holder(tokens, job))).status_code == 410
    # Again: the owner no longer has it; its holder hears it is deleted already.
    assert (await client.delete(f"/jobs/{job}", headers=owner(alice))).status_code == 404
    assert (await client.delete(f"/jobs/{job}", headers=holder(tokens, job))).status_code == 204


async def test_an_open_stream_of_a_deleted_job_ends_on_another_replica(
    client, second_notifier_url, publish, job, tokens
):
    await publish(JobStatus.ACCEPTED, 0)
    await projected(client, job, holder(tokens, job), JobStatus.ACCEPTED)
    async with httpx.AsyncClient(base_url=second_notifier_url, timeout=15) as second:
        async with second.stream("GET", PROGRESS.format(job), headers=holder(tokens, job)) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            seen = await asyncio.wait_for(follow(lines, Stream(), stop=1), 20)
            assert await client.delete(f"/jobs/{job}", headers=holder(tokens, job))
            ended = await asyncio.wait_for(follow(lines, seen), 20)
        assert ended.ended
        assert [data["status"] for _, data in ended.events] == ["accepted"]
        # EventSource reconnects, hears 410 and stops for good.
        again = await second.get(PROGRESS.format(job), headers=holder(tokens, job))
        assert again.status_code == 410


async def test_a_late_status_of_a_deleted_job_brings_nothing_back(
    client, producer, publish, job, tokens, db, notifier_settings
):
    # Deleted before the notifier heard of it (its token proves it exists).
    assert (await client.delete(f"/jobs/{job}", headers=holder(tokens, job))).status_code == 202
    await publish(JobStatus.ACCEPTED, 0)
    late = await publish_event(
        producer,
        topics.JOB_STATUS,
        JobStatusChanged(job_id=job, status=JobStatus.COMPLETED, progress=100),
        source="tests",
        ce_id=f"{job}:late",
    )
    assert late is not None
    await consumed(notifier_settings.consumer_group, notifier_settings, late)  # type: ignore[arg-type]
    assert await rows(db, notifier_settings, job) == {"jobs": 0, "job_events": 0, "deleted_jobs": 1}
    assert (await client.get(f"/jobs/{job}", headers=holder(tokens, job))).status_code == 410


async def test_pages_of_an_owners_jobs_have_no_gap_and_no_duplicate(
    client, producer, tokens, db, notifier_settings
):
    who = f"carol-{uuid.uuid4()}"

    async def create() -> str:
        job = str(uuid.uuid4())
        event = JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0, owner=who)
        await publish_event(producer, topics.JOB_STATUS, event, source="t", ce_id=job)
        return job

    jobs = [await create() for _ in range(23)]

    async def page(cursor: str | None = None) -> dict[str, Any]:
        params = {"limit": "5"} | ({"cursor": cursor} if cursor else {})
        answer = await client.get("/jobs", params=params, headers=owner(who))
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        return body

    async def all_listed() -> bool:
        return len((await client.get("/jobs?limit=100", headers=owner(who))).json()["jobs"]) == 23

    await eventually(all_listed)
    first = await page()
    listed = [j["job_id"] for j in first["jobs"]]
    # While the owner pages on: a new job (it comes first, on no later page) and one
    # deleted that a later page would have shown.
    newer = await create()
    await eventually(lambda: projected(client, newer, holder(tokens, newer), JobStatus.ACCEPTED))
    unseen = next(j for j in jobs if j not in listed)
    assert (await client.delete(f"/jobs/{unseen}", headers=owner(who))).status_code == 202
    cursor = first["next_cursor"]
    while cursor is not None:
        following = await page(cursor)
        assert len(following["jobs"]) <= 5
        listed += [j["job_id"] for j in following["jobs"]]
        cursor = following["next_cursor"]

    assert len(listed) == len(set(listed)), "no duplicate"
    assert set(listed) == set(jobs) - {unseen}, "no gap"
    order = await db.fetch(
        f"SELECT job_id FROM {notifier_settings.database_schema}.jobs WHERE owner = $1"
        " ORDER BY created_at DESC, job_id DESC",
        who,
    )
    assert listed == [str(r["job_id"]) for r in order if str(r["job_id"]) != newer], "newest first"
    assert (await page())["jobs"][0]["job_id"] == newer


async def finished_long_ago(client, publish, job, tokens, db, settings) -> None:
    for status, progress in LIFECYCLE:
        await publish(status, progress)
    await projected(client, job, holder(tokens, job), JobStatus.COMPLETED)
    await db.execute(
        f"UPDATE {settings.database_schema}.jobs SET updated_at = now() - interval '2 days'"
        " WHERE job_id = $1",
        uuid.UUID(job),
    )


async def test_two_sweepers_announce_each_expired_job_once_and_the_consumer_erases_it(
    client, producer, tokens, db, notifier_settings, announced
):
    settings = notifier_settings
    jobs = [str(uuid.uuid4()) for _ in range(6)]
    for job in jobs:

        async def publish(status: JobStatus, progress: int, job: str = job) -> None:
            event = JobStatusChanged(job_id=job, status=status, progress=progress)
            await publish_event(
                producer, topics.JOB_STATUS, event, source="t", ce_id=f"{job}:{status}"
            )

        await finished_long_ago(client, publish, job, tokens, db, settings)

    async with AsyncExitStack() as stack:
        broker = make_broker(settings, "notifier-sweep-tests", "two sweeping replicas")
        deletions = KafkaDeletions(broker, 10)
        await broker.start()
        stack.push_async_callback(broker.stop)
        sweepers = []
        for _ in range(2):
            store = await stack.enter_async_context(
                PostgresStore(settings.database_dsn, settings.database_schema, pool_size=2)
            )
            sweepers.append(
                Retention(
                    store,
                    deletions,
                    retention_seconds=24 * 3600,
                    tombstone_seconds=30 * 24 * 3600,
                    interval_seconds=60,
                )
            )
        swept = await asyncio.gather(*(sweeper.sweep() for sweeper in sweepers))

        everything = [job for one in swept for job in one]
        assert len(everything) == len(set(everything)), "no job claimed by both"
        assert set(jobs) <= set(everything)
        for job in jobs:
            [(ce_id, event, record)] = await eventually(functools.partial(announced.of, job))
            assert ce_id == f"{job}:deleted:job"
            assert event.reason is DeletionReason.RETENTION and event.erase is Erase.JOB
            await consumed(settings.deletion_consumer_group, settings, record)
            assert await rows(db, settings, job) == {"jobs": 0, "job_events": 0, "deleted_jobs": 1}
            assert (
                await client.get(f"/jobs/{job}", headers=holder(tokens, job))
            ).status_code == 410
        # Swept again: nothing of them left to announce.
        assert set(jobs).isdisjoint(await sweepers[0].sweep())


async def test_a_replica_sweeps_on_its_own(
    client, notifier_settings, notifier_url, publish, job, tokens, db
):
    settings = notifier_settings.model_copy(
        update={
            "http_port": free_port(),
            "job_retention_seconds": 24 * 3600.0,
            "job_retention_sweep_seconds": 0.1,
        }
    )
    await finished_long_ago(client, publish, job, tokens, db, settings)
    async with running(settings):

        async def gone() -> bool:
            answer = await client.get(f"/jobs/{job}", headers=holder(tokens, job))
            return bool(answer.status_code == 410)

        await eventually(gone, what="the sweep's deletion to be erased")


async def test_old_tombstones_are_forgotten_and_recent_ones_kept(notifier_settings, notifier_url):
    settings = notifier_settings
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    async with PostgresStore(settings.database_dsn, settings.database_schema) as store:
        await store.erase([old, recent])
        await store.pool.execute(
            f"UPDATE {settings.database_schema}.deleted_jobs"
            " SET deleted_at = now() - interval '20 days' WHERE job_id = $1",
            uuid.UUID(old),
        )
        assert await store.prune_tombstones(14 * 24 * 3600) >= 1
        assert await store.find(old) is None, "forgotten"
        found = await store.find(recent)
        assert found is not None and found.deleted
