"""Kill each moving part (kill -9) while jobs run through the whole stack, restart it,
and check that no accepted job was lost, stuck or duplicated (docs/architecture.md §5).

One stack of the module's own (temporary run folder, its own ports): the uploader, the
analyzer-bridge, both notifier replicas, the broker and PostgreSQL are killed in turn,
each during a run of jobs through the edge, and brought back the way `make run` starts
what is missing. After each: every 202'd job is final exactly once on job.status,
completed with the right duration; its object in S3 is there once with the right size
and sha256; no multipart upload is left open; the notifier serves the same final state.
"""

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack import Stack
from tests.chaos.jobs import (
    Accepted,
    Load,
    bucket_contents,
    final_statuses,
    run_uploads,
    stored_events,
)
from tests.chaos.report import ROWS, Row
from tests.support.ownstack import kill9, own_stack, restart

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

SHIFT = 200
JOBS = 10
KILL_AFTER = 3  # accepted uploads before the kill: the rest are sent during the outage
RECOVERY_SECONDS = 240.0
TARGETS: dict[str, tuple[str, ...]] = {
    "uploader": ("uploader",),
    "analyzer-bridge": ("analyzer-bridge",),
    "notifier": ("notifier", "notifier-2"),
    "broker": ("kafka",),
    "postgres": ("postgres",),
}
# Every job pauses a little in the analysis, so that a kill finds jobs in every stage.
ANALYSIS_METADATA = '{"reference.mode": "slow", "reference.delay_seconds": "1.5"}'

ACCEPTED: list[Accepted] = []  # over the whole module: the bucket holds all of them


@pytest.fixture(scope="module")
def chaos_stack() -> Iterator[Stack]:
    extra = {"ANALYSIS_REQUEST_METADATA": ANALYSIS_METADATA}
    with own_stack("chaos", SHIFT, extra) as (stack, _):
        yield stack


async def _snapshot(edge_url: str, job: Accepted) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        response = await client.get(
            f"/jobs/{job.job_id}", params={"access_token": job.access_token}
        )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


# Beyond the suite's 300 s: a broker restart on a loaded machine, then the backlog.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("target", list(TARGETS))
async def test_a_kill_loses_duplicates_and_leaves_nothing(chaos_stack: Stack, target: str) -> None:
    stack = chaos_stack
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    killed_at: list[float] = []
    killed = asyncio.Event()

    async def kill(accepted: int) -> None:
        if accepted != KILL_AFTER or killed_at:
            return
        killed_at.append(time.monotonic())
        for name in TARGETS[target]:
            await asyncio.to_thread(kill9, stack, name)
        killed.set()

    salt = list(TARGETS).index(target) * 100
    uploads = asyncio.create_task(run_uploads(stack.edge_url, JOBS, salt=salt, on_accepted=kill))
    waiting = asyncio.create_task(killed.wait())
    await asyncio.wait({uploads, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    assert killed.is_set(), f"the kill never happened: {uploads.result()}"
    # Restarted at once, as a supervisor would, while the uploads go on. Should the
    # restart fail, the uploads are not waited for: they could only be refused.
    restarting = asyncio.create_task(asyncio.to_thread(restart, stack))
    await asyncio.wait({uploads, restarting}, return_when=asyncio.FIRST_EXCEPTION)
    if restarting.done() and restarting.exception() is not None:
        uploads.cancel()
    started = await restarting
    assert set(TARGETS[target]) <= set(started), started
    load: Load = await uploads
    ACCEPTED.extend(load.accepted)
    mine = {job.job_id: job for job in load.accepted}

    # Wait until every accepted job is final on job.status, or the recovery time is up.
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        finals = await final_statuses(bootstrap)
        pending = [j for j in mine if not finals.distinct(j)]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    recovered = time.monotonic() - killed_at[0]

    duplicated = [j for j in mine if len(finals.distinct(j)) > 1]
    completed = []
    for job_id, job in mine.items():
        events = list(finals.distinct(job_id).values())
        if len(events) != 1:
            continue
        status, event = events[0]
        result = event.get("result") or {}
        if status == "completed" and abs(result.get("duration_seconds", -1) - job.seconds) < 0.01:
            completed.append(job_id)
    ROWS.append(
        Row(
            target=target,
            jobs=len(mine),
            completed=len(completed),
            lost=len(pending),
            duplicated=len(duplicated),
            seconds_to_recover=recovered,
            refused=len(load.refused),
            redelivered=sum(len(finals.by_job.get(j, [])) - len(finals.distinct(j)) for j in mine),
        )
    )

    assert not pending, f"lost (never final): {pending}"
    assert not duplicated, {j: finals.distinct(j) for j in duplicated}
    failed = {j: finals.distinct(j) for j in mine if j not in completed}
    assert not failed, f"not completed with the right duration: {failed}"

    # Stored once, with the bytes the client sent.
    stored = await stored_events(bootstrap)
    for job_id, job in mine.items():
        assert len({cid for cid, _ in stored[job_id]}) == 1, stored[job_id]
        assert {e["sha256"] for _, e in stored[job_id]} == {job.sha256}

    # The bucket: every accepted job of the module once, nothing else, nothing open.
    bucket = await bucket_contents(stack.env())
    assert not bucket.repeated
    assert bucket.open_uploads == []
    assert bucket.objects == {f"audio/{j.job_id}": (j.size, j.sha256) for j in ACCEPTED}

    # The notifier's projection recovered too: the same final state through the edge.
    for job in mine.values():
        snapshot = await _snapshot(stack.edge_url, job)
        assert snapshot["status"] == "completed", snapshot
