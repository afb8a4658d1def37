"""No client starves the others (issue 19 point 4), black-box through the edge.

Issue 19 found that one job's token could open 2,100 progress streams (2,000 × 200,
100 × 503), after which a stranger who uploaded got 503 for its own stream. Here
client A (127.0.0.2) creates uploads that it leaves open (a resumable upload created
empty: its job stays ``accepted``, so its streams stay open) and opens streams over
them until its share is gone; it hears 429 (its share), never 503 (the server's). It
also forges ``X-Forwarded-For`` with the stranger's address on every request: the
edge replaces that header with the address it saw, so A's streams count against A
alone. Then the stranger (127.0.0.3) uploads, and its stream is served to
``completed``.

The caps are the notifier's defaults, per replica: A needs one job more than its
address's share holds of a job's, so that its streams meet the address cap."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from notifier.settings import Settings
from tests.support.audio import sine_wav
from tests.support.sse import events

pytestmark = pytest.mark.e2e

A, STRANGER = "127.0.0.2", "127.0.0.3"
PER_JOB = Settings.model_fields["sse_max_streams_per_job"].default
PER_CLIENT = Settings.model_fields["sse_max_streams_per_client"].default
CREATE = "/tokens/t1/upload-audio"
SHARES = ("too_many_job_streams", "too_many_client_streams")


def client_at(edge_url: str, address: str, **headers: str) -> httpx.AsyncClient:
    """A client on its own loopback address, with as many connections as it opens."""
    transport = httpx.AsyncHTTPTransport(
        local_address=address, limits=httpx.Limits(max_connections=None)
    )
    return httpx.AsyncClient(base_url=edge_url, transport=transport, headers=headers, timeout=30)


async def open_upload(client: httpx.AsyncClient) -> dict[str, Any]:
    """A resumable upload created empty and left open (docs/architecture.md §12)."""
    created = await client.post(CREATE, headers={"Upload-Complete": "?0"}, content=b"")
    assert created.status_code == 201, created.text
    job: dict[str, Any] = created.json()
    return job


async def upload(client: httpx.AsyncClient) -> dict[str, Any]:
    audio = sine_wav(seconds=0.5)
    accepted = await client.post(CREATE, files={"file": ("tone.wav", audio, "audio/wav")})
    assert accepted.status_code == 202, accepted.text
    job: dict[str, Any] = accepted.json()
    return job


@pytest.fixture
async def streams() -> AsyncIterator[AsyncExitStack]:
    """Where A's open streams are kept until the test ends."""
    async with AsyncExitStack() as stack:
        yield stack


async def test_a_client_holding_its_whole_share_leaves_a_strangers_stream_at_200(
    edge_url: str, streams: AsyncExitStack
) -> None:
    attacker = await streams.enter_async_context(
        client_at(edge_url, A, **{"X-Forwarded-For": STRANGER})
    )
    jobs = [await open_upload(attacker) for _ in range(PER_CLIENT // PER_JOB + 1)]
    for job in jobs:  # cancelled at the end, after its streams: no upload is left open
        resource = f"/uploads/{job['job_id']}"
        streams.push_async_callback(
            attacker.delete, resource, params={"access_token": job["access_token"]}
        )

    opened = refused = 0
    # Round-robin over A's jobs until its address's share is gone, then some more.
    for attempt in range(20 * PER_CLIENT):
        job = jobs[attempt % len(jobs)]
        response = await streams.enter_async_context(
            attacker.stream(
                "GET", f"/tokens/analysis-progress/{job['job_id']}",
                params={"access_token": job["access_token"]},
            )
        )  # fmt: skip
        if response.status_code == 200:
            opened += 1
            continue
        await response.aread()
        assert response.status_code == 429, (opened, response.status_code, response.text)
        assert response.json()["error"]["code"] in SHARES and response.headers["retry-after"]
        if refused or response.json()["error"]["code"] == "too_many_client_streams":
            refused += 1
            if refused == 10:
                break
    assert refused == 10, f"A's share never ran out: {opened} streams open"

    async with client_at(edge_url, STRANGER) as stranger:
        job = await upload(stranger)
        seen = []
        # As the seed's page does: the bare path, with the cookie the upload set.
        path = f"/tokens/analysis-progress/{job['job_id']}"
        async with stranger.stream("GET", path, timeout=120) as stream:
            assert stream.status_code == 200, (await stream.aread()).decode()
            async for event in events(stream):
                seen.append(event.json()["status"])
                if seen[-1] in ("completed", "failed"):
                    break
    assert seen[-1] == "completed", seen
