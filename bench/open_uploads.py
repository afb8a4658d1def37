"""Open resumable uploads against the uploader's memory (issue 19 point 3): 200 clients,
each on its own 127.0.0.x address, create a resumable upload through the edge, send
7 MiB of it and leave it open; the uploader's RSS (``/proc/<pid>/status`` VmRSS) before,
at its peak and after, and its own accounting (``audiopipe_uploader_*``). Then every
upload is completed, so every part let go is read back from Kafka, and each must reach
``audio.stored``.

    uv run python -m bench.open_uploads [--quick]

Side by side in one run (docs/architecture.md §13): the uploader with its default
``MEMORY_BUDGET_BYTES``, and the same uploader with the budget out of reach, for the
issue's 40 uploads (what it measured: +164 MiB). Runs against the local stack with only
the gateway as an app (started if needed, stopped again if this started it); each
uploader is a process of this benchmark, in a consumer group of its own that starts at
the end of ``audio.upload``. Clients come from distinct addresses so that a per-client
limit at the gateway does not hide the uploader's bound.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.common import free_port, rss_kib
from bench.report import load_average, write
from bench.upload import MiB, PeakSampler, StoredWatcher, audio
from contracts import topics
from devstack import Stack
from devstack.config import Settings

DRAFT = {"Upload-Draft-Interop-Version": "8"}
SIZE = 7 * MiB
LOG_DIR = Path(__file__).resolve().parent.parent / ".run" / "bench-open-uploads"


def gateway_stack() -> Stack:
    apps = [a for a in Settings.from_environ().apps if a.name == "gateway"]
    return Stack(apps=apps)


async def start_at_end(bootstrap: str, group: str) -> None:
    """Commit the end of audio.upload for a new group: it reads only what comes next."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        numbers = await producer.partitions_for(topics.AUDIO_UPLOAD)  # waits for metadata
    finally:
        await producer.stop()
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.AUDIO_UPLOAD, n) for n in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.commit(dict(await consumer.end_offsets(partitions)))
    finally:
        await consumer.stop()


@contextlib.contextmanager
def uploader(env: dict[str, str], name: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (LOG_DIR / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uploader"],
            env={**os.environ, **env, "HTTP_PORT": str(port)},
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def metrics(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/metrics", timeout=10)
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.5)


def client_for(n: int, edge: str) -> httpx.AsyncClient:
    """Client ``n`` on its own loopback address: 127.0.0.2, 127.0.0.3, ..."""
    k = n + 1
    address = f"127.0.{k // 254}.{k % 254 + 1}"
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=edge, transport=transport, timeout=600)


async def leave_open(edge: str, n: int, data: bytes) -> tuple[str, str]:
    """Create upload ``n`` and send ``data`` without completing it."""
    async with client_for(n, edge) as client:
        created = await client.post(
            "/tokens/bench/upload-audio",
            content=b"",
            headers={**DRAFT, "Upload-Complete": "?0", "Upload-Length": str(len(data))},
        )
        created.raise_for_status()
        location = created.headers["location"]
        sent = await client.patch(
            location,
            content=data,
            headers={
                **DRAFT,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": "0",
                "Upload-Complete": "?0",
            },
        )
        sent.raise_for_status()
    return location, created.json()["job_id"]


async def complete(edge: str, n: int, location: str, size: int) -> None:
    async with client_for(n, edge) as client:
        done = await client.patch(
            location,
            content=b"",
            headers={
                **DRAFT,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": str(size),
                "Upload-Complete": "?1",
            },
        )
        done.raise_for_status()


T = TypeVar("T")


async def each(concurrency: int, jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def run(
    stack: Stack, watcher: StoredWatcher, uploads: int, budget: int | None, name: str
) -> dict[str, float]:
    env = stack.env()
    group = f"bench-open-{uuid.uuid4().hex[:8]}"
    await start_at_end(env["KAFKA_BOOTSTRAP_SERVERS"], group)
    settings = {**env, "CONSUMER_GROUP": group, "LOG_LEVEL": "WARNING"}
    if budget is not None:
        settings["MEMORY_BUDGET_BYTES"] = str(budget)
    edge = stack.edge_url
    with uploader(settings, name) as (proc, url):

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{url}/readyz", timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, 60, "the uploader ready")
        # Warm up: one upload through the whole path, so that RSS before is not the
        # heap of a process that never stored anything.
        location, job_id = await leave_open(edge, 0, audio(MiB, 1))
        await complete(edge, 0, location, MiB)
        await watcher.wait({job_id})
        before = rss_kib(proc.pid)
        files = [audio(SIZE, n) for n in range(4)]  # distinct contents, shared buffers
        started = time.perf_counter()
        with PeakSampler({"uploader": proc.pid}) as open_peak:
            opened = await each(20, [leave_open(edge, n + 1, files[n % 4]) for n in range(uploads)])

            async def consumed() -> bool:
                seen = await metrics(url)
                return seen.get("audiopipe_kafka_consumer_lag", 1) == 0

            await until(consumed, 600, "the uploader caught up")
        opened_in = time.perf_counter() - started
        after = rss_kib(proc.pid)
        seen_open = await metrics(url)
        with PeakSampler({"uploader": proc.pid}) as close_peak:
            await each(
                20,
                [complete(edge, n + 1, location, SIZE) for n, (location, _) in enumerate(opened)],
            )
            await watcher.wait({job for _, job in opened})
        seen_done = await metrics(url)
    return {
        "uploads": uploads,
        "rss_before_mib": before / 1024,
        "rss_open_peak_mib": open_peak.peak["uploader"] / 1024,
        "rss_after_open_mib": after / 1024,
        "rss_completing_peak_mib": close_peak.peak["uploader"] / 1024,
        "buffered_peak_mib": seen_done.get("audiopipe_uploader_buffered_peak_bytes", 0) / MiB,
        "buffered_open_mib": seen_open.get("audiopipe_uploader_buffered_bytes", 0) / MiB,
        "evictions": seen_done.get("audiopipe_uploader_evictions_total", 0),
        "reread_mib": seen_done.get("audiopipe_uploader_reread_bytes_total", 0) / MiB,
        "budget_mib": seen_done.get("audiopipe_uploader_memory_budget_bytes", 0) / MiB,
        "opened_s": opened_in,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 uploads instead of 200")
    parser.add_argument("--uploads", type=int, default=200)
    args = parser.parse_args()
    uploads = 40 if args.quick else args.uploads

    stack = gateway_stack()
    info = stack.up(apps=True)
    try:
        watcher = StoredWatcher(stack.env()["KAFKA_BOOTSTRAP_SERVERS"])
        await watcher.start()
        load = load_average()
        bounded = await run(stack, watcher, uploads, None, "uploader-bounded")
        unbounded = await run(stack, watcher, 40, 1 << 40, "uploader-unbounded")
        await watcher.stop()
    finally:
        stack.down(only=info)

    def growth(r: dict[str, float], key: str) -> float:
        return round(r[key] - r["rss_before_mib"], 1)

    rows: list[dict[str, Any]] = []
    for label, r in (("default budget", bounded), ("no budget (as before)", unbounded)):
        n = int(r["uploads"])
        rows += [
            {
                "measure": f"{label}: RSS growth, {n} open uploads of 7 MiB, at peak",
                "value": growth(r, "rss_open_peak_mib"),
                "unit": "MiB",
                "target": "≤ 128" if r is bounded else "",
            },
            {
                "measure": f"{label}: RSS growth with the {n} uploads open, caught up",
                "value": growth(r, "rss_after_open_mib"),
                "unit": "MiB",
                "target": "≤ 128" if r is bounded else "",
            },
            {
                "measure": f"{label}: RSS growth while completing all {n}, at peak",
                "value": growth(r, "rss_completing_peak_mib"),
                "unit": "MiB",
                "target": "",
            },
            {
                "measure": f"{label}: most bytes of parts held (accounting), budget "
                f"{r['budget_mib']:.0f} MiB" + (" (off)" if r is unbounded else ""),
                "value": round(r["buffered_peak_mib"], 1),
                "unit": "MiB",
                "target": f"≤ {r['budget_mib']:.0f}" if r is bounded else "",
            },
            {
                "measure": f"{label}: parts let go / read back from Kafka",
                "value": f"{int(r['evictions'])} / {r['reread_mib']:.0f} MiB",
                "unit": "",
                "target": "",
            },
        ]
    write(
        "open_uploads",
        "Open resumable uploads and the uploader's memory (issue 19)",
        rows,
        notes=[
            f"uploader RSS before: {bounded['rss_before_mib']:.0f} MiB (budget run), "
            f"{unbounded['rss_before_mib']:.0f} MiB (no budget run), after one warm-up upload",
            "each client on its own 127.0.0.x address, through the edge (Caddy), IETF draft "
            "interop 8: an empty creation, then one PATCH of 7 MiB with Upload-Complete: ?0; "
            "20 clients at a time",
            f"opening {bounded['uploads']:.0f} took {bounded['opened_s']:.0f} s; every upload "
            "was then completed with an empty PATCH and reached audio.stored",
            f"load average at the start: {load}",
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
