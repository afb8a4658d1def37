"""Issue 19's acceptance, black-box through the edge of a stack with the limits `make
run` ships, each client on a loopback address of its own (docs/architecture.md §6)."""

import asyncio
import collections

import httpx
import pytest

from tests.support.audio import sine_wav

pytestmark = pytest.mark.e2e

SMALL = sine_wav(0.1)


def client_at(edge_url: str, address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=edge_url, transport=transport, timeout=60)


async def test_a_flood_from_one_client_is_refused_with_429_and_a_stranger_still_uploads(
    edge_url: str,
) -> None:
    statuses: collections.Counter[int] = collections.Counter()
    refusals: list[httpx.Response] = []
    async with client_at(edge_url, "127.0.0.21") as flooder:
        gate = asyncio.Semaphore(8)

        async def one(n: int) -> None:
            async with gate:
                answer = await flooder.post(
                    "/tokens/flood/upload-audio",
                    files={"file": (f"f{n}.wav", SMALL, "audio/wav")},
                    # A forged header changes nothing: the edge says who the client is.
                    headers={"X-Forwarded-For": f"10.0.{n // 250}.{n % 250}"},
                )
                statuses[answer.status_code] += 1
                if answer.status_code == 429:
                    refusals.append(answer)

        await asyncio.gather(*(one(n) for n in range(300)))
    assert set(statuses) <= {202, 429}, statuses
    assert statuses[202] < 30, statuses  # a burst of 10, then 30 a minute
    assert statuses[429] > 270
    for answer in refusals[:20]:
        assert answer.json()["error"]["code"] in ("too_many_uploads", "too_many_open_uploads")
        assert int(answer.headers["retry-after"]) >= 1
    async with client_at(edge_url, "127.0.0.22") as stranger:
        mine = await stranger.post(
            "/tokens/mine/upload-audio", files={"file": ("s.wav", SMALL, "audio/wav")}
        )
    assert mine.status_code == 202, mine.text


async def test_the_token_in_the_progress_url_cannot_cancel_the_upload(edge_url: str) -> None:
    data = sine_wav(2.0)
    async with client_at(edge_url, "127.0.0.23") as http:
        created = await http.post(
            "/tokens/t1/upload-audio",
            content=data[:4096],
            headers={
                "Upload-Draft-Interop-Version": "8",
                "Upload-Complete": "?0",
                "Upload-Length": str(len(data)),
                "Content-Type": "application/octet-stream",
            },
        )
        assert created.status_code == 201, created.text
        job, location = created.json(), created.headers["location"]
        upload = location.split("?")[0]
        shared = job["progress_url"].split("access_token=")[1]
        cancel = await http.delete(upload, params={"access_token": shared})
        assert cancel.status_code == 403
        assert cancel.json()["error"]["code"] == "insufficient_scope"
        head = await http.head(location, headers={"Upload-Draft-Interop-Version": "8"})
        assert head.status_code == 204  # still there, at its offset
        assert head.headers["upload-offset"] == "4096"
        # Its own access token does cancel it.
        assert (await http.delete(location)).status_code == 204
