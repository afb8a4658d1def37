"""The bridge against the real Kafka, PostgreSQL and S3 and the reference analysis server
(issue 4's acceptance). The server's test modes are per-bridge request metadata
(``analysis_request_metadata``); webhooks must be signed (``SIGNING_SECRET``)."""

import itertools
import json
import time
import uuid
from urllib.parse import urlencode

import httpx
import pytest
from analyzer_bridge_testing import (
    SIGNING_SECRET,
    ReferenceServer,
    wait_for,
    wait_until,
)

from analyzer_bridge.capability import Capabilities
from servicekit import webhooks
from tests.support.inprocess import bound_socket, serving

pytestmark = pytest.mark.integration


def in_mode(**metadata):
    """Bridge settings: signed webhooks required, the reference server in a test mode."""
    return {
        "webhook_signing_secret": SIGNING_SECRET,
        "analysis_request_metadata": {f"reference.{k}": v for k, v in metadata.items()},
    }


def is_increasing(values):
    return all(a < b for a, b in itertools.pairwise(values))


async def test_progress_is_forwarded_as_increasing_analyzing_then_one_result(start_bridge):
    reference = ReferenceServer()
    async with start_bridge(server=reference, **in_mode()) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)

        assert final["status"] == "completed"
        assert final["result"]["duration_seconds"] == 0.5
        assert final["result"]["sample_rate"] == 8000
        await bridge.barrier()
        statuses = bridge.statuses(job_id)
        analyzing = [p for s, p in statuses[:-1] if s == "analyzing"]
        # The webhooks' progress (51 from the request too, unless progress came within
        # ANALYZING_NOTICE_SECONDS), then the final status.
        assert len(analyzing) == len(statuses) - 1 >= 1
        assert is_increasing(analyzing)
        assert statuses[-1] == ("completed", 100)
        results = bridge.events.of(job_id, bridge.result_topic)
        assert len(results) == 1
        assert results[0].value["result"]["frames"] == 4000
        seen = await reference.job(job_id)
        assert seen["requests"] == 1
        assert seen["undelivered"] == 0


async def test_server_failing_first_requests_is_retried_until_it_completes(start_bridge):
    reference = ReferenceServer()  # its 503s carry Retry-After: 1
    async with start_bridge(server=reference, **in_mode(fail_first="2")) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)

        assert final["status"] == "completed"
        assert (await reference.job(job_id))["requests"] == 3
        row = await bridge.row(job_id)
        assert (row["state"], row["attempts"]) == ("completed", 3)


async def test_unreachable_server_is_retried_until_it_answers(start_bridge):
    sock = bound_socket(listen=False)  # connections are refused until it serves
    host, port = sock.getsockname()
    settings = in_mode() | {
        "analysis_server_url": f"http://{host}:{port}",
        "request_max_attempts": 100,
    }
    async with start_bridge(**settings) as bridge:  # (its fake server stays unused)
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))

        async def refused_twice():
            row = await bridge.row(job_id)
            return row is not None and row["attempts"] >= 2

        await wait_for(refused_twice, 30, "two refused attempts")
        reference = ReferenceServer()
        async with serving(reference.app, sock) as url:
            reference.url = url
            final = await bridge.final(job_id)
            assert final["status"] == "completed"
            assert await reference.requests(job_id) == 1


async def test_rejecting_server_fails_the_job_with_analysis_rejected(start_bridge):
    reference = ReferenceServer()
    async with start_bridge(server=reference, **in_mode(mode="reject")) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)

        assert final["status"] == "failed"
        assert final["error"]["code"] == "analysis_rejected"
        assert "test mode: rejected" in final["error"]["message"]  # the server's message
        # Sent beside the final status, on another topic: it may be seen after it.
        (seen, *_) = await wait_until(
            lambda: bridge.events.of(job_id, bridge.result_topic), what="analysis.result"
        )
        result = seen.value
        assert result["error"]["code"] == "analysis_rejected"
        assert (await reference.job(job_id))["requests"] == 1


async def test_silent_server_fails_the_job_with_analysis_timeout(start_bridge):
    reference = ReferenceServer()
    settings = in_mode(mode="silent") | {"analysis_deadline_seconds": 1.0}
    async with start_bridge(server=reference, **settings) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)

        assert (final["status"], final["error"]["code"]) == ("failed", "analysis_timeout")
        seen = await reference.job(job_id)
        # Analysed (or stopped at the deadline, on a busy machine), never called back.
        assert seen["finished"] == 1
        assert (seen["delivered"], seen["undelivered"]) == ({}, 0)
        await bridge.barrier()
        assert len(bridge.finals(job_id)) == 1


async def test_restarted_bridge_enforces_the_deadline_of_a_job_requested_before(start_bridge):
    reference = ReferenceServer()
    job_id = str(uuid.uuid4())
    async with start_bridge(server=reference, group="bridge", **in_mode(mode="silent")) as bridge:
        await bridge.publish(bridge.stored(job_id))
        await wait_until(lambda: bridge.statuses(job_id), 30, "the request to be accepted")
    # The deadline passes while no bridge runs.
    table = f"{bridge.settings.database_schema}.analyses"
    await bridge.pool.execute(f"UPDATE {table} SET deadline = now() WHERE job_id = $1", job_id)
    async with start_bridge(server=reference, group="bridge", **in_mode(mode="silent")) as bridge:
        final = await bridge.final(job_id)
        assert (final["status"], final["error"]["code"]) == ("failed", "analysis_timeout")


async def test_redelivered_audio_stored_makes_one_request_to_the_server(start_bridge):
    reference = ReferenceServer()
    job_id = str(uuid.uuid4())
    async with start_bridge(server=reference, group="first", **in_mode()) as bridge:
        await bridge.publish(bridge.stored(job_id))
        await bridge.publish(bridge.stored(job_id))  # the same event again
        await bridge.final(job_id)
        later = str(uuid.uuid4())
        await bridge.publish(bridge.stored(later))
        await bridge.final(later)  # one partition: read after both copies of job_id's
        assert await reference.requests(job_id) == 1
    # A new consumer group reads the topic from the start: the event comes a third time.
    # (The server is started anew too, so it counts from zero.)
    async with start_bridge(server=reference, group="second", **in_mode()) as bridge:
        last = str(uuid.uuid4())
        await bridge.publish(bridge.stored(last))
        await bridge.final(last)  # read after the redelivered copies
        assert await reference.requests(job_id) == 0
        assert await reference.requests(last) == 1
        assert (await bridge.row(job_id))["attempts"] == 1
        assert len(bridge.finals(job_id)) == 1  # this bridge's reader sees from the start


async def test_final_webhook_delivered_twice_is_a_replay_without_new_events(start_bridge):
    reference = ReferenceServer()
    async with start_bridge(server=reference, **in_mode(mode="twice")) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        await bridge.final(job_id)

        seen = await reference.job(job_id)
        assert seen["delivered"]["completed"] == 2  # both answered 2xx
        assert seen["undelivered"] == 0
        await bridge.barrier()
        assert len(bridge.finals(job_id)) == 1
        assert len(bridge.events.of(job_id, bridge.result_topic)) == 1


@pytest.mark.parametrize("sign", ["false", "invalid"])
async def test_unsigned_or_forged_webhooks_are_refused_and_change_nothing(start_bridge, sign):
    reference = ReferenceServer()
    async with start_bridge(server=reference, **in_mode(sign=sign)) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        await wait_until(lambda: bridge.statuses(job_id), 30, "the request to be accepted")
        seen = await reference.job(job_id)

        assert seen["finished"] == 1
        assert seen["final"]["status"] == "completed"
        assert seen["delivered"] == {}  # every webhook got a 4xx, which ends its delivery
        assert seen["undelivered"] >= 2  # progress ones and the final one
        await bridge.barrier()
        assert bridge.statuses(job_id) == [("analyzing", 51)]
        assert not bridge.events.of(job_id, bridge.result_topic)
        assert (await bridge.row(job_id))["state"] == "requested"


async def test_the_server_stops_an_analysis_at_the_deadline_and_sends_no_result(start_bridge):
    reference = ReferenceServer(max_concurrent_jobs=1)
    # The server would pause far past the deadline; the bridge tells it when it gives up.
    settings = in_mode(mode="slow", delay_seconds="600") | {"analysis_deadline_seconds": 1.0}
    async with start_bridge(server=reference, **settings) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)
        assert final["error"]["code"] == "analysis_timeout"

        seen = await reference.job(job_id)  # once its run has ended: long before 600 s
        assert (seen["running"], seen["stopped"]) == (0, 1)
        assert seen["final"] is None
        assert set(seen["delivered"]) <= {"progress"}  # no result, late or otherwise
        await bridge.barrier()
        assert len(bridge.finals(job_id)) == 1
        row = await bridge.row(job_id)
        assert (row["state"], row["error_code"]) == ("failed", "analysis_timeout")


async def test_audio_longer_than_the_server_analyses_fails_the_job_with_audio_too_long(
    start_bridge,
):
    reference = ReferenceServer(max_duration_seconds=0.25)  # the test audio lasts 0.5 s
    async with start_bridge(server=reference, **in_mode()) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)

        assert (final["status"], final["error"]["code"]) == ("failed", "audio_too_long")
        assert "0.25 s" in final["error"]["message"]
        # Sent beside the final status, on another topic: it may be seen after it.
        (seen, *_) = await wait_until(
            lambda: bridge.events.of(job_id, bridge.result_topic), what="analysis.result"
        )
        result = seen.value
        assert result["error"]["code"] == "audio_too_long"
        row = await bridge.row(job_id)
        assert (row["state"], row["error_code"]) == ("failed", "audio_too_long")


@pytest.mark.parametrize(
    "secret", [None, "whsec_" + "bm90LXRoZS1zZXJ2ZXJzLXNlY3JldC1hdC1hbGwtMzI="]
)
async def test_requests_unsigned_or_signed_with_another_secret_are_refused(start_bridge, secret):
    reference = ReferenceServer()  # it has SIGNING_SECRET
    settings = in_mode() | {"webhook_signing_secret": secret}
    async with start_bridge(server=reference, **settings) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)

        assert (final["status"], final["error"]["code"]) == ("failed", "analysis_rejected")
        assert "HTTP 401: missing or invalid request signature" in final["error"]["message"]
        assert await reference.requests(job_id) == 0  # refused before anything was noted


async def test_stale_unknown_malformed_and_conflicting_webhooks_are_refused(start_bridge):
    reference = ReferenceServer()
    settings = in_mode(mode="silent") | {"analysis_deadline_seconds": 1.0}
    async with start_bridge(server=reference, **settings) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        await bridge.final(job_id)  # analysis_timeout: the job is final
        caps = Capabilities(bridge.settings.webhook_capability_secret.get_secret_value(), 60)

        async def post(body, job=job_id, timestamp=None, secret=SIGNING_SECRET):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            when = int(time.time()) if timestamp is None else timestamp
            headers = webhooks.signed_headers(secret, f"msg_{uuid.uuid4().hex}", when, raw)
            query = urlencode({"job_id": job, "token": caps.issue(job)})
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    f"{bridge.url}/tokens/webhook/analysis-complete?{query}",
                    content=raw,
                    headers={**headers, "content-type": "application/json"},
                )
            assert answer.json()["error"]["code"], answer.text
            return answer.status_code

        result = {"job_id": job_id, "status": "completed", "result": {"duration_seconds": 0.5}}
        assert await post(result, timestamp=int(time.time()) - 400) == 401  # stale
        assert await post(result, timestamp=int(time.time()) + 400) == 401  # from the future
        unknown = str(uuid.uuid4())
        assert await post({**result, "job_id": unknown}, job=unknown) == 404
        assert await post(b"{not json") == 422
        assert await post({"job_id": job_id, "status": "done"}) == 422
        assert await post({**result, "job_id": unknown}) == 422  # body and URL disagree
        assert await post(result) == 409  # a result for a job that is already final

        await bridge.barrier()
        assert len(bridge.finals(job_id)) == 1
        assert len(bridge.events.of(job_id, bridge.result_topic)) == 1
        row = await bridge.row(job_id)
        assert (row["state"], row["error_code"]) == ("failed", "analysis_timeout")
