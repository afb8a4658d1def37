"""The projection's writes against the real database (notifier.adapters.postgres): one
statement records a batch's history, states and notifications; the owner is kept
whichever event names it and in whichever order events come."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import JobStatus, JobStatusChanged
from notifier.adapters.postgres import PostgresStore
from notifier.projection import Outcome

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(infra) -> AsyncIterator[PostgresStore]:
    schema = f"notifier_projection_{uuid.uuid4().hex[:10]}"
    async with PostgresStore(infra["DATABASE_URL"], schema, pool_size=2) as store:
        yield store
        await store.pool.execute(f"DROP SCHEMA {schema} CASCADE")


def status(job_id: str, status: JobStatus, progress: int, at: int, **more) -> JobStatusChanged:
    return JobStatusChanged(
        job_id=job_id, status=status, progress=progress, time=T0 + timedelta(seconds=at), **more
    )


async def owner_of(store: PostgresStore, job_id: str) -> str | None:
    owner: str | None = await store.pool.fetchval(
        f"SELECT owner FROM {store.schema}.jobs WHERE job_id = $1", uuid.UUID(job_id)
    )
    return owner


async def test_a_batch_of_several_jobs_is_recorded_in_order_with_its_states(store) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    batch = [
        ("a1", status(a, JobStatus.ACCEPTED, 0, 0, owner="alice")),
        ("b1", status(b, JobStatus.ACCEPTED, 0, 1)),
        ("a2", status(a, JobStatus.UPLOADING, 1, 2)),
        ("a1", status(a, JobStatus.ACCEPTED, 0, 0, owner="alice")),  # a repeat
        ("a3", status(a, JobStatus.ACCEPTED, 0, 3)),  # backwards: recorded, ignored
    ]
    decisions = await store.record_batch(batch)
    assert [d.outcome for d in decisions] == [
        Outcome.APPLIED, Outcome.APPLIED, Outcome.APPLIED, Outcome.DUPLICATE, Outcome.IGNORED,
    ]  # fmt: skip
    history = await store.pool.fetch(
        f"SELECT ce_id, event_id, outcome FROM {store.schema}.job_events ORDER BY seq"
    )
    assert [(r["ce_id"], r["event_id"], r["outcome"]) for r in history] == [
        ("a1", 1, "applied"), ("b1", 1, "applied"), ("a2", 2, "applied"), ("a3", None, "ignored"),
    ]  # fmt: skip
    current = await store.current(a)
    assert current is not None and (current.status, current.event_id) == (JobStatus.UPLOADING, 2)
    assert await owner_of(store, a) == "alice" and await owner_of(store, b) is None
    other = await store.current(b)
    assert other is not None and (other.status, other.event_id) == (JobStatus.ACCEPTED, 1)


@pytest.mark.parametrize("same_batch", [True, False])
async def test_the_owner_of_an_accepted_that_comes_late_is_kept(store, same_batch) -> None:
    job = str(uuid.uuid4())
    uploading = ("u", status(job, JobStatus.UPLOADING, 1, 1))
    accepted = ("a", status(job, JobStatus.ACCEPTED, 0, 0, owner="bob"))
    if same_batch:
        decisions = await store.record_batch([uploading, accepted])
    else:
        decisions = [*await store.record_batch([uploading]), *await store.record_batch([accepted])]
    assert [d.outcome for d in decisions] == [Outcome.APPLIED, Outcome.IGNORED]
    assert await owner_of(store, job) == "bob"


async def test_a_later_event_naming_another_owner_does_not_replace_the_first(store) -> None:
    job = str(uuid.uuid4())
    await store.record_batch([("a", status(job, JobStatus.ACCEPTED, 0, 0, owner="carol"))])
    await store.record_batch([("u", status(job, JobStatus.UPLOADED, 50, 1, owner="mallory"))])
    assert await owner_of(store, job) == "carol"
