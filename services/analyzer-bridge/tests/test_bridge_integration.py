"""The bridge against the real Kafka, PostgreSQL and S3, with a fake analysis server."""

import asyncio
import base64
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from analyzer_bridge_testing import (
    AUDIO,
    SIGNING_SECRET,
    FakeAnalysisServer,
    Scripted,
    wait_until,
)

from contracts import JobStatus

pytestmark = pytest.mark.integration

FEATURES = {
    "duration_seconds": 1.5,
    "sample_rate": 44100,
    "channels": 2,
    "frames": 66150,
    "rms_dbfs": -18.0,
    "peak_dbfs": -3.0,
    "silence_ratio": 0.1,
}
SECRET = SIGNING_SECRET


def completed(job_id):
    return {"job_id": job_id, "status": "completed", "result": FEATURES}


def failed(job_id, code="invalid_audio"):
    return {"job_id": job_id, "status": "failed", "error": {"code": code, "message": "nope"}}


def statuses(bridge, job_id):
    return [
        (s.value["status"], s.value["progress"])
        for s in bridge.events.of(job_id, bridge.status_topic)
    ]


async def test_stored_audio_gets_one_request_with_a_working_presigned_url(start_bridge):
    async with start_bridge() as bridge:
        job_id = str(uuid.uuid4())
        request = await bridge.accepted(job_id)

        assert (request.size, request.content_type) == (len(AUDIO), "audio/wav")
        async with httpx.AsyncClient() as client:
            audio = await client.get(request.audio_url)
        assert audio.status_code == 200
        assert audio.content == AUDIO
        query = parse_qs(urlsplit(request.webhook_url).query)
        assert query["job_id"] == [job_id]
        assert query["token"]
        assert request.webhook_url.startswith(bridge.url + "/tokens/webhook/analysis-complete?")

        assert statuses(bridge, job_id) == [("analyzing", 51)]
        row = await bridge.row(job_id)
        assert row["state"] == "requested"
        assert row["bucket"] == bridge.stored().bucket


async def test_redelivered_audio_stored_makes_no_second_request(start_bridge):
    job_id = str(uuid.uuid4())
    async with start_bridge(group="first") as bridge:
        await bridge.accepted(job_id)
        await bridge.publish(bridge.stored(job_id))  # the same event again
        sentinel = str(uuid.uuid4())
        await bridge.accepted(sentinel)  # one partition: processed after the duplicate
        server = bridge.server
    # A new consumer group reads the topic from the start: every event is redelivered.
    async with start_bridge(server=server, group="second") as bridge:
        later = str(uuid.uuid4())
        await bridge.accepted(later)
    assert len(server.requests_for(job_id)) == 1
    assert len(server.requests_for(sentinel)) == 1


async def test_transient_errors_are_retried_until_accepted(start_bridge):
    server = FakeAnalysisServer()
    job_id = str(uuid.uuid4())
    server.script[job_id] = [
        Scripted(503, {"retry-after": "1"}),
        Scripted(429),
        Scripted(500),
    ]
    async with start_bridge(server=server) as bridge:
        await bridge.accepted(job_id)
        await wait_until(lambda: len(server.requests_for(job_id)) == 4)
        times = [t for t, r in server.requests if r.job_id == job_id]
        assert times[1] - times[0] >= 0.95, "Retry-After was not honoured"
        await wait_until(lambda: statuses(bridge, job_id) == [("analyzing", 51)])
        row = await bridge.row(job_id)
        assert (row["state"], row["attempts"]) == ("requested", 4)


async def test_spent_retry_budget_fails_the_job(start_bridge):
    server = FakeAnalysisServer()
    job_id = str(uuid.uuid4())
    server.script[job_id] = [Scripted(503)] * 5
    async with start_bridge(server=server, request_max_attempts=3) as bridge:
        await bridge.publish(bridge.stored(job_id))
        results = await wait_until(lambda: bridge.events.of(job_id, bridge.result_topic))
        assert results[0].value["error"]["code"] == "analysis_failed"
        assert len(server.requests_for(job_id)) == 3


async def test_rejected_request_fails_the_job_with_the_servers_message(start_bridge):
    server = FakeAnalysisServer()
    job_id = str(uuid.uuid4())
    server.script[job_id] = [Scripted(400, body={"detail": "unsupported codec"})]
    async with start_bridge(server=server) as bridge:
        await bridge.publish(bridge.stored(job_id))
        results = await wait_until(lambda: bridge.events.of(job_id, bridge.result_topic))
        await wait_until(lambda: bridge.events.of(job_id, bridge.status_topic))
        error = results[0].value["error"]
        assert error["code"] == "analysis_rejected"
        assert "unsupported codec" in error["message"]
        assert results[0].headers["ce_type"] == "audiopipe.analysis.failed"
        status = bridge.events.of(job_id, bridge.status_topic)
        assert [s.value["status"] for s in status] == ["failed"]
        assert status[0].value["error"]["code"] == "analysis_rejected"
        assert len(server.requests_for(job_id)) == 1
        assert (await bridge.row(job_id))["state"] == "failed"


async def test_webhooks_publish_progress_then_exactly_one_result(start_bridge):
    async with start_bridge() as bridge:
        job_id = str(uuid.uuid4())
        await bridge.accepted(job_id)
        server = bridge.server

        for p in (50, 20, 50):  # lower and repeated progress publish nothing
            answer = await server.send(
                job_id, {"job_id": job_id, "status": "progress", "progress": p}
            )
            assert answer.status_code == 200
        answer = await server.send(job_id, completed(job_id), webhook_id="msg_final")
        assert answer.status_code == 200, answer.text

        await wait_until(lambda: bridge.events.of(job_id, bridge.result_topic))
        await wait_until(lambda: len(statuses(bridge, job_id)) == 3)
        assert statuses(bridge, job_id) == [
            ("analyzing", 51),
            ("analyzing", 75),
            ("completed", 100),
        ]
        final = bridge.events.of(job_id, bridge.status_topic)[-1]
        assert final.value["result"]["sample_rate"] == 44100
        result = bridge.events.of(job_id, bridge.result_topic)
        assert result[0].headers["ce_id"] == f"{job_id}:analysis-result"
        assert result[0].value["result"]["channels"] == 2
        assert (await bridge.row(job_id))["state"] == "completed"

        # Replays: the same webhook-id, the same final without it, late progress.
        for hook, webhook_id in (
            (completed(job_id), "msg_final"),
            (completed(job_id), None),
            ({"job_id": job_id, "status": "progress", "progress": 90}, None),
        ):
            answer = await server.send(job_id, hook, webhook_id=webhook_id)
            assert answer.status_code == 200, answer.text
        # A different final is a conflict and changes nothing.
        answer = await server.send(job_id, failed(job_id))
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "conflict"

        await bridge.barrier()
        assert len(bridge.events.of(job_id, bridge.result_topic)) == 1
        assert len(statuses(bridge, job_id)) == 3
        assert (await bridge.row(job_id))["state"] == "completed"


async def test_failed_webhook_fails_the_job_with_the_servers_error(start_bridge):
    async with start_bridge() as bridge:
        job_id = str(uuid.uuid4())
        await bridge.accepted(job_id)
        answer = await bridge.server.send(job_id, failed(job_id, "invalid_audio"))
        assert answer.status_code == 200
        await wait_until(lambda: len(statuses(bridge, job_id)) == 2)
        final = bridge.events.of(job_id, bridge.status_topic)[-1].value
        assert (final["status"], final["error"]["code"]) == ("failed", "invalid_audio")
        # Sent beside the final status, on another topic: it may be seen after it.
        (result, *_) = await wait_until(
            lambda: bridge.events.of(job_id, bridge.result_topic), what="analysis.result"
        )
        assert result.value["error"]["code"] == "invalid_audio"


async def test_webhook_refuses_bad_credentials_unknown_jobs_and_bad_bodies(start_bridge):
    server = FakeAnalysisServer(signing_secret=SECRET)
    async with start_bridge(server=server, webhook_signing_secret=SECRET) as bridge:
        job_id = str(uuid.uuid4())
        request = await bridge.accepted(job_id)
        url = request.webhook_url
        base = url.split("?")[0]
        body = completed(job_id)

        async def status_of(**kwargs):
            return (await server.send(job_id, kwargs.pop("body", body), **kwargs)).status_code

        # Capability token: missing, wrong job, garbage.
        other = await bridge.accepted(str(uuid.uuid4()))
        assert await status_of(url=base + f"?job_id={job_id}") == 401
        assert await status_of(url=other.webhook_url.replace(other.job_id, job_id)) == 401
        assert await status_of(url=f"{base}?job_id={job_id}&token=abc") == 401
        # Signatures: missing, forged, stale.
        raw = b'{"job_id": "%s", "status": "failed"}' % job_id.encode()
        assert await status_of(headers={}) == 401
        now = int(time.time())
        forged = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode(),
        }
        assert await status_of(headers=forged) == 401
        from servicekit import webhooks

        stale = webhooks.signed_headers(SECRET, "msg_2", now - 400, raw)
        assert await status_of(body=raw, headers=stale) == 401
        # Malformed bodies.
        assert await status_of(body=raw) == 422
        assert await status_of(body=b"not json") == 422
        assert await status_of(body={**body, "job_id": "another"}) == 422
        # Unknown job with a valid capability.
        unknown = str(uuid.uuid4())
        token_url = url.replace(job_id, unknown)  # the token names job_id: refused
        assert await status_of(url=token_url, body=completed(unknown)) == 401
        caps_url = await _capability_url(bridge, unknown)
        assert await status_of(url=caps_url, body=completed(unknown)) == 404

        await bridge.barrier()
        assert not bridge.events.of(job_id, bridge.result_topic)
        assert (await bridge.row(job_id))["state"] == "requested"
        # And a correctly signed call gets through.
        assert await status_of() == 200
        await wait_until(lambda: bridge.events.of(job_id, bridge.result_topic))


async def _capability_url(bridge, job_id):
    from analyzer_bridge.capability import Capabilities

    caps = Capabilities(bridge.settings.webhook_capability_secret.get_secret_value(), 60)
    return (
        f"{bridge.url}/tokens/webhook/analysis-complete?job_id={job_id}&token={caps.issue(job_id)}"
    )


async def test_missed_deadline_fails_the_job_once_and_refuses_a_late_result(start_bridge):
    async with start_bridge(analysis_deadline_seconds=1.0) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.accepted(job_id)
        results = await wait_until(lambda: bridge.events.of(job_id, bridge.result_topic), 30)
        assert results[0].value["error"]["code"] == "analysis_timeout"
        await wait_until(lambda: statuses(bridge, job_id)[-1][0] == JobStatus.FAILED)
        late = await bridge.server.send(job_id, completed(job_id))
        assert late.status_code == 409
        assert (await bridge.row(job_id))["published_at"] is not None
        await bridge.barrier()
        assert len(bridge.events.of(job_id, bridge.result_topic)) == 1
        assert [s for s, _ in statuses(bridge, job_id)] == ["analyzing", "failed"]


async def test_poison_message_goes_to_the_dead_letter_topic(start_bridge):
    async with start_bridge() as bridge:
        topic = bridge.settings.audio_stored_topic
        await bridge.producer.publish(
            b"{not json", topic, headers={"ce_type": "audiopipe.audio.stored"}
        )
        dlq = bridge.events.__class__(bridge.settings.kafka_bootstrap_servers, [topic + ".dlq"])
        await dlq.start()
        try:
            found = await wait_until(lambda: dlq.seen, 30, "the dead letter")
            assert "dlq_reason" in found[0].headers
        finally:
            await dlq.stop()
        # The partition is not blocked.
        await bridge.accepted(str(uuid.uuid4()))


async def test_racing_finals_produce_one_final_state(start_bridge):
    async with start_bridge() as bridge:
        job_id = str(uuid.uuid4())
        await bridge.accepted(job_id)
        answers = await asyncio.gather(
            *(
                bridge.server.send(job_id, completed(job_id) if i % 2 else failed(job_id))
                for i in range(8)
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert set(codes) == {200, 409}
        row = await bridge.row(job_id)
        winners = sum(1 for i in range(8) if (i % 2 == 1) == (row["state"] == "completed"))
        assert codes.count(200) == winners  # every call agreeing with the winner is a replay
        await wait_until(lambda: len(statuses(bridge, job_id)) == 2)
        await bridge.barrier()
        assert len(bridge.events.of(job_id, bridge.result_topic)) == 1
        assert statuses(bridge, job_id)[-1][0] == row["state"]


async def test_restart_resumes_a_request_that_was_under_way(start_bridge):
    server = FakeAnalysisServer()
    job_id = str(uuid.uuid4())
    server.script[job_id] = [Scripted(503, {"retry-after": "60"})]
    async with start_bridge(server=server, group="bridge") as bridge:
        await bridge.publish(bridge.stored(job_id))
        await wait_until(lambda: server.requests_for(job_id), 30, "the first attempt")
        await wait_until(lambda: len(server.requests) == 1)
    assert len(server.requests_for(job_id)) == 1  # stopped while waiting to retry
    # Same consumer group: the event is not redelivered; the pending row is resumed.
    async with start_bridge(server=server, group="bridge") as bridge:
        await wait_until(lambda: len(server.requests_for(job_id)) == 2, 30, "the resumed request")
        await wait_until(lambda: statuses(bridge, job_id) == [("analyzing", 51)])
        assert (await bridge.row(job_id))["state"] == "requested"


async def test_a_job_waiting_to_retry_does_not_hold_up_the_next_one(start_bridge):
    server = FakeAnalysisServer()
    waiting = str(uuid.uuid4())
    server.script[waiting] = [Scripted(503, {"retry-after": "60"})]
    async with start_bridge(server=server) as bridge:
        await bridge.publish(bridge.stored(waiting))
        await wait_until(lambda: server.requests_for(waiting), 30, "the first attempt")
        # Same partition, published after: requested while the first job waits.
        await bridge.accepted(str(uuid.uuid4()))
        assert len(server.requests_for(waiting)) == 1
        assert (await bridge.row(waiting))["state"] == "pending"
