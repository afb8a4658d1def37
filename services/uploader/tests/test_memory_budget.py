"""The uploader's memory budget on the real broker, S3 and PostgreSQL (issue 19 point
3): many resumable uploads left open hold no more than MEMORY_BUDGET_BYTES of parts in
the uploader, each of them still completes with the right sha256 after its part was let
go and read back from Kafka, and so after a kill -9 of the uploader in the middle, when
the next one replays them all."""

import asyncio
import hashlib

import httpx
import pytest
from draft_client import DraftClient
from prometheus_client.parser import text_string_to_metric_families
from uploader_rig import PART_BYTES, UploadRig, audio_bytes

from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
BUDGET = 2 * PART_BYTES + 2 * MiB  # the least the settings allow: 12 MiB
UPLOADS = 12
SIZE = PART_BYTES + 2 * MiB  # 7 MiB each, as in issue 19
OPEN_PART = 4 * MiB  # what each holds while open: 48 MiB in all, four times the budget


async def metrics(uploader: ServiceProcess) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{uploader.url}/metrics", timeout=10)
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


async def caught_up(uploader: ServiceProcess, *, evicted: bool) -> bool:
    """Every chunk on audio.upload consumed (the lag gauge, refreshed every 5 s) and,
    when asked, parts let go."""
    seen = await metrics(uploader)
    lag = seen.get("audiopipe_kafka_consumer_lag")
    return lag == 0 and (not evicted or seen.get("audiopipe_uploader_evictions_total", 0) > 0)


async def test_open_uploads_stay_within_the_budget_and_complete_after_a_kill_9(rig: UploadRig):
    gateway = await rig.service("gateway")
    budget = {"MEMORY_BUDGET_BYTES": str(BUDGET)}
    first = await rig.service("uploader", name="uploader-1", **budget)
    client = DraftClient(gateway.url)
    files = [audio_bytes(SIZE) for _ in range(UPLOADS)]
    created = [await client.create(data) for data in files]
    locations = [c.headers["location"] for c in created]
    job_ids = [c.json()["job_id"] for c in created]

    async def append(n: int, start: int, end: int, complete: bool) -> None:
        done = await client.append(locations[n], start, files[n][start:end], complete)
        assert done.status_code == (202 if complete else 204), done.text

    await asyncio.gather(*(append(n, 0, OPEN_PART, False) for n in range(UPLOADS)))
    await eventually(
        lambda: caught_up(first, evicted=True), within=120, what="the open uploads consumed"
    )
    seen = await metrics(first)
    assert seen["audiopipe_uploader_memory_budget_bytes"] == BUDGET
    assert 0 < seen["audiopipe_uploader_buffered_peak_bytes"] <= BUDGET
    assert seen["audiopipe_uploader_buffered_bytes"] <= BUDGET

    # Half of them complete (their parts read back from Kafka), then kill -9: the next
    # uploader replays every open upload from its first chunk not in a saved part.
    half = UPLOADS // 2
    await asyncio.gather(*(append(n, OPEN_PART, SIZE, True) for n in range(half)))
    first.kill()
    second = await rig.service("uploader", name="uploader-2", **budget)
    await asyncio.gather(*(append(n, OPEN_PART, SIZE, True) for n in range(half, UPLOADS)))

    def all_stored() -> bool:
        return all("uploaded" in rig.status.statuses(job_id) for job_id in job_ids)

    await eventually(all_stored, within=240, what="every upload stored")
    objects = await rig.objects()
    for job_id, data in zip(job_ids, files, strict=True):
        body_sha, recorded = objects[f"audio/{job_id}"]
        assert body_sha == recorded == hashlib.sha256(data).hexdigest()
        assert "failed" not in rig.status.statuses(job_id)
    seen = await metrics(second)
    assert seen["audiopipe_uploader_buffered_peak_bytes"] <= BUDGET
    assert seen["audiopipe_uploader_evictions_total"] > 0, "the replay had to let parts go"
    assert seen["audiopipe_uploader_reread_bytes_total"] > 0
    assert seen["audiopipe_uploader_buffered_bytes"] == 0
    assert await rig.multipart_uploads() == []
