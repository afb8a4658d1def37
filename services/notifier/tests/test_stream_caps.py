"""No client starves the others (issue 19 point 4): the caps per job and per client
address on the real server (uvicorn, the detached protocol, real sockets from several
loopback addresses); the history is in memory, which also counts what a refusal read
(nothing). The lifetime against the real Kafka and PostgreSQL: test_stream_lifetime.py."""

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from notifier_testing import PROGRESS, MemoryHistory, services_of, serving_from_memory
from pydantic import SecretStr

from contracts import JobStatus
from notifier.projection import JobSnapshot
from notifier.settings import Settings
from servicekit.tokens import JobTokens
from tests.support.processes import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

SECRET = "notifier-caps-test-secret-32-bytes-long"
TOKENS = JobTokens(SECRET, 600)
PER_JOB, PER_CLIENT, PROCESS = 2, 3, 4
A, STRANGER, THIRD = "127.0.0.2", "127.0.0.3", "127.0.0.4"


class Served:
    def __init__(self, url: str, server: Any, history: MemoryHistory) -> None:
        self.url = url
        self.services = services_of(server.config.app)
        self.history = history

    def job(self) -> str:
        """A job with one applied, non-final event: its streams open and wait."""
        job = str(uuid.uuid4())
        self.history.add(
            JobSnapshot(job, 1, JobStatus.UPLOADING, 20, None, None, None, datetime.now(UTC))
        )
        return job


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    settings = Settings(
        job_token_secret=SecretStr(SECRET),
        http_port=free_port(),
        sse_max_streams=PROCESS,
        sse_max_streams_per_job=PER_JOB,
        sse_max_streams_per_client=PER_CLIENT,
    )
    async with serving_from_memory(settings) as (server, history):
        yield Served(f"http://127.0.0.1:{settings.http_port}", server, history)


class Client:
    """One client address: its streams stay open until it hangs up (``close``)."""

    def __init__(self, url: str, address: str) -> None:
        transport = httpx.AsyncHTTPTransport(
            local_address=address, limits=httpx.Limits(max_connections=None)
        )
        self.http = httpx.AsyncClient(base_url=url, transport=transport, timeout=15)
        self.open: list[AsyncExitStack] = []

    async def stream(self, job: str, **headers: str) -> httpx.Response:
        """Open a stream of ``job``: its answer, read whole unless it is a 200 (whose
        body stays open until :meth:`hang_up`)."""
        stack = AsyncExitStack()
        response = await stack.enter_async_context(
            self.http.stream(
                "GET", PROGRESS.format(job), params={"access_token": TOKENS.issue(job)},
                headers=headers,
            )
        )  # fmt: skip
        if response.status_code == 200:
            self.open.append(stack)
        else:
            await response.aread()
            await stack.aclose()
        return response

    async def hang_up(self, count: int | None = None) -> None:
        """Close ``count`` open streams (all by default): the connection goes."""
        for _ in range(len(self.open) if count is None else count):
            await self.open.pop().aclose()

    async def close(self) -> None:
        await self.hang_up()
        await self.http.aclose()


@pytest.fixture
async def clients(served: Served) -> AsyncIterator[dict[str, Client]]:
    made = {address: Client(served.url, address) for address in (A, STRANGER, THIRD)}
    try:
        yield made
    finally:
        for client in made.values():
            await client.close()
        READERS.clear()


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


READERS: list[AsyncIterator[str]] = []
"""The line iterators of streams still open: one left behind would be finalized by the
collector at any moment, and that closes its connection (a hang-up, freeing a slot)."""


async def first_event_id(response: httpx.Response) -> str | None:
    lines = response.aiter_lines()
    READERS.append(lines)
    async for line in lines:
        if line.startswith("id: "):
            return line.removeprefix("id: ")
    return None


async def test_a_job_has_at_most_its_share_of_streams_and_the_next_is_429(served, clients):
    job = served.job()
    for _ in range(PER_JOB):
        assert (await clients[A].stream(job)).status_code == 200
    reads = served.history.reads
    assert_refused(await clients[A].stream(job), 429, "too_many_job_streams")
    # Whoever asks: the job's share is full (its token is the job's, not the person's).
    assert_refused(await clients[STRANGER].stream(job), 429, "too_many_job_streams")
    assert served.history.reads == reads, "a refusal reads nothing from the database"
    assert served.services.slots.of_job(job) == PER_JOB
    # The client itself has room left for another job.
    assert (await clients[A].stream(served.job())).status_code == 200


async def test_a_stranger_is_served_while_a_client_holds_its_full_share(served, clients):
    for _ in range(PER_CLIENT):
        assert (await clients[A].stream(served.job())).status_code == 200
    assert_refused(await clients[A].stream(served.job()), 429, "too_many_client_streams")

    stranger = await clients[STRANGER].stream(served.job())
    assert stranger.status_code == 200
    assert await first_event_id(stranger) == "1", "and streams"
    slots = served.services.slots
    assert (slots.of_client(A), slots.of_client(STRANGER), slots.open) == (PER_CLIENT, 1, PROCESS)

    # The process is full now: a third address meets its 503, A still its own 429.
    assert_refused(await clients[THIRD].stream(served.job()), 503, "too_many_streams")
    assert_refused(await clients[A].stream(served.job()), 429, "too_many_client_streams")


async def test_a_hang_up_frees_the_slots_of_its_job_and_address(served, clients):
    job = served.job()
    for _ in range(PER_JOB):
        assert (await clients[A].stream(job)).status_code == 200
    assert_refused(await clients[A].stream(job), 429, "too_many_job_streams")

    await clients[A].hang_up(1)
    slots = served.services.slots
    await eventually(lambda: slots.of_job(job) == PER_JOB - 1, what="the slot to be freed")
    assert slots.of_client(A) == PER_JOB - 1
    assert (await clients[A].stream(job)).status_code == 200

    await clients[A].hang_up()
    await eventually(lambda: slots.open == 0, what="every slot to be freed")
    assert slots.counted() == 0, "no count is left for a job or address without streams"
    assert served.services.fanout.subscriber_count() == 0


async def test_the_address_is_the_peer_unless_the_peer_is_the_trusted_edge(served, clients):
    """uvicorn takes ``X-Forwarded-For`` only from a trusted proxy (127.0.0.1 by default:
    the local edge), also on the detached protocol's path; from anyone else it is a
    forgery, and the stream counts for the address it came from."""
    slots = served.services.slots
    forged = await clients[A].stream(served.job(), **{"X-Forwarded-For": STRANGER})
    assert forged.status_code == 200
    assert (slots.of_client(A), slots.of_client(STRANGER)) == (1, 0)

    edge = Client(served.url, "127.0.0.1")
    try:
        relayed = await edge.stream(served.job(), **{"X-Forwarded-For": THIRD})
        assert relayed.status_code == 200
        assert (slots.of_client(THIRD), slots.of_client("127.0.0.1")) == (1, 0)
    finally:
        await edge.close()
