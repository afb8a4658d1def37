"""What the fair-use limits cost (issue 19; docs/architecture.md §6): time to 202 and
ingest throughput with the limits counted and with them off, side by side in one run.

    uv run python -m bench.fair_use [--quick]

Two gateway processes of this benchmark share the local stack's Kafka, PostgreSQL and
uploader (started if needed, with only the uploader as an app, and stopped again if
this started it):

- **with limits**: every limit on and counted in PostgreSQL (one admission transaction
  per upload, a lease renewed while the body arrives), set high enough that none
  refuses this benchmark's own load;
- **without**: every limit 0, so the gateway asks no database (``gateway.limits.NoQuota``).

Clients go straight to each gateway (the edge would add the same to both), in
interleaved rounds so that the machine's noise hits both alike (docs/architecture.md
§13): time to 202 of a 1 MiB upload, one at a time; ingest of 20 MiB files at
concurrency 4 until ``audio.stored``.
"""

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from bench.common import free_port, percentile
from bench.report import load_average, write
from bench.sse import server_process, wait_ready
from bench.upload import MiB, StoredWatcher, audio, bounded, upload
from devstack import Stack
from devstack.config import Settings

COUNTED = {
    "UPLOAD_RATE_PER_MINUTE": "100000",
    "UPLOAD_RATE_BURST": "10000",
    "UPLOADS_OPEN_PER_CLIENT": "1000",
    "UPLOAD_BYTES_PER_DAY": str(1024**4),
    "UPLOAD_BYTES_IN_FLIGHT": str(1024**4),
}
OFF = {**dict.fromkeys(COUNTED, "0"), "UPLOAD_RATE_BURST": "1"}  # burst has no "off"


def uploader_stack() -> Stack:
    apps = [a for a in Settings.from_environ().apps if a.name == "uploader"]
    return Stack(apps=apps)


async def latencies(base: str, count: int) -> list[float]:
    data = audio(MiB, 11)
    times = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(count):
            start = time.perf_counter()
            await upload(client, data)
            times.append((time.perf_counter() - start) * 1000)
    return times


async def ingest(base: str, files: list[bytes], watcher: StoredWatcher) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        start = time.perf_counter()
        ids = await bounded(4, [upload(client, f) for f in files])
        end = await watcher.wait(set(ids))
    return sum(map(len, files)) / MiB / (end - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples")
    args = parser.parse_args()
    rounds, per_round, files_n = (2, 20, 4) if args.quick else (6, 50, 8)

    stack = uploader_stack()
    info = stack.up(apps=True)
    try:
        env = stack.env()
        common = {**env, "LOG_LEVEL": "WARNING", "DATABASE_SCHEMA": "gateway_bench"}
        ports = {"with limits": free_port(), "without": free_port()}
        watcher = StoredWatcher(env["KAFKA_BOOTSTRAP_SERVERS"])
        await watcher.start()
        files = [audio(20 * MiB, i) for i in range(files_n)]
        times: dict[str, list[float]] = {name: [] for name in ports}
        rates: dict[str, list[float]] = {name: [] for name in ports}
        with (
            server_process(
                ["-m", "gateway"],
                {**common, **COUNTED, "HTTP_PORT": str(ports["with limits"])},
            ) as counted,
            server_process(
                ["-m", "gateway"], {**common, **OFF, "HTTP_PORT": str(ports["without"])}
            ) as off,
        ):
            await wait_ready(counted, ports["with limits"], "/readyz")
            await wait_ready(off, ports["without"], "/readyz")
            bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            for base in bases.values():
                await latencies(base, 5)  # warm up connections and code paths
            for n in range(rounds):
                order = list(bases.items()) if n % 2 == 0 else list(bases.items())[::-1]
                for name, base in order:
                    times[name] += await latencies(base, per_round)
                for name, base in order:
                    rates[name].append(await ingest(base, files, watcher))
        await watcher.stop()
    finally:
        stack.down(only=info)

    rows: list[dict[str, Any]] = []
    for name in ports:
        rows += [
            {
                "measure": f"time to 202, 1 MiB, p50 of {len(times[name])}",
                "gateway": name,
                "value": round(percentile(times[name], 50), 1),
                "unit": "ms",
            },
            {
                "measure": f"time to 202, 1 MiB, p99 of {len(times[name])}",
                "gateway": name,
                "value": round(percentile(times[name], 99), 1),
                "unit": "ms",
            },
            {
                "measure": f"ingest, {files_n}×20 MiB at concurrency 4 → audio.stored, "
                f"median of {rounds} rounds",
                "gateway": name,
                "value": round(statistics.median(rates[name]), 1),
                "unit": "MiB/s",
            },
        ]
    p50 = {name: percentile(times[name], 50) for name in ports}
    rows.append(
        {
            "measure": "time to 202 p50, with limits minus without",
            "gateway": "",
            "value": round(p50["with limits"] - p50["without"], 1),
            "unit": "ms",
        }
    )
    write(
        "fair_use",
        "What the fair-use limits cost",
        rows,
        notes=[
            "Two gateways side by side on one stack (same Kafka, PostgreSQL, uploader), "
            "clients straight to each; rounds interleaved, order alternating.",
            "With limits: every limit counted in PostgreSQL, set so that none refuses the "
            "benchmark; without: every limit 0, no database asked.",
            f"Load average at the end: {load_average()}.",
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
