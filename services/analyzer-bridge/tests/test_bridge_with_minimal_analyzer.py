"""The bridge against the real Kafka, PostgreSQL and S3 and a second analysis server,
written from the contract alone, with its own result shape (issue 10, item 6).

The server (``tests/support/minimal_analyzer.py``) signs its webhooks and verifies
the bridge's signed requests itself, answers a job's first request with 503, calls
back before its 202, repeats its final callback and sends a stale progress after it.
"""

import asyncio
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from analyzer_bridge_testing import AUDIO, SIGNING_SECRET

from analyzer_bridge.capability import Capabilities
from analyzer_bridge.webhook_body import MAX_BODY_BYTES
from servicekit.kafka import TOPIC_MAX_MESSAGE_BYTES
from tests.support.minimal_analyzer import MinimalAnalyzer, features

pytestmark = pytest.mark.integration

SIGNED = {"webhook_signing_secret": SIGNING_SECRET}


def answers(job, kind):
    return [(d.status_code, d.body) for d in job.deliveries if d.kind == kind]


async def run(bridge, server, job_id):
    """One job through ``bridge``, once the server's every callback was answered: its
    final ``job.status`` events, the server's view of the job, the bridge's row and its
    ``analysis.result`` events."""
    await bridge.publish(bridge.stored(job_id))
    seen = await server.finished(job_id)
    await bridge.barrier()
    return (
        bridge.finals(job_id),
        seen,
        await bridge.row(job_id),
        bridge.events.of(job_id, bridge.result_topic),
    )


@pytest.mark.parametrize("final_before_accept", [False, True])
async def test_its_own_result_shape_reaches_job_status_unchanged(start_bridge, final_before_accept):
    server = MinimalAnalyzer(SIGNING_SECRET, final_before_accept=final_before_accept)
    async with start_bridge(server=server, **SIGNED) as bridge:
        finals, seen, row, results = await run(bridge, server, str(uuid.uuid4()))

    expected = features(AUDIO)
    assert set(expected) == {"duration_s", "sample_rate", "channels", "rms_dbfs", "labels"}
    assert len(finals) == 1
    final = finals[0].value
    assert final["status"] == "completed"
    assert final["result"] == expected  # nothing added (no nulls), dropped or retyped
    assert [r.value["result"] for r in results] == [expected]
    assert json.loads(row["result"]) == expected
    assert seen.requests == 2  # the 503, then the 202
    assert server.refused == 0  # both signed as Standard Webhooks says
    assert [code for code, _ in answers(seen, "completed")] == [200, 200]  # won, replay
    assert all(code == 200 for code, _ in answers(seen, "progress"))


@pytest.mark.parametrize(
    ("result", "named"),
    [
        ({"duration_s": 0.5, "sample_rate": "8000"}, "result.sample_rate"),
        ({"duration_seconds": -1.0}, "result.duration_seconds"),
        ({"envelope": [0.1, "loud"]}, "result.envelope.1"),
        ([{"duration_s": 0.5}], "result: must be a JSON object"),
        (None, "result: must be a JSON object"),
    ],
)
async def test_invalid_result_fails_the_job_at_once_and_its_repeat_changes_nothing(
    start_bridge, result, named
):
    server = MinimalAnalyzer(SIGNING_SECRET, result=result)
    # The deadline is far away: the job must fail from the webhook, not from it.
    async with start_bridge(server=server, analysis_deadline_seconds=600, **SIGNED) as bridge:
        finals, seen, row, results = await run(bridge, server, str(uuid.uuid4()))

    completed = answers(seen, "completed")
    assert [code for code, _ in completed] == [422, 422]  # the first and its repeat
    for _, body in completed:
        assert body["error"]["code"] == "analysis_invalid_result"
        assert named in body["error"]["message"]
    assert len(finals) == 1
    final = finals[0].value
    assert (final["status"], final["error"]["code"]) == ("failed", "analysis_invalid_result")
    assert named in final["error"]["message"]
    assert "result" not in final or final["result"] is None
    assert [r.value["error"]["code"] for r in results] == ["analysis_invalid_result"]
    assert (row["state"], row["error_code"]) == ("failed", "analysis_invalid_result")


async def test_oversized_webhook_gets_413_and_changes_nothing(start_bridge):
    huge = {"labels": ["x" * 1000] * (MAX_BODY_BYTES // 1000 + 1)}
    server = MinimalAnalyzer(SIGNING_SECRET, result=huge)
    job_id = str(uuid.uuid4())
    async with start_bridge(server=server, **SIGNED) as bridge:
        finals, seen, row, results = await run(bridge, server, job_id)
        assert finals == [] and results == []
        completed = answers(seen, "completed")
        assert [code for code, _ in completed] == [413, 413]
        assert all(body["error"]["code"] == "too_large" for _, body in completed)

        # Without Content-Length the limit holds while reading.
        caps = Capabilities(bridge.settings.webhook_capability_secret.get_secret_value(), 60)
        query = urlencode({"job_id": job_id, "token": caps.issue(job_id)})

        async def chunks():
            for _ in range(MAX_BODY_BYTES // 65536 + 2):
                yield b" " * 65536

        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{bridge.url}/tokens/webhook/analysis-complete?{query}",
                content=chunks(),
                # Signature headers that pass the check of the head alone: an unsigned
                # call is refused with 401 before its body is read.
                headers={
                    "content-type": "application/json",
                    "webhook-id": "msg_oversized",
                    "webhook-timestamp": str(int(time.time())),
                    "webhook-signature": "v1,bm90LWNoZWNrZWQteWV0",
                },
            )
        assert "content-length" not in answer.request.headers
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "too_large"
        await bridge.barrier()
        assert bridge.finals(job_id) == []
        assert (await bridge.row(job_id))["state"] == row["state"] == "requested"


async def test_result_of_almost_the_body_limit_fits_every_kafka_limit(start_bridge, infra):
    job_id = str(uuid.uuid4())
    envelope = {"job_id": job_id, "status": "completed", "result": {"labels": [""]}}
    big = {"labels": ["x" * (MAX_BODY_BYTES - len(json.dumps(envelope)))]}
    server = MinimalAnalyzer(SIGNING_SECRET, result=big)
    async with start_bridge(server=server, **SIGNED) as bridge:
        finals, seen, _, results = await run(bridge, server, job_id)

    assert [code for code, _ in answers(seen, "completed")] == [200, 200]
    assert finals[0].value["result"] == big
    assert results[0].value["result"] == big
    # The topics the bridge created take such a message whatever the broker's default.
    admin = AIOKafkaAdminClient(bootstrap_servers=infra["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        names = [bridge.status_topic, bridge.result_topic]
        response: Any  # DescribeConfigs response: its fields are not typed
        [response] = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, n, {"max.message.bytes": None})
                for n in names
            ]
        )
    finally:
        await admin.close()
    limits = {
        resource[3]: int(dict((e[0], e[1]) for e in resource[4])["max.message.bytes"])
        for resource in response.resources
    }
    assert limits == dict.fromkeys(names, TOPIC_MAX_MESSAGE_BYTES)


async def test_a_bridge_signing_with_another_secret_is_refused_and_the_job_fails_at_once(
    start_bridge,
):
    server = MinimalAnalyzer(SIGNING_SECRET)
    other = "whsec_" + "YW5vdGhlci1zZWNyZXQtdGhhbi10aGUtc2VydmVycw=="
    async with start_bridge(server=server, webhook_signing_secret=other) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        final = await bridge.final(job_id)
    assert (final["status"], final["error"]["code"]) == ("failed", "analysis_rejected")
    assert "HTTP 401" in final["error"]["message"]
    assert server.refused == 1 and server.jobs == {}


async def test_an_unsigned_webhook_is_401_before_its_body_is_read(start_bridge):
    server = MinimalAnalyzer(SIGNING_SECRET)
    job_id = str(uuid.uuid4())
    async with start_bridge(server=server, **SIGNED) as bridge:
        caps = Capabilities(bridge.settings.webhook_capability_secret.get_secret_value(), 60)
        query = urlencode({"job_id": job_id, "token": caps.issue(job_id)})
        host, port = bridge.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        # The head and 16 KiB of a declared 8 MiB: the answer cannot wait for the rest.
        writer.write(
            f"POST /tokens/webhook/analysis-complete?{query} HTTP/1.1\r\nHost: bridge\r\n"
            f"Content-Type: application/json\r\nContent-Length: {8 << 20}\r\n\r\n".encode()
            + b" " * 16384
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        assert status_line.split()[1] == b"401"
