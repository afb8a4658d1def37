"""The data lifecycle's rules with fakes: who deletes what, what is announced and
erased, and the retention sweep (the real database and broker: test_deletion.py)."""

import sys
import uuid
from pathlib import Path

import pytest

from contracts import DeletionReason, Erase, JobStatus, JobStatusChanged
from notifier.lifecycle import Deleter, Deletion, Retention
from notifier.ports import JobGone
from notifier.projection import Outcome
from servicekit.http import ApiError, DependencyUnavailable

sys.path.insert(0, str(Path(__file__).parent))
from notifier_fakes import FakeDeletions, FakeStore

pytestmark = pytest.mark.unit

ALICE, BOB = "alice", "bob"


async def accepted(store: FakeStore, owner: str | None = None, *, final: bool = False) -> str:
    job = str(uuid.uuid4())
    events = [JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0, owner=owner)]
    if final:
        events.append(JobStatusChanged(job_id=job, status=JobStatus.FAILED, progress=100))
    await store.record_batch([(f"{job}:{n}", event) for n, event in enumerate(events)])
    return job


@pytest.fixture
def rig() -> tuple[FakeStore, FakeDeletions, Deleter]:
    store, deletions = FakeStore(), FakeDeletions()
    return store, deletions, Deleter(store, deletions)


async def test_the_holder_deletes_a_job_announced_first_then_erased_here(rig):
    store, deletions, deleter = rig
    job = await accepted(store)
    assert await deleter.delete(job) is Deletion.STARTED
    [event] = deletions.published
    assert (event.job_id, event.reason, event.erase) == (job, DeletionReason.REQUESTED, Erase.JOB)
    assert store.erased == [[job]]
    with pytest.raises(JobGone):
        await store.current(job)


async def test_deleting_again_is_harmless_and_announces_nothing_more(rig):
    store, deletions, deleter = rig
    job = await accepted(store)
    await deleter.delete(job)
    assert await deleter.delete(job) is Deletion.ALREADY
    assert len(deletions.published) == 1


async def test_a_job_not_projected_yet_is_deleted_and_its_events_dropped_when_they_come(rig):
    store, deletions, deleter = rig
    job = str(uuid.uuid4())  # its token proves it exists; its events are on their way
    assert await deleter.delete(job) is Deletion.STARTED
    assert [e.job_id for e in deletions.published] == [job]
    [decision] = await store.record_batch(
        [("late", JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0))]
    )
    assert decision.outcome is Outcome.DELETED
    assert store.history == []
    with pytest.raises(JobGone):
        await store.current(job)


async def test_the_owner_deletes_its_own_job(rig):
    store, deletions, deleter = rig
    job = await accepted(store, ALICE)
    assert await deleter.delete(job, ALICE) is Deletion.STARTED
    assert [e.job_id for e in deletions.published] == [job]


@pytest.mark.parametrize("case", ["another owner's", "no owner's", "deleted", "unknown"])
async def test_an_owner_learns_nothing_of_jobs_not_its_own(rig, case):
    store, deletions, deleter = rig
    if case == "unknown":
        job = str(uuid.uuid4())
    else:
        job = await accepted(store, {"another owner's": BOB}.get(case))
    if case == "deleted":
        await store.erase([job])
    before = (dict(store.jobs), len(store.erased))
    with pytest.raises(ApiError) as refused:
        await deleter.delete(job, ALICE)
    assert (refused.value.status_code, refused.value.code) == (404, "not_found")
    assert deletions.published == []
    assert (dict(store.jobs), len(store.erased)) == before


async def test_nothing_is_erased_when_the_deletion_cannot_be_announced(rig):
    store, deletions, deleter = rig
    job = await accepted(store)
    deletions.down = True
    with pytest.raises(DependencyUnavailable):
        await deleter.delete(job)
    assert store.erased == []
    assert await store.current(job) is not None


async def test_an_announced_deletion_is_answered_even_if_erasing_here_must_wait(rig):
    store, deletions, deleter = rig
    job = await accepted(store)

    async def down(job_ids: list[str]) -> None:
        raise DependencyUnavailable("postgresql", 1, "down")

    store.erase = down
    assert await deleter.delete(job) is Deletion.STARTED
    assert [e.job_id for e in deletions.published] == [job]  # the consumer erases it


def retention(store: FakeStore, deletions: FakeDeletions, seconds: float = 3600) -> Retention:
    return Retention(
        store, deletions, retention_seconds=seconds, tombstone_seconds=86400, interval_seconds=60
    )


async def test_a_sweep_announces_finished_jobs_past_retention_once():
    store, deletions = FakeStore(), FakeDeletions()
    old, running = await accepted(store, final=True), await accepted(store)
    recent = await accepted(store, final=True)
    store.expired = {old, running}
    first, second = retention(store, deletions), retention(store, deletions)
    assert await first.sweep() == [old]
    assert await second.sweep() == [], "claimed by the first sweep"
    [event] = deletions.published
    assert (event.job_id, event.reason, event.erase) == (old, DeletionReason.RETENTION, Erase.JOB)
    assert store.erased == [], "erased by the job.deleted consumer, as any deletion"
    assert recent in store.jobs


async def test_retention_zero_keeps_jobs_until_deleted():
    store, deletions = FakeStore(), FakeDeletions()
    store.expired = {await accepted(store, final=True)}
    assert await retention(store, deletions, seconds=0).sweep() == []
    assert deletions.published == []
