"""DELETE /jobs/{job_id} and GET /jobs over HTTP, in memory: the app's routes with the
fakes of its ports (on the real database and broker: test_deletion.py)."""

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from contracts import JobStatus, JobStatusChanged
from notifier.app import Adapters, create_app
from notifier.settings import Settings
from servicekit.tokens import COOKIE_NAME, JobTokens

sys.path.insert(0, str(Path(__file__).parent))
from notifier_fakes import FakeDeletions, FakeFeed, FakeStore
from notifier_testing import OWNER_AUTH, owner

pytestmark = pytest.mark.unit

SECRET = "notifier-unit-test-secret-0123456789abcdef"
TOKENS = JobTokens(SECRET, 600)


class Served:
    def __init__(self, http: httpx.AsyncClient, store: FakeStore, deletions: FakeDeletions):
        self.http, self.store, self.deletions = http, store, deletions

    async def job(self, owner: str | None = None) -> str:
        job = str(uuid.uuid4())
        event = JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0, owner=owner)
        await self.store.record_batch([(job, event)])
        return job


async def serve(**settings: object) -> AsyncIterator[Served]:
    store, deletions = FakeStore(), FakeDeletions()
    fakes = Adapters(store, FakeFeed(), deletions)
    app = create_app(Settings(job_token_secret=SECRET, **settings), fakes)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as http:
        yield Served(http, store, deletions)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for s in serve(**OWNER_AUTH):
        yield s


@pytest.fixture
async def anonymous() -> AsyncIterator[Served]:
    async for s in serve():
        yield s


def holder(job: str) -> dict[str, str]:
    """The upload's answer's ``access_token``: reads and writes."""
    return {"Authorization": f"Bearer {TOKENS.issue(job)}"}


async def test_the_holder_deletes_then_the_job_is_gone_and_again_is_harmless(served):
    job = await served.job()
    answer = await served.http.delete(f"/jobs/{job}", headers=holder(job))
    assert answer.status_code == 202
    assert answer.json() == {"job_id": job, "status": "deleting"}
    assert [e.job_id for e in served.deletions.published] == [job]
    gone = await served.http.get(f"/jobs/{job}", headers=holder(job))
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "job_deleted"
    again = await served.http.delete(f"/jobs/{job}", params={"access_token": TOKENS.issue(job)})
    assert again.status_code == 204
    assert len(served.deletions.published) == 1


@pytest.mark.parametrize(
    ("credentials", "status", "code"),
    [
        ("progress cookie", 403, "insufficient_scope"),
        ("progress token", 403, "insufficient_scope"),
        ("another job's", 403, "wrong_job"),
        ("none", 401, "missing_token"),
        ("a forged owner's", 401, "unauthorized"),
    ],
)
async def test_who_may_not_delete_changes_nothing(served, credentials, status, code):
    job = await served.job("alice")
    headers = {
        "progress cookie": {"Cookie": f"{COOKIE_NAME}={TOKENS.issue_progress(job)}"},
        "progress token": {"Authorization": f"Bearer {TOKENS.issue_progress(job)}"},
        "another job's": holder(str(uuid.uuid4())),
        "none": {},
        "a forged owner's": {"Authorization": "Bearer e30.e30.e30"},
    }[credentials]
    answer = await served.http.delete(f"/jobs/{job}", headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert served.deletions.published == [] and served.store.erased == []
    assert (await served.http.get(f"/jobs/{job}", headers=holder(job))).status_code == 200


async def test_an_owner_deletes_its_job_and_no_other(served):
    mine, theirs = await served.job("alice"), await served.job("bob")
    refused = await served.http.delete(f"/jobs/{theirs}", headers=owner("alice"))
    assert (refused.status_code, refused.json()["error"]["code"]) == (404, "not_found")
    assert served.deletions.published == []
    assert (await served.http.delete(f"/jobs/{mine}", headers=owner("alice"))).status_code == 202
    assert [e.job_id for e in served.deletions.published] == [mine]
    # Deleted: the owner no longer knows it, whoever asks.
    assert (await served.http.delete(f"/jobs/{mine}", headers=owner("alice"))).status_code == 404


async def test_an_owner_lists_its_own_jobs_newest_first(served):
    first, second = await served.job("alice"), await served.job("alice")
    await served.job("bob")
    answer = await served.http.get("/jobs", headers=owner("alice"))
    assert answer.status_code == 200
    body = answer.json()
    assert [job["job_id"] for job in body["jobs"]] == [second, first]
    assert (
        body["jobs"][0] == (await served.http.get(f"/jobs/{second}", headers=holder(second))).json()
    )
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "who", "status", "code"),
    [
        ({}, None, 401, "unauthorized"),
        ({"limit": "0"}, "alice", 422, "invalid_request"),
        ({"limit": "101"}, "alice", 422, "invalid_request"),
        ({"cursor": "nope"}, "alice", 422, "invalid_cursor"),
    ],
)
async def test_a_list_request_that_cannot_be_answered_says_why(served, query, who, status, code):
    # The JWT is made as the test runs: one made when the suite was collected may have
    # expired by now.
    headers = owner(who) if who else {}
    answer = await served.http.get("/jobs", params=query, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)


async def test_without_owners_the_list_says_so_and_the_holder_still_deletes(anonymous):
    answer = await anonymous.http.get("/jobs", headers=owner("alice"))
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "no_owners")
    assert "UPLOAD_AUTH=jwt" in answer.json()["error"]["message"]
    job = await anonymous.job()
    assert (await anonymous.http.delete(f"/jobs/{job}", headers=holder(job))).status_code == 202


async def test_a_job_id_that_is_not_a_uuid_is_422(served):
    answer = await served.http.delete("/jobs/not-a-uuid", headers=owner("alice"))
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_job_id")
