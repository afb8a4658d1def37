"""The notifier against the real Kafka and PostgreSQL, over real HTTP."""

import asyncio
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from notifier_testing import (
    LIFECYCLE,
    PROGRESS,
    Stream,
    follow,
    history,
    projected,
)

from contracts import CeType, JobStatus, headers, topics
from servicekit.kafka import ce_headers
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


# --- projection ------------------------------------------------------------------


async def test_published_statuses_become_the_current_state(client, publish, job, auth):
    for status, progress in LIFECYCLE[:3]:
        await publish(status, progress, detail=f"{status} now")
    state = await projected(client, job, auth, JobStatus.UPLOADED)
    assert state["progress"] == 50
    assert state["detail"] == "uploaded now"
    assert state["event_id"] == 3


async def test_redelivered_and_backward_events_change_nothing(
    client, publish, job, auth, db, notifier_settings
):
    await publish(JobStatus.ACCEPTED, 0)
    uploading = await publish(JobStatus.UPLOADING, 30)
    await publish(JobStatus.UPLOADING, 30, ce_id=uploading)  # redelivery
    backwards = await publish(JobStatus.ACCEPTED, 0)
    await publish(JobStatus.UPLOADED, 50)
    await projected(client, job, auth, JobStatus.UPLOADED)

    rows = await history(db, notifier_settings.database_schema, job)
    assert [r["ce_id"] for r in rows].count(uploading) == 1
    assert [(r["status"], r["outcome"]) for r in rows] == [
        ("accepted", "applied"),
        ("uploading", "applied"),
        ("accepted", "ignored"),
        ("uploaded", "applied"),
    ]
    assert next(r for r in rows if r["ce_id"] == backwards)["reason"]


async def test_final_state_is_never_changed(client, publish, job, auth, db, notifier_settings):
    await publish(JobStatus.ANALYZING, 60)
    await publish(JobStatus.COMPLETED, 100)
    late = await publish(JobStatus.FAILED, 100)

    async def late_recorded():
        rows = await history(db, notifier_settings.database_schema, job)
        return [r for r in rows if r["ce_id"] == late]

    [row] = await eventually(late_recorded)
    assert row["outcome"] == "ignored"
    state = (await client.get(f"/jobs/{job}", headers=auth)).json()
    assert state["status"] == "completed"
    assert state["result"]["sample_rate"] == 8000


async def test_progress_never_goes_down(client, publish, job, auth):
    await publish(JobStatus.UPLOADING, 40)
    await publish(JobStatus.UPLOADED, 10)
    state = await projected(client, job, auth, JobStatus.UPLOADED)
    assert state["progress"] == 40


async def test_poison_message_is_dead_lettered_and_consumption_goes_on(
    client, producer, publish, job, auth, notifier_settings
):
    dlq = AIOKafkaConsumer(
        topics.dead_letter(topics.JOB_STATUS),
        bootstrap_servers=notifier_settings.kafka_bootstrap_servers,
        group_id=f"notifier-test-dlq-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await dlq.start()
    try:
        await producer.publish(
            b"{not json",
            topics.JOB_STATUS,
            key=job.encode(),
            headers=ce_headers(CeType.JOB_STATUS_CHANGED, f"{job}:poison", "tests", job),
        )
        await publish(JobStatus.ACCEPTED, 0)
        await projected(client, job, auth, JobStatus.ACCEPTED)

        async def parked():
            batches = await dlq.getmany(timeout_ms=500)
            return [m for ms in batches.values() for m in ms if m.key == job.encode()]

        # Every consumer group that reads job.status parks its own copy.
        message = (await eventually(parked))[0]
        reasons = dict(message.headers)
        assert reasons[headers.DLQ_REASON].startswith(b"invalid")
        assert message.value == b"{not json"
    finally:
        await dlq.stop()


# --- SSE -------------------------------------------------------------------------


async def test_stream_waits_for_a_new_job_and_follows_it_to_completed(client, publish, job, auth):
    async with client.stream("GET", PROGRESS.format(job), headers=auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        reading = asyncio.create_task(follow(response.aiter_lines(), Stream()))
        for status, progress in LIFECYCLE:
            await publish(status, progress)
        stream = await asyncio.wait_for(reading, 20)

    assert stream.ended
    assert stream.retry == [2000]
    assert [data["status"] for _, data in stream.events] == [s for s, _ in LIFECYCLE]
    assert [data["progress"] for _, data in stream.events] == [p for _, p in LIFECYCLE]
    assert [i for i, _ in stream.events] == [1, 2, 3, 4, 5]
    final = stream.events[-1][1]
    assert final["job_id"] == job
    assert final["result"]["duration_seconds"] == 1.0


async def test_stream_starts_with_the_current_state(client, publish, job, auth):
    for status, progress in LIFECYCLE[:3]:
        await publish(status, progress)
    await projected(client, job, auth, JobStatus.UPLOADED)
    async with client.stream("GET", PROGRESS.format(job), headers=auth) as response:
        stream = await asyncio.wait_for(follow(response.aiter_lines(), Stream(), stop=1), 10)
    assert stream.events == [(3, stream.events[0][1])]
    assert stream.events[0][1]["status"] == "uploaded"


@pytest.mark.parametrize("via", ["header", "query"])
async def test_reconnect_with_last_event_id_gets_exactly_the_rest(client, publish, job, auth, via):
    for status, progress in LIFECYCLE[:3]:
        await publish(status, progress)
    await projected(client, job, auth, JobStatus.UPLOADED)
    url, request_headers = PROGRESS.format(job), dict(auth)
    if via == "header":
        request_headers["Last-Event-ID"] = "1"
    else:
        url += "?last_event_id=1"
    async with client.stream("GET", url, headers=request_headers) as response:
        lines = response.aiter_lines()
        stream = await asyncio.wait_for(follow(lines, Stream(), stop=2), 10)
        assert [i for i, _ in stream.events] == [2, 3]
        reading = asyncio.create_task(follow(lines, stream))
        for status, progress in LIFECYCLE[3:]:
            await publish(status, progress)
        stream = await asyncio.wait_for(reading, 20)
    assert stream.ended
    assert [i for i, _ in stream.events] == [2, 3, 4, 5]
    assert stream.events[-1][1]["status"] == "completed"


async def test_reconnect_after_the_final_event_is_204(client, publish, job, auth):
    for status, progress in LIFECYCLE:
        await publish(status, progress)
    await projected(client, job, auth, JobStatus.COMPLETED)
    response = await client.get(PROGRESS.format(job), headers={**auth, "Last-Event-ID": "5"})
    assert response.status_code == 204


async def test_fresh_stream_of_a_finished_job_sends_the_final_state_and_ends(
    client, publish, job, auth
):
    await publish(JobStatus.UPLOADING, 10)
    await publish(JobStatus.FAILED, 100)
    await projected(client, job, auth, JobStatus.FAILED)
    async with client.stream("GET", PROGRESS.format(job), headers=auth) as response:
        stream = await asyncio.wait_for(follow(response.aiter_lines(), Stream()), 10)
    assert stream.ended
    [(event_id, data)] = stream.events
    assert (event_id, data["status"]) == (2, "failed")
    assert data["error"] == {"code": "analysis_timeout", "message": "too slow"}


async def test_idle_stream_sends_heartbeat_comments(client, job, auth):
    async with client.stream("GET", PROGRESS.format(job), headers=auth) as response:
        lines = response.aiter_lines()

        async def keep_alive():
            async for line in lines:
                if line == ": keep-alive":
                    return True
            return False

        assert await asyncio.wait_for(keep_alive(), 10)


# --- access ----------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body["error"]) == {"code", "message"}


@pytest.mark.parametrize("path", [PROGRESS, "/jobs/{}"])
async def test_access_needs_the_job_token(client, tokens, job, path):
    url = path.format(job)
    assert_error(await client.get(url), 401)
    assert_error(await client.get(url, params={"access_token": "forged"}), 401)
    other = tokens.issue(str(uuid.uuid4()))
    assert_error(await client.get(url, headers={"Authorization": f"Bearer {other}"}), 403)
    assert_error(await client.get(path.format("not-a-uuid"), params={"access_token": other}), 422)


async def test_token_works_as_query_parameter_and_bearer(client, tokens, publish, job, auth):
    await publish(JobStatus.ACCEPTED, 0)
    await projected(client, job, auth, JobStatus.ACCEPTED)
    token = tokens.issue(job)
    by_query = await client.get(f"/jobs/{job}", params={"access_token": token})
    by_bearer = await client.get(f"/jobs/{job}", headers={"Authorization": f"Bearer {token}"})
    assert by_query.status_code == by_bearer.status_code == 200


async def test_snapshot_of_a_job_without_events_is_404(client, job, auth):
    assert_error(await client.get(f"/jobs/{job}", headers=auth), 404)


async def test_bad_last_event_id_is_422(client, job, auth):
    response = await client.get(PROGRESS.format(job), headers={**auth, "Last-Event-ID": "x"})
    assert_error(response, 422)


async def test_ready_when_database_and_kafka_answer(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json() == {"status": "ready"}
