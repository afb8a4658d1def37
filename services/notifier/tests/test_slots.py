"""The caps on open streams (issue 19 point 4): counted per process, job and client
address, exactly, whatever order streams open and end in."""

import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from notifier import streams
from notifier.fanout import FanOut
from notifier.slots import StreamSlots
from servicekit.http import ApiError

pytestmark = pytest.mark.unit


def refusal(slots: StreamSlots, job: str, address: str) -> ApiError:
    with pytest.raises(ApiError) as refused:
        slots.acquire(job, address)
    return refused.value


def test_a_job_gets_its_share_then_429_whoever_asks():
    slots = StreamSlots(100, per_job=2, per_client=10)
    slots.acquire("job", "127.0.0.2")
    slots.acquire("job", "127.0.0.3")
    error = refusal(slots, "job", "127.0.0.4")
    assert (error.status_code, error.code) == (429, "too_many_job_streams")
    assert error.headers == {"Retry-After": "5"}
    assert slots.of_job("job") == 2 and slots.open == 2
    slots.acquire("another job", "127.0.0.4")  # the refusal took nothing


def test_an_address_gets_its_share_then_429_and_a_stranger_is_served():
    slots = StreamSlots(100, per_job=10, per_client=3)
    for job in ("a", "b", "c"):
        slots.acquire(job, "127.0.0.2")
    error = refusal(slots, "d", "127.0.0.2")
    assert (error.status_code, error.code) == (429, "too_many_client_streams")
    assert error.headers == {"Retry-After": "5"}
    slots.acquire("d", "127.0.0.3")
    assert slots.of_client("127.0.0.2") == 3 and slots.of_client("127.0.0.3") == 1
    assert slots.of_job("d") == 1


def test_the_process_cap_is_503_and_comes_after_the_shares():
    slots = StreamSlots(2, per_job=1, per_client=5)
    slots.acquire("a", "127.0.0.2")
    slots.acquire("b", "127.0.0.3")
    full = refusal(slots, "c", "127.0.0.4")
    assert (full.status_code, full.code) == (503, "too_many_streams")
    # A client over its own share hears that, not that the server is full.
    assert refusal(slots, "a", "127.0.0.4").status_code == 429


def test_release_frees_every_count_and_forgets_jobs_and_addresses_without_streams():
    slots = StreamSlots(2, per_job=1, per_client=1)
    client = slots.acquire("a", "127.0.0.2")
    slots.release("a", client)
    assert (slots.open, slots.of_job("a"), slots.of_client("127.0.0.2")) == (0, 0, 0)
    assert slots.counted() == 0
    slots.release("b", slots.acquire("b", "127.0.0.2"))  # the share is whole again


def test_counting_is_exact_under_churn():
    """Streams open and end in any order: every count is what is open, always."""
    chance = random.Random(19)
    slots = StreamSlots(30, per_job=3, per_client=7)
    jobs = [f"job-{n}" for n in range(16)]
    addresses = [f"127.0.0.{n}" for n in range(2, 8)]
    open_streams: list[tuple[str, str, Any]] = []
    refused = Counter[int]()
    for _ in range(5000):
        if open_streams and chance.random() < 0.45:
            job, address, client = open_streams.pop(chance.randrange(len(open_streams)))
            slots.release(job, client)
        else:
            job, address = chance.choice(jobs), chance.choice(addresses)
            try:
                open_streams.append((job, address, slots.acquire(job, address)))
            except ApiError as error:
                refused[error.status_code] += 1
        by_job = Counter(job for job, _, _ in open_streams)
        by_address = Counter(address for _, address, _ in open_streams)
        assert slots.open == len(open_streams) <= 30
        assert all(slots.of_job(job) == by_job[job] <= 3 for job in jobs)
        assert all(slots.of_client(a) == by_address[a] <= 7 for a in addresses)
        assert slots.counted() == len(by_job) + len(by_address)
    assert refused[429] and refused[503], "every cap was met"


def a_stream(slots: StreamSlots, job: str = "job") -> streams.Stream:
    fanout = FanOut()
    services: Any = SimpleNamespace(
        fanout=fanout, slots=slots, heartbeats=streams.Heartbeats(15.0, 3600.0)
    )
    return fanout.join(streams.Stream(job, services))


def test_a_stream_releases_its_slots_once_however_often_it_is_told():
    slots = StreamSlots(10, per_job=10, per_client=10)
    stream = a_stream(slots)
    stream.admit("127.0.0.2")
    stream.lost()  # the client hung up...
    stream.lost()
    stream.abandon()  # ...and whatever else says it ended
    assert (slots.open, slots.counted()) == (0, 0)
    other = a_stream(slots)
    other.admit("127.0.0.2")
    assert slots.of_client("127.0.0.2") == 1


def test_a_refused_stream_holds_nothing():
    slots = StreamSlots(10, per_job=1, per_client=10)
    a_stream(slots).admit("127.0.0.2")
    refused = a_stream(slots)
    with pytest.raises(ApiError):
        refused.admit("127.0.0.3")
    refused.abandon()
    assert (slots.open, slots.of_job("job"), slots.of_client("127.0.0.3")) == (1, 1, 0)
