"""What bounds one analysis run (issue 19): the request's ``deadline`` (stop, free the
slot, send nothing more), the server's own time limit (a ``failed`` webhook), and the
longest audio it analyses (``audio_too_long``). The app in memory."""

from datetime import UTC, datetime, timedelta

import pytest

from reference_analyzer.testing import analysis_request, encode, sine

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

WAV = encode(sine(seconds=2, sample_rate=8000), 8000)
PAUSE = {"reference.delay_seconds": "600"}  # far beyond any bound under test


def request_for(env, job_id, *, deadline_in=None, **metadata):
    url = env.audio.add(WAV)
    request = analysis_request(url, WAV, env.hooks.url(job_id), job_id, **metadata)
    if deadline_in is not None:
        request.deadline = datetime.now(UTC) + timedelta(seconds=deadline_in)
    return request.model_dump(mode="json")


async def test_a_run_past_its_deadline_stops_frees_its_slot_and_sends_nothing_more(in_memory):
    async with in_memory(max_concurrent_jobs=1) as env:
        late = request_for(env, "late", deadline_in=0.5, **PAUSE)
        assert (await env.client.post("/analyze", json=late)).status_code == 202
        after = request_for(env, "after")  # waits for the one slot
        assert (await env.client.post("/analyze", json=after)).status_code == 202

        await env.hooks.wait_final("after")  # it got the slot: the late run let go of it
        job = await env.job("late")
    assert (job["running"], job["finished"], job["stopped"]) == (0, 1, 1)
    assert job["final"] is None
    assert env.hooks.finals("late") == []
    assert [d.json["progress"] for d in env.hooks.delivered("late")] == [0]  # the start only
    assert env.hooks.finals("after")[0].json["status"] == "completed"


async def test_a_run_waiting_for_a_slot_stops_at_its_deadline_without_a_word(in_memory):
    async with in_memory(max_concurrent_jobs=1) as env:
        busy = request_for(env, "busy", **PAUSE)
        assert (await env.client.post("/analyze", json=busy)).status_code == 202
        queued = request_for(env, "queued", deadline_in=0.3)
        assert (await env.client.post("/analyze", json=queued)).status_code == 202
        job = await env.job("queued")
        assert (job["running"], job["stopped"]) == (0, 1)
        assert (await env.job("busy", wait=0))["running"] == 1
    assert [d for d in env.hooks.attempts if d.job_id == "queued"] == []


async def test_a_run_within_its_deadline_completes_as_before(in_memory):
    async with in_memory() as env:
        body = request_for(env, "in-time", deadline_in=60)
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        await env.hooks.wait_final("in-time")
        job = await env.job("in-time")
    assert job["stopped"] == 0
    assert env.hooks.finals("in-time")[0].json["status"] == "completed"


async def test_the_servers_own_time_limit_fails_a_run_that_has_no_deadline(in_memory):
    async with in_memory(max_analysis_seconds=0.3) as env:
        body = request_for(env, "endless", **PAUSE)
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        (final,) = [d.json for d in await env.hooks.wait_final("endless")][-1:]
        job = await env.job("endless")
    assert final["status"] == "failed"
    assert final["error"]["code"] == "analysis_failed"
    assert "0.3 s" in final["error"]["message"]
    assert (job["running"], job["stopped"]) == (0, 0)


async def test_audio_longer_than_the_limit_fails_with_audio_too_long(in_memory):
    async with in_memory(max_duration_seconds=1.5) as env:
        body = request_for(env, "long")
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        deliveries = await env.hooks.wait_final("long")
    final = deliveries[-1].json
    assert final["status"] == "failed"
    assert final["error"]["code"] == "audio_too_long"
    assert "1.5 s" in final["error"]["message"]
    assert "announces 2.00 s" in final["error"]["message"]
