"""Who may ask for an analysis, and what a refused request costs (issue 19): the app
in memory, ``POST /analyze`` signed by the bridge's secret or refused with 401 before
anything starts; over-large bodies and files refused from what decides them."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from reference_analyzer.testing import analysis_request, encode, sine
from servicekit.webhooks import signed_headers

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

WAV = encode(sine(seconds=1, sample_rate=8000), 8000)
OTHER_SECRET = "whsec_" + "YW5vdGhlci1rZXktbm90LXRoZS1icmlkZ2VzLTMyYg=="
JSON = {"content-type": "application/json"}


def raw_body(env, job_id="job-1", data=WAV, **fields) -> bytes:
    url = env.audio.add(data)
    request = analysis_request(url, data, env.hooks.url(job_id), job_id)
    return json.dumps(request.model_dump(mode="json") | fields).encode()


class Watched:
    """A request body that records whether the server read any of it."""

    def __init__(self, body: bytes) -> None:
        self.body, self.read = body, False

    async def __aiter__(self):
        self.read = True
        yield self.body


async def nothing_started(env, job_id="job-1") -> None:
    assert (await env.client.get(f"/jobs/{job_id}")).status_code == 404  # not even noted
    assert set(env.audio.requests.values()) <= {0}  # no download
    assert env.hooks.attempts == []


@pytest.mark.parametrize("how", ["unsigned", "forged", "stale", "body-changed"])
async def test_an_unsigned_forged_or_stale_request_gets_401_and_starts_nothing(
    in_memory, signing_secret, how
):
    async with in_memory() as env:
        body = raw_body(env)
        now = int(time.time())
        headers = {
            "unsigned": {},
            "forged": signed_headers(OTHER_SECRET, "msg_1", now, body),
            "stale": signed_headers(signing_secret, "msg_1", now - 301, body),
            "body-changed": signed_headers(signing_secret, "msg_1", now, body + b" "),
        }[how]
        response = await env.client.post(
            "/analyze", content=body, headers=JSON | headers, auth=None
        )
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "unauthorized",
            "message": "missing or invalid request signature",
        }
        await nothing_started(env)


async def test_headers_that_decide_a_refusal_are_read_before_the_body(in_memory):
    async with in_memory() as env:
        body = Watched(raw_body(env))
        response = await env.client.post("/analyze", content=body, headers=JSON, auth=None)
        assert response.status_code == 401
        assert not body.read


async def test_a_replayed_request_starts_no_second_analysis(in_memory, signing_secret):
    async with in_memory() as env:
        body = raw_body(env)
        headers = JSON | signed_headers(signing_secret, "msg_replayed", int(time.time()), body)
        first = await env.client.post("/analyze", content=body, headers=headers, auth=None)
        replay = await env.client.post("/analyze", content=body, headers=headers, auth=None)
        assert (first.status_code, replay.status_code) == (202, 202)
        assert replay.json() == first.json()
        await env.hooks.wait_final("job-1")
        job = await env.job("job-1")
    assert (job["requests"], job["accepted"], job["replayed"]) == (2, 1, 1)
    assert len(env.hooks.finals("job-1")) == 1
    assert list(env.audio.requests.values()) == [1]


async def test_a_message_refused_with_503_is_taken_again_under_the_same_id(
    in_memory, signing_secret
):
    # The bridge retries a message with the same webhook-id: only one that started an
    # analysis makes a later one a replay.
    async with in_memory(fail_first=1) as env:
        body = raw_body(env)
        statuses = []
        for _ in range(2):
            headers = JSON | signed_headers(signing_secret, "msg_retried", int(time.time()), body)
            answer = await env.client.post("/analyze", content=body, headers=headers, auth=None)
            statuses.append(answer.status_code)
        assert statuses == [503, 202]
        await env.hooks.wait_final("job-1")
        job = await env.job("job-1")
    assert (job["accepted"], job["replayed"]) == (1, 0)


async def test_a_body_over_the_limit_gets_413_from_its_content_length_unread(
    in_memory, signing_secret
):
    async with in_memory(max_request_bytes=1024) as env:
        content = b"{" + b" " * 2000 + b"}"
        body = Watched(content)
        signed = signed_headers(signing_secret, "msg_1", int(time.time()), content)
        headers = JSON | signed | {"content-length": str(len(content))}
        response = await env.client.post("/analyze", content=body, headers=headers, auth=None)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
        assert not body.read


async def test_a_streamed_body_over_the_limit_gets_413(in_memory):
    async with in_memory(max_request_bytes=1024) as env:
        body = raw_body(env) + b" " * 2000
        response = await env.client.post("/analyze", content=body, headers=JSON)
        assert response.status_code == 413
        await nothing_started(env)


async def test_audio_larger_than_the_download_limit_gets_413_before_any_download(in_memory):
    async with in_memory(max_download_bytes=len(WAV) - 1) as env:
        response = await env.client.post("/analyze", content=raw_body(env), headers=JSON)
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "too_large"
        assert f"{len(WAV)} bytes" in error["message"]
        await nothing_started(env)


async def test_a_deadline_that_has_passed_gets_422(in_memory):
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    async with in_memory() as env:
        response = await env.client.post(
            "/analyze", content=raw_body(env, deadline=past), headers=JSON
        )
        assert response.status_code == 422
        assert "deadline" in response.json()["error"]["message"]
        await nothing_started(env)


@pytest.mark.parametrize("deadline", ["tomorrow", "2030-01-01T00:00:00"])  # not RFC 3339 UTC
async def test_a_deadline_without_a_time_zone_or_not_a_time_gets_422(in_memory, deadline):
    async with in_memory() as env:
        response = await env.client.post(
            "/analyze", content=raw_body(env, deadline=deadline), headers=JSON
        )
        assert response.status_code == 422
        assert "body.deadline" in response.json()["error"]["message"]
