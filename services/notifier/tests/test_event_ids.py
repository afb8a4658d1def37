"""One event sequence (docs/architecture.md §9, issue 11): an event id names the same event live, in
a replay and in ``GET /jobs``; a move that is not applied gets no id and is not sent;
``Last-Event-ID`` is parsed strictly and never makes a stream hang. Real Kafka and
PostgreSQL, SSE over HTTP."""

import asyncio

import pytest
from notifier_testing import LIFECYCLE, PROGRESS, Stream, follow, history, projected

from contracts import JobStatus
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_moves_not_applied_get_no_id_and_live_replay_and_snapshot_agree(
    client, publish, job, auth, db, notifier_settings
):
    async with client.stream("GET", PROGRESS.format(job), headers=auth) as response:
        live = asyncio.create_task(follow(response.aiter_lines(), Stream()))
        # The uploader's first `uploading` lands before the gateway's `accepted`.
        first = await publish(JobStatus.UPLOADING, 20)
        await publish(JobStatus.ACCEPTED, 0)  # backwards
        await publish(JobStatus.UPLOADING, 20, ce_id=first)  # duplicate
        await publish(JobStatus.UPLOADING, 20)  # changes nothing
        for status, progress in LIFECYCLE[2:]:
            await publish(status, progress)
        stream = await asyncio.wait_for(live, 20)
    late = await publish(JobStatus.FAILED, 100)  # after final

    async def recorded(ce_id: str):
        rows = await history(db, notifier_settings.database_schema, job)
        return rows if any(r["ce_id"] == ce_id for r in rows) else None

    rows = await eventually(lambda: recorded(late))
    assert stream.ended
    assert [(i, data["status"]) for i, data in stream.events] == [
        (1, "uploading"),
        (2, "uploaded"),
        (3, "analyzing"),
        (4, "completed"),
    ]
    assert [(r["status"], r["outcome"], r["event_id"]) for r in rows] == [
        ("uploading", "applied", 1),
        ("accepted", "ignored", None),
        ("uploading", "ignored", None),
        ("uploaded", "applied", 2),
        ("analyzing", "applied", 3),
        ("completed", "applied", 4),
        ("failed", "ignored", None),
    ]
    # A replay from any id delivers exactly what the live stream sent after it.
    for seen in range(4):
        resume = {**auth, "Last-Event-ID": str(seen)}
        async with client.stream("GET", PROGRESS.format(job), headers=resume) as response:
            replay = await asyncio.wait_for(follow(response.aiter_lines(), Stream()), 10)
        assert replay.ended
        assert replay.events == stream.events[seen:]
    snapshot = (await client.get(f"/jobs/{job}", headers=auth)).json()
    assert (snapshot["event_id"], snapshot) == stream.events[-1]
    seen_final = {**auth, "Last-Event-ID": "4"}
    assert (await client.get(PROGRESS.format(job), headers=seen_final)).status_code == 204


BAD_IDS = ["+3", "-0", "-1", "1_000", "1.0", "0x10", "x", str(2**63), "9" * 30]


@pytest.mark.parametrize("raw", BAD_IDS)
@pytest.mark.parametrize("via", ["header", "query"])
async def test_a_last_event_id_that_is_not_ascii_digits_within_int64_is_422(
    client, publish, job, auth, raw, via
):
    await publish(JobStatus.UPLOADING, 10)  # in flight: the stream would start
    await projected(client, job, auth, JobStatus.UPLOADING)
    if via == "header":
        response = await client.get(PROGRESS.format(job), headers={**auth, "Last-Event-ID": raw})
    else:
        response = await client.get(
            PROGRESS.format(job), headers=auth, params={"last_event_id": raw}
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_last_event_id"


@pytest.mark.parametrize("digit", ["\u0663", "\uff13", "\u00b3"])  # Arabic-Indic, fullwidth, ³
async def test_a_last_event_id_with_non_ascii_digits_is_422(client, job, auth, digit):
    raw = digit.encode()  # as a client would send it: bytes on the wire
    response = await client.get(PROGRESS.format(job), headers={**auth, "Last-Event-ID": raw})
    assert response.status_code == 422
    by_query = await client.get(PROGRESS.format(job), headers=auth, params={"last_event_id": digit})
    assert by_query.status_code == 422


@pytest.mark.parametrize("beyond", ["1000", str(2**63 - 1)])
async def test_an_id_beyond_the_latest_starts_from_the_current_state_and_reaches_final(
    client, publish, job, auth, beyond
):
    for status, progress in LIFECYCLE[:2]:
        await publish(status, progress)
    await projected(client, job, auth, JobStatus.UPLOADING)
    resume = {**auth, "Last-Event-ID": beyond}
    async with client.stream("GET", PROGRESS.format(job), headers=resume) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        stream = await asyncio.wait_for(follow(lines, Stream(), stop=1), 10)
        assert [(i, data["status"]) for i, data in stream.events] == [(2, "uploading")]
        reading = asyncio.create_task(follow(lines, stream))
        for status, progress in LIFECYCLE[2:]:
            await publish(status, progress)
        stream = await asyncio.wait_for(reading, 20)
    assert stream.ended
    assert [i for i, _ in stream.events] == [2, 3, 4, 5]


async def test_an_id_beyond_the_latest_of_a_finished_job_gets_its_final_state(
    client, publish, job, auth
):
    for status, progress in LIFECYCLE:
        await publish(status, progress)
    await projected(client, job, auth, JobStatus.COMPLETED)
    resume = {**auth, "Last-Event-ID": "1000"}
    async with client.stream("GET", PROGRESS.format(job), headers=resume) as response:
        stream = await asyncio.wait_for(follow(response.aiter_lines(), Stream()), 10)
    assert stream.ended
    assert [(i, data["status"]) for i, data in stream.events] == [(5, "completed")]
