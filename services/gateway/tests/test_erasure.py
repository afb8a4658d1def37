"""A deleted job's resumable upload in memory, over fakes of the ports
(gateway.resumable.uploads.Resumable.erase): what it ends, what it tells the uploader,
what it answers after. The same on the real broker and database: test_deletion.py."""

import pytest
from gateway_fakes import FakeQuota, FakeSink, FakeUploadStore

from contracts import UploadAborted, topics
from gateway.ingest import UploadLimits
from gateway.ports import State
from gateway.resumable.uploads import NewUpload, Resumable
from servicekit.http import ApiError
from servicekit.tokens import JobTokens

pytestmark = pytest.mark.unit

TOKENS = JobTokens("s" * 32, 60)
LIMITS = UploadLimits(
    max_bytes=1 << 30, chunk_bytes=1024, max_chunks_in_flight=4, ack_timeout_seconds=1
)


async def created(r: Resumable) -> str:
    new = NewUpload("ietf", "t", None, "a.wav", 4096, client="127.0.0.1", body_bytes=0)
    async with r.creating(new) as made:
        return made.job_id


def aborts(sink: FakeSink, job_id: str) -> list[UploadAborted]:
    return [
        m
        for topic, _, m in sink.messages
        if topic == topics.AUDIO_UPLOAD and isinstance(m, UploadAborted) and m.job_id == job_id
    ]


async def test_an_open_upload_ends_tells_the_uploader_and_answers_410_to_its_holder() -> None:
    store, sink, quota = FakeUploadStore(), FakeSink(), FakeQuota()
    r = Resumable(store, sink, LIMITS, TOKENS, quota, 3600)
    job_id = await created(r)
    assert any(lease[3] == job_id for lease in quota.leases.values())

    await r.erase(job_id)
    assert store.rows == {} and await store.deleted(job_id)
    assert [a.reason for a in aborts(sink, job_id)] == ["job_deleted"]
    assert not any(lease[3] == job_id for lease in quota.leases.values())
    holder = TOKENS.issue(job_id)
    with pytest.raises(ApiError) as gone:
        await r.find(job_id, [holder], None)
    assert (gone.value.status_code, gone.value.code) == (410, "job_deleted")
    with pytest.raises(ApiError) as unknown:
        await r.find(job_id, [], None)  # nothing told without the job's token
    assert unknown.value.status_code == 404

    await r.erase(job_id)  # again: nothing more to end or tell
    assert len(aborts(sink, job_id)) == 1


async def test_an_ended_upload_is_erased_without_telling_the_uploader() -> None:
    store, sink = FakeUploadStore(), FakeSink()
    r = Resumable(store, sink, LIMITS, TOKENS, FakeQuota(), 3600)
    job_id = await created(r)
    store.ended(job_id, State.COMPLETE, "{}")
    await r.erase(job_id)
    assert store.rows == {} and aborts(sink, job_id) == []


async def test_a_row_left_deleted_by_a_crash_is_told_again() -> None:
    store, sink = FakeUploadStore(), FakeSink()
    r = Resumable(store, sink, LIMITS, TOKENS, FakeQuota(), 3600)
    job_id = await created(r)
    store.ended(job_id, State.DELETED, None)  # ended, then the process died
    with pytest.raises(ApiError) as deleted:
        Resumable.usable(store.rows[job_id])
    assert deleted.value.status_code == 410
    await r.erase(job_id)
    assert len(aborts(sink, job_id)) == 1 and store.rows == {}
