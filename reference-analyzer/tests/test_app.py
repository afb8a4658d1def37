"""The app in memory: its outgoing calls go to in-memory stand-ins for S3 and the bridge."""

import asyncio
import logging

import pytest

from reference_analyzer.testing import analysis_request, encode, sine

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

WAV = encode(sine(seconds=2, sample_rate=16_000), 16_000)


def body_for(env, data=WAV, job_id="job-1", **metadata):
    url = env.audio.add(data)
    request = analysis_request(url, data, env.hooks.url(job_id), job_id, **metadata)
    return request.model_dump()


async def test_analysis_reports_progress_then_the_features(in_memory, verify):
    async with in_memory() as env:
        response = await env.client.post("/analyze", json=body_for(env))
        assert response.status_code == 202
        assert response.json() == {"job_id": "job-1", "status": "accepted"}
        deliveries = await env.hooks.wait_final("job-1")

    bodies = [d.json for d in deliveries]
    assert [b["status"] for b in bodies[:-1]] == ["progress"] * (len(bodies) - 1)
    progress = [b["progress"] for b in bodies[:-1]]
    assert progress == sorted(set(progress))
    assert progress[0] == 0  # the start is always reported; values reached while one is
    # on its way collapse into the latest (test_a_slow_receiver_does_not_hold_up_the_analysis)
    final = bodies[-1]
    assert final["status"] == "completed"
    assert final["result"]["duration_seconds"] == 2.0
    assert final["result"]["sample_rate"] == 16_000
    assert final["result"]["format"] == "WAV"
    assert final["result"]["rms_dbfs"] == pytest.approx(-9.03, abs=0.05)
    assert "error" not in final
    assert all(verify(d.headers, d.body) for d in deliveries)
    assert len({d.headers["webhook-id"] for d in deliveries}) == len(deliveries)


class _SetWhenLogged(logging.Handler):
    def __init__(self, text: str, event: asyncio.Event) -> None:
        super().__init__()
        self.text, self.event = text, event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_slow_receiver_does_not_hold_up_the_analysis(in_memory, caplog):
    """Progress webhooks travel beside the analysis: the run downloads and decodes while
    the first one is still unanswered; the values reached meanwhile collapse into the
    latest, and the final message comes after both (order)."""
    caplog.set_level(logging.INFO, logger="reference_analyzer")
    analysed = asyncio.Event()
    handler = _SetWhenLogged("analysed", analysed)
    logging.getLogger("reference_analyzer").addHandler(handler)
    try:
        async with in_memory() as env:
            env.hooks.hold["job-1"] = analysed  # answered once the analysis is done
            assert (await env.client.post("/analyze", json=body_for(env))).status_code == 202
            deliveries = await env.hooks.wait_final("job-1")
    finally:
        logging.getLogger("reference_analyzer").removeHandler(handler)
    bodies = [d.json for d in deliveries]
    assert [(b["status"], b.get("progress")) for b in bodies] == [
        ("progress", 0),
        ("progress", 95),  # decoded: the last value before the result
        ("completed", 100),
    ]
    assert bodies[-1]["result"]["duration_seconds"] == 2.0


async def test_an_analysis_shorter_than_the_progress_interval_sends_only_its_result(in_memory):
    """Progress is time-based (docs/architecture.md §7): a quick analysis costs its
    receiver one webhook, not one per step."""
    async with in_memory(progress_interval_seconds=60) as env:
        assert (await env.client.post("/analyze", json=body_for(env))).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
    assert [d.json["status"] for d in deliveries] == ["completed"]


async def test_a_long_analysis_reports_progress_once_its_interval_has_passed(in_memory):
    """A run that lasts longer than the interval reports the latest value it reached
    (here the start, held while the run pauses), then its result."""
    async with in_memory(progress_interval_seconds=0.05) as env:
        body = body_for(env, **{"reference.delay_seconds": "0.5"})
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
    bodies = [d.json for d in deliveries]
    assert bodies[0] == {"job_id": "job-1", "status": "progress", "progress": 0}
    progress = [b["progress"] for b in bodies[:-1]]
    assert progress == sorted(set(progress))
    assert bodies[-1]["status"] == "completed"


async def test_checksum_mismatch_fails_the_job(in_memory):
    async with in_memory() as env:
        body = body_for(env) | {"sha256": "0" * 64}
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
    assert deliveries[-1].json["error"]["code"] == "checksum_mismatch"


async def test_size_mismatch_fails_the_job(in_memory):
    async with in_memory() as env:
        body = body_for(env) | {"size": len(WAV) - 1}
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
    assert deliveries[-1].json["error"]["code"] == "checksum_mismatch"


async def test_undecodable_audio_fails_with_invalid_audio(in_memory):
    async with in_memory() as env:
        body = body_for(env, data=b"this is not audio" * 100)
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
    final = deliveries[-1].json
    assert final["status"] == "failed"
    assert final["error"]["code"] == "invalid_audio"
    assert "result" not in final
    # In words, and without the spool file's name (issue 10 saw the server's temp path).
    message = final["error"]["message"]
    assert "not WAV" in message
    assert "reference-analyzer-" not in message and "/tmp" not in message


async def test_missing_audio_fails_the_job_without_leaking_the_url(in_memory):
    async with in_memory() as env:
        body = body_for(env) | {"audio_url": "http://audio.test/bucket/gone?X-Amz-Signature=s3cr3t"}
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
    error = deliveries[-1].json["error"]
    assert error["code"] == "analysis_failed"
    assert "HTTP 404" in error["message"]
    assert "s3cr3t" not in error["message"]


async def test_download_is_retried_after_a_server_error(in_memory):
    async with in_memory() as env:
        url = env.audio.add(WAV, fail_first=1)
        body = analysis_request(url, WAV, env.hooks.url("job-1"), "job-1").model_dump()
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
        name = url.split("/")[-1].split("?")[0]
        assert env.audio.requests[name] == 2
    assert deliveries[-1].json["status"] == "completed"


async def test_webhooks_are_retried_with_the_same_id_and_fresh_signatures(in_memory, verify):
    async with in_memory() as env:
        env.hooks.fail_first["job-1"] = 2  # the first progress webhook is refused twice
        assert (await env.client.post("/analyze", json=body_for(env))).status_code == 202
        await env.hooks.wait_final("job-1")
    first_three = [a for a in env.hooks.attempts if a.job_id == "job-1"][:3]
    assert [a.status_code for a in first_three] == [503, 503, 204]
    assert len({a.headers["webhook-id"] for a in first_three}) == 1
    assert all(verify(a.headers, a.body) for a in first_three)


async def test_unsigned_when_no_secret_is_configured(in_memory):
    async with in_memory(webhook_signing_secret=None) as env:
        assert (await env.client.post("/analyze", json=body_for(env))).status_code == 202
        deliveries = await env.hooks.wait_final("job-1")
    assert all("webhook-signature" not in d.headers for d in deliveries)
    assert all("webhook-id" in d.headers for d in deliveries)


async def test_sign_false_and_sign_invalid(in_memory, verify):
    async with in_memory() as env:
        off = body_for(env, job_id="off", **{"reference.sign": "false"})
        bad = body_for(env, job_id="bad", **{"reference.sign": "invalid"})
        assert (await env.client.post("/analyze", json=off)).status_code == 202
        assert (await env.client.post("/analyze", json=bad)).status_code == 202
        unsigned = await env.hooks.wait_final("off")
        forged = await env.hooks.wait_final("bad")
    assert all("webhook-signature" not in d.headers for d in unsigned)
    assert all(d.headers["webhook-signature"].startswith("v1,") for d in forged)
    assert not any(verify(d.headers, d.body) for d in forged)


async def test_silent_mode_analyses_but_never_calls_back(in_memory):
    async with in_memory() as env:
        body = body_for(env, **{"reference.mode": "silent"})
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        job = await env.job("job-1")
    assert job["running"] == 0
    assert job["finished"] == 1
    assert job["final"]["status"] == "completed"
    assert job["delivered"] == {}
    assert env.hooks.attempts == []


async def test_twice_mode_delivers_the_final_webhook_twice(in_memory, verify):
    async with in_memory() as env:
        body = body_for(env, **{"reference.mode": "twice"})
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        await env.hooks.wait_final("job-1", count=2)
        job = await env.job("job-1")
    first, second = env.hooks.finals("job-1")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert verify(second.headers, second.body)
    assert job["delivered"]["completed"] == 2


async def test_reject_mode_answers_400(in_memory):
    async with in_memory() as env:
        body = body_for(env, **{"reference.mode": "reject"})
        response = await env.client.post("/analyze", json=body)
        job = await env.job("job-1")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "analysis_rejected"
    assert job["requests"] == 1
    assert job["accepted"] == 0


async def test_fail_first_answers_503_with_retry_after_then_accepts(in_memory):
    async with in_memory() as env:
        body = body_for(env, **{"reference.fail_first": "2"})
        answers = [await env.client.post("/analyze", json=body) for _ in range(3)]
        await env.hooks.wait_final("job-1")
    assert [a.status_code for a in answers] == [503, 503, 202]
    assert [a.headers.get("retry-after") for a in answers[:2]] == ["1", "1"]
    assert answers[0].json()["error"]["code"] == "unavailable"


async def test_configured_mode_applies_to_every_request(in_memory):
    async with in_memory(mode="reject") as env:
        response = await env.client.post("/analyze", json=body_for(env))
    assert response.status_code == 400


async def test_configured_fail_first_counts_per_job(in_memory):
    async with in_memory(fail_first=1) as env:
        a = [await env.client.post("/analyze", json=body_for(env, job_id="a")) for _ in range(2)]
        b = [await env.client.post("/analyze", json=body_for(env, job_id="b")) for _ in range(2)]
        await env.hooks.wait_final("a")
        await env.hooks.wait_final("b")
    assert [r.status_code for r in a + b] == [503, 202, 503, 202]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"size": -1}, "size"),
        ({"sha256": None}, "sha256"),
        ({"audio_url": "file:///etc/passwd"}, "audio_url"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"metadata": {"reference.mode": "sleepy"}}, "reference.mode"),
    ],
)
async def test_invalid_requests_get_422_json(in_memory, change, where):
    async with in_memory() as env:
        response = await env.client.post("/analyze", json=body_for(env) | change)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert where in error["message"]


async def test_a_body_that_is_not_json_gets_422_json(in_memory):
    async with in_memory() as env:
        response = await env.client.post(
            "/analyze", content=b"{", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_too_many_pending_jobs_get_503(in_memory):
    async with in_memory(max_pending_jobs=1) as env:
        slow = body_for(env, job_id="slow", **{"reference.delay_seconds": "60"})
        assert (await env.client.post("/analyze", json=slow)).status_code == 202
        response = await env.client.post("/analyze", json=body_for(env, job_id="next"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


async def test_shutdown_cancels_a_slow_job(in_memory):
    async with in_memory() as env:
        body = body_for(env, **{"reference.mode": "slow", "reference.delay_seconds": "60"})
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        await env.hooks.wait_for(lambda: len(env.hooks.delivered("job-1")) == 1)
        job = await env.job("job-1", wait=0)
        assert job["running"] == 1
        assert env.audio.requests == {next(iter(env.audio.files)): 0}  # still pausing
    # Leaving the block ran the app's shutdown, which cancelled the paused job.
    assert env.hooks.finals("job-1") == []


async def test_probes_and_unknown_jobs(in_memory):
    async with in_memory() as env:
        assert (await env.client.get("/healthz")).status_code == 200
        ready = await env.client.get("/readyz")
        missing = await env.client.get("/jobs/nope")
    assert ready.status_code == 200
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_logs_name_the_job_and_never_the_presigned_url(in_memory, caplog):
    caplog.set_level(logging.DEBUG, logger="reference_analyzer")
    async with in_memory() as env:
        body = body_for(env, job_id="logged")
        assert (await env.client.post("/analyze", json=body)).status_code == 202
        await env.hooks.wait_final("logged")
    records = [r for r in caplog.records if r.name.startswith("reference_analyzer")]
    assert records
    assert all(getattr(r, "job_id", None) == "logged" for r in records)
    assert "job_id=logged" in caplog.text
    assert "audio.test" in caplog.text  # the host is logged ...
    assert "X-Amz-Signature" not in caplog.text  # ... the credential is not
    assert "capability-" not in caplog.text
