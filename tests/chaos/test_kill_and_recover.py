"""Kill each moving part (kill -9) while jobs run through the whole stack, restart it,
and check that no accepted job was lost, stuck or duplicated (docs/architecture.md §5).

One stack of the module's own (temporary run folder, its own ports): the uploader, the
analyzer-bridge, both notifier replicas, the broker and PostgreSQL are killed in turn,
each during a run of jobs through the edge, and brought back the way `make run` starts
what is missing. After each: every 202'd job is final exactly once on job.status,
completed with the right duration; its object in S3 is there once with the right size
and sha256; no multipart upload is left open; the notifier serves the same final state.

Then deletions (docs/architecture.md §8, issue 20 point 3): finished jobs and a
resumable upload in progress are deleted through the edge (`DELETE /jobs/{id}`) and the
uploader, the analyzer-bridge, the gateway or a notifier replica is killed at once, as
`job.deleted` reaches it; once it is back, nothing of those jobs is left in S3 (objects,
multipart uploads) nor in the services' tables, and every job answers 410.
"""

import asyncio
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import asyncpg
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
from tests.support.audio import WAV_HEAD
from tests.support.ownstack import kill9, own_stack, restart
from tests.support.waiting import eventually

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
    # The audio stays for the module: its bucket is checked whole after every kill.
    extra = {"ANALYSIS_REQUEST_METADATA": ANALYSIS_METADATA, "AUDIO_RETENTION_SECONDS": "0"}
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


# --- deletions -----------------------------------------------------------------------

DELETION_TARGETS = ("uploader", "analyzer-bridge", "gateway", "notifier")
FINISHED = 3  # jobs completed, then deleted
PART = 8 * 1024 * 1024  # the uploader's PART_BYTES: an open upload with a part in S3


async def open_resumable_upload(edge_url: str) -> tuple[str, str]:
    """A resumable upload through the edge with more than a part appended and more to
    come: (job id, upload URL)."""
    interop = {"Upload-Draft-Interop-Version": "8"}
    size = 2 * PART
    appended = WAV_HEAD + b"\1" * (PART + 1024 * 1024 - len(WAV_HEAD))
    async with httpx.AsyncClient(base_url=edge_url, timeout=60) as client:
        created = await client.post(
            "/tokens/chaos/upload-audio",
            content=b"",
            headers={**interop, "Upload-Complete": "?0", "Upload-Length": str(size)},
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        answer = await client.patch(
            location,
            content=appended,
            headers={
                **interop,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": "0",
                "Upload-Complete": "?0",
            },
        )
        assert answer.status_code == 204, answer.text
    return created.json()["job_id"], location


async def left_in_tables(database_url: str, job_ids: list[str]) -> dict[str, int]:
    """Rows the services still hold of the jobs, by table, and tombstones missing."""
    ids = list(job_ids)
    uuids = [uuid.UUID(j) for j in ids]
    conn = await asyncpg.connect(database_url)
    try:
        held = {
            "uploader.checkpoints": await conn.fetchval(
                "SELECT count(*) FROM uploader.checkpoints WHERE job_id = ANY($1)", ids
            ),
            "analyzer_bridge.analyses": await conn.fetchval(
                "SELECT count(*) FROM analyzer_bridge.analyses WHERE job_id = ANY($1)", ids
            ),
            "gateway.uploads": await conn.fetchval(
                "SELECT count(*) FROM gateway.uploads WHERE job_id = ANY($1)", uuids
            ),
            "gateway.upload_leases": await conn.fetchval(
                "SELECT count(*) FROM gateway.upload_leases WHERE job_id = ANY($1)", uuids
            ),
            "notifier.jobs": await conn.fetchval(
                "SELECT count(*) FROM notifier.jobs WHERE job_id = ANY($1)", uuids
            ),
            "notifier.job_events": await conn.fetchval(
                "SELECT count(*) FROM notifier.job_events WHERE job_id = ANY($1)", uuids
            ),
        }
        buried = {
            "uploader.deleted_jobs": await conn.fetchval(
                "SELECT count(*) FROM uploader.deleted_jobs WHERE job_id = ANY($1)", ids
            ),
            "analyzer_bridge.deleted_jobs": await conn.fetchval(
                "SELECT count(*) FROM analyzer_bridge.deleted_jobs WHERE job_id = ANY($1)", ids
            ),
            "gateway.deleted_jobs": await conn.fetchval(
                "SELECT count(*) FROM gateway.deleted_jobs WHERE job_id = ANY($1)", uuids
            ),
            "notifier.deleted_jobs": await conn.fetchval(
                "SELECT count(*) FROM notifier.deleted_jobs WHERE job_id = ANY($1)", uuids
            ),
        }
    finally:
        await conn.close()
    missing = {f"{table} missing": len(ids) - n for table, n in buried.items() if n < len(ids)}
    return {table: n for table, n in held.items() if n} | missing


@pytest.mark.timeout(600)
@pytest.mark.parametrize("target", DELETION_TARGETS)
async def test_a_kill_during_deletions_leaves_nothing_once_it_is_back(
    chaos_stack: Stack, target: str
) -> None:
    stack = chaos_stack
    env = stack.env()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    salt = 1000 + DELETION_TARGETS.index(target) * 100
    load = await run_uploads(stack.edge_url, FINISHED, salt=salt)
    finished = [job.job_id for job in load.accepted]

    async def all_final() -> bool:
        finals = await final_statuses(bootstrap)
        return all(finals.distinct(j) for j in finished)

    await eventually(all_final, within=120, every=1.0, what="the jobs final")
    resumable, location = await open_resumable_upload(stack.edge_url)

    async def part_stored() -> bool:
        return f"audio/{resumable}" in (await bucket_contents(env)).open_uploads

    await eventually(part_stored, within=60, every=0.5, what="a part of the open upload stored")

    # Deleted through the edge, as a person would (DELETE /jobs/{id} with the job's own
    # access token: the notifier announces it on job.deleted before it answers), and the
    # target killed at once, with the deletions on their way to it.
    tokens = {job.job_id: job.access_token for job in load.accepted}
    tokens[resumable] = parse_qs(urlsplit(location).query)["access_token"][0]
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=30) as client:
        for job_id, token in tokens.items():
            answer = await client.delete(f"/jobs/{job_id}", params={"access_token": token})
            assert answer.status_code == 202, answer.text
    await asyncio.to_thread(kill9, stack, target)
    started = await asyncio.to_thread(restart, stack)
    assert target in started, started

    jobs = [resumable, *finished]
    keys = {f"audio/{j}" for j in jobs}

    left: dict[str, object] = {}

    async def nothing_left() -> bool:
        bucket = await bucket_contents(env)
        left.clear()
        left.update(await left_in_tables(env["DATABASE_URL"], jobs))
        if keys & set(bucket.objects):
            left["objects"] = sorted(keys & set(bucket.objects))
        if keys & set(bucket.open_uploads):
            left["multipart uploads"] = sorted(keys & set(bucket.open_uploads))
        return not left

    try:
        await eventually(nothing_left, within=RECOVERY_SECONDS, every=1.0, what="the erasure")
    except AssertionError:
        raise AssertionError(f"still held after the {target} came back: {left}") from None

    async with httpx.AsyncClient(base_url=stack.edge_url) as client:
        gone = await client.head(location, headers={"Upload-Draft-Interop-Version": "8"})
        assert gone.status_code == 410
        for job_id, token in tokens.items():
            snapshot = await client.get(f"/jobs/{job_id}", params={"access_token": token})
            assert snapshot.status_code == 410, snapshot.text
            again = await client.delete(f"/jobs/{job_id}", params={"access_token": token})
            assert again.status_code == 204  # repeating it is harmless
