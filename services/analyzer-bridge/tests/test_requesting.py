"""The Requester over fakes of its ports: what each answer of the analysis server does
to the job, the retry delays it waits, and what it does when the job is not its own.
The same against a real database and servers is in test_bridge_integration.py."""

import asyncio
import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest
from analyzer_bridge_fakes import JOB, SECRET, FakeServer, FakeStore, rules, stored

from analyzer_bridge.analysis import State
from analyzer_bridge.capability import WEBHOOK_PATH, Capabilities
from analyzer_bridge.ports import ServerAnswer
from contracts import AnalysisFailed, AnalysisRequest, ErrorCode

pytestmark = pytest.mark.unit


async def pending(r, deadline_seconds: float = 600) -> None:
    await r.store.insert_pending(stored(), deadline_seconds)


async def test_an_accepted_request_marks_the_job_requested_and_publishes_analyzing():
    r = rules()
    await pending(r)
    await r.requester.request(JOB)
    (request,) = r.server.requests
    assert request.audio_url == f"http://s3.test/b/audio/{JOB}?signed"
    assert request.metadata == {"reference.mode": "normal", "filename": "take.wav"}
    url = urlsplit(request.webhook_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"http://edge.test{WEBHOOK_PATH}"
    query = parse_qs(url.query)
    assert query["job_id"] == [JOB]
    assert Capabilities(SECRET, 3600).allows(query["token"][0], JOB)
    assert r.store.rows[JOB].state is State.REQUESTED
    assert r.events.of(JOB) == [("analyzing", 51)]
    assert r.events.statuses[0][0] == f"{JOB}:status:analyzing:51"
    # The server is told when the bridge gives up, so that it stops then too.
    assert request.deadline == r.store.rows[JOB].deadline


async def test_a_job_recorded_with_its_lease_makes_its_first_attempt_on_that_lease():
    r = rules(ServerAnswer(503), ServerAnswer(202))
    leased = await r.store.insert_pending(
        stored(), 600, owner=r.requester.owner, lease_seconds=r.requester.lease_seconds
    )
    assert leased is not None and leased.attempts == 1
    assert r.store.leases[JOB][0] == r.requester.owner
    # Another replica cannot take it meanwhile.
    assert await r.store.take_attempt(JOB, "another-replica", 60) is None
    await r.requester.request(JOB, leased)
    assert len(r.server.requests) == 2
    assert r.store.rows[JOB].attempts == 2  # the recorded one, then one retry taken
    assert r.store.rows[JOB].state is State.REQUESTED


async def test_transient_answers_are_retried_never_sooner_than_retry_after():
    r = rules(ServerAnswer(503, retry_after="7", message="busy"), None, ServerAnswer(202))
    await pending(r)
    await r.requester.request(JOB)
    assert len(r.server.requests) == 3
    # 7 s asked for; then half (the jitter) of the second window, 1 s.
    assert r.sleeps.delays == [7.0, 0.5]
    assert r.store.rows[JOB].attempts == 3
    assert r.store.rows[JOB].state is State.REQUESTED


async def test_a_rejection_fails_the_job_with_the_servers_message():
    r = rules(ServerAnswer(422, message="unsupported codec"))
    await pending(r)
    await r.requester.request(JOB)
    row = r.store.rows[JOB]
    assert row.state is State.FAILED
    assert row.outcome is not None and row.outcome.error is not None
    assert row.outcome.error.code == ErrorCode.ANALYSIS_REJECTED
    assert "unsupported codec" in row.outcome.error.message
    ((_, result),) = r.events.results
    assert isinstance(result, AnalysisFailed)
    assert r.events.of(JOB) == [("failed", 100)]
    assert r.sleeps.delays == []


async def test_the_retry_budget_ends_in_analysis_failed():
    r = rules(None, None, None, max_attempts=3)
    await pending(r)
    await r.requester.request(JOB)
    assert len(r.server.requests) == 3
    row = r.store.rows[JOB]
    assert row.outcome is not None and row.outcome.error is not None
    assert row.outcome.error.code == ErrorCode.ANALYSIS_FAILED
    assert "after 3 attempts" in row.outcome.error.message
    assert len(r.sleeps.delays) == 2


async def test_no_retry_past_the_deadline_the_sweeper_fails_it_later():
    r = rules(ServerAnswer(503, retry_after="60"))
    await pending(r, deadline_seconds=5)
    await r.requester.request(JOB)
    assert len(r.server.requests) == 1
    assert r.sleeps.delays == []
    assert r.store.rows[JOB].state is State.PENDING
    assert r.events.statuses == []


async def test_a_job_that_is_no_longer_pending_is_not_requested():
    r = rules()
    await pending(r)
    r.store.put(dataclasses.replace(r.store.rows[JOB], state=State.REQUESTED))
    await r.requester.request(JOB)
    assert r.server.requests == []


async def test_a_job_leased_by_another_replica_is_not_requested():
    r = rules()
    await pending(r)
    await r.store.take_attempt(JOB, "another-replica", 60)
    await r.requester.request(JOB)
    assert r.server.requests == []


class CuttingServer(FakeServer):
    """Accepts, and takes the database down for the next ``calls`` store calls."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls
        self.store: FakeStore | None = None

    async def analyze(self, request: AnalysisRequest) -> ServerAnswer:
        answer = await super().analyze(request)
        assert self.store is not None
        self.store.down = self.calls
        return answer


async def test_an_accepted_request_is_recorded_through_a_database_outage_not_repeated():
    server = CuttingServer(calls=2)
    r = rules(server=server)
    server.store = r.store
    await pending(r)
    await r.requester.request(JOB)
    assert len(r.server.requests) == 1
    assert r.sleeps.delays == [0.5, 1.0]
    assert r.store.rows[JOB].state is State.REQUESTED
    assert r.events.of(JOB) == [("analyzing", 51)]


async def test_progress_already_past_the_start_is_not_published_again():
    r = rules()
    await pending(r)
    r.store.put(dataclasses.replace(r.store.rows[JOB], progress=60))
    await r.requester.request(JOB)
    assert r.store.rows[JOB].state is State.REQUESTED
    assert r.events.statuses == []


async def test_a_job_submitted_twice_is_requested_once_in_the_background():
    r = rules()
    await pending(r)
    r.requester.submit(JOB)
    r.requester.submit(JOB)
    await r.requester.join()
    assert len(r.server.requests) == 1


class HangingServer(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.called = asyncio.Event()

    async def analyze(self, request: AnalysisRequest) -> ServerAnswer:
        self.requests.append(request)
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")


async def test_stopping_cancels_requests_and_gives_up_their_leases():
    server = HangingServer()
    r = rules(server=server)
    await pending(r)
    r.requester.submit(JOB)
    await server.called.wait()
    assert JOB in r.store.leases
    await r.requester.stop()
    assert JOB not in r.store.leases
    assert r.store.rows[JOB].state is State.PENDING
    assert await r.store.orphaned_pending() == [JOB]
