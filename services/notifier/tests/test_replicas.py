"""Several notifier processes over one database and consumer group (issue 5): every
replica pushes every event, a reconnect to another replica or to a restarted one
resumes by Last-Event-ID with no gap and no duplicate."""

import asyncio
import uuid

import httpx
import pytest
from notifier_testing import (
    LIFECYCLE,
    PROGRESS,
    Stream,
    drop_schema,
    follow,
    projected,
    running,
)

from contracts import JobStatus, topics
from tests.support.kafka import start_group_at_end
from tests.support.processes import free_port

pytestmark = pytest.mark.integration


async def test_every_replica_pushes_every_event_of_a_job(
    notifier_url, second_notifier_url, publish, job, auth
):
    async with (
        httpx.AsyncClient(base_url=notifier_url, timeout=15) as first,
        httpx.AsyncClient(base_url=second_notifier_url, timeout=15) as second,
        first.stream("GET", PROGRESS.format(job), headers=auth) as on_first,
        second.stream("GET", PROGRESS.format(job), headers=auth) as on_second,
    ):
        readers = [
            asyncio.create_task(follow(response.aiter_lines(), Stream()))
            for response in (on_first, on_second)
        ]
        for status, progress in LIFECYCLE:
            await publish(status, progress)
        streams = await asyncio.wait_for(asyncio.gather(*readers), 20)
    # Each event was projected by one replica; both pushed it, with the same ids.
    for stream in streams:
        assert stream.ended
        assert [(i, data["status"]) for i, data in stream.events] == [
            (i, status.value) for i, (status, _) in enumerate(LIFECYCLE, 1)
        ]


async def test_reconnect_to_another_replica_resumes_without_gap_or_duplicate(
    notifier_url, second_notifier_url, publish, job, auth
):
    async with (
        httpx.AsyncClient(base_url=notifier_url, timeout=15) as first,
        httpx.AsyncClient(base_url=second_notifier_url, timeout=15) as second,
    ):
        async with first.stream("GET", PROGRESS.format(job), headers=auth) as response:
            reading = asyncio.create_task(follow(response.aiter_lines(), Stream(), stop=2))
            for status, progress in LIFECYCLE[:2]:
                await publish(status, progress)
            before = await asyncio.wait_for(reading, 20)
        # Projected while the client is away: the other replica replays it from history.
        await publish(*LIFECYCLE[2])
        await projected(second, job, auth, JobStatus.UPLOADED)

        resume = {**auth, "Last-Event-ID": str(before.events[-1][0])}
        async with second.stream("GET", PROGRESS.format(job), headers=resume) as response:
            lines = response.aiter_lines()
            after = await asyncio.wait_for(follow(lines, Stream(), stop=1), 20)
            reading = asyncio.create_task(follow(lines, after))
            for status, progress in LIFECYCLE[3:]:
                await publish(status, progress)
            after = await asyncio.wait_for(reading, 20)

        assert [i for i, _ in before.events + after.events] == [1, 2, 3, 4, 5]
        assert after.ended
        assert after.events[-1][1]["status"] == "completed"
        seen_final = {**auth, "Last-Event-ID": "5"}
        for replica in (first, second):
            response = await replica.get(PROGRESS.format(job), headers=seen_final)
            assert response.status_code == 204


async def test_clients_of_a_restarted_notifier_resume_and_see_the_final_event(
    notifier_settings, tokens, publish, job, auth
):
    # A notifier of its own (schema and group), so that it is the only one: what it
    # missed while down can only come from Kafka after its restart.
    run = uuid.uuid4().hex[:10]
    settings = notifier_settings.model_copy(
        update={
            "database_schema": f"notifier_restart_{run}",
            "consumer_group": f"notifier-restart-{run}",
            "http_port": free_port(),
        }
    )
    url = f"http://127.0.0.1:{settings.http_port}" + PROGRESS.format(job)
    await start_group_at_end(
        settings.kafka_bootstrap_servers, settings.consumer_group, topics.JOB_STATUS
    )
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            # A long graceful timeout: only ending the streams lets the shutdown end soon.
            async with running(settings, timeout_graceful_shutdown=60):
                responses = [await _open(http, url, auth) for _ in range(3)]
                lines = [r.aiter_lines() for r in responses]
                readers = [asyncio.create_task(follow(ls, Stream(), stop=2)) for ls in lines]
                for status, progress in LIFECYCLE[:2]:
                    await publish(status, progress)
                before = await asyncio.wait_for(asyncio.gather(*readers), 20)
                ending = [
                    asyncio.create_task(follow(ls, s)) for ls, s in zip(lines, before, strict=True)
                ]
            # The server has stopped, and every stream ended cleanly (none was cut).
            ended = await asyncio.wait_for(asyncio.gather(*ending), 5)
            assert all(s.ended for s in ended)
            for response in responses:
                await response.aclose()

            for status, progress in LIFECYCLE[2:]:  # published while the notifier is down
                await publish(status, progress)

            async with running(settings):
                resumed = []
                for stream in ended:
                    headers = {**auth, "Last-Event-ID": str(stream.events[-1][0])}
                    async with http.stream("GET", url, headers=headers) as response:
                        again = response.aiter_lines()
                        resumed.append(await asyncio.wait_for(follow(again, Stream()), 20))
        for before_restart, after_restart in zip(ended, resumed, strict=True):
            assert [i for i, _ in before_restart.events + after_restart.events] == [1, 2, 3, 4, 5]
            assert after_restart.ended
            assert after_restart.events[-1][1]["status"] == "completed"
    finally:
        await drop_schema(settings)


async def _open(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
    response = await http.send(http.build_request("GET", url, headers=headers), stream=True)
    assert response.status_code == 200
    return response
