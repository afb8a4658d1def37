"""Upload path benchmark (issue 3): ingest throughput against direct S3, time to 202,
and the memory of the gateway and uploader while 1 GiB goes through.

    uv run python -m bench.upload [--quick]

Runs against the local stack (started if needed, with only the gateway and uploader, and
stopped again if this started it), through the edge, as a client would. Throughput is
compared side by side with a direct aiobotocore ``put_object`` of the same files to the
same S3 server at the same concurrency, in interleaved rounds (docs/architecture.md §13).
"""

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.report import write
from contracts import topics
from devstack import DEFAULT_APPS, Stack
from servicekit.s3 import ensure_bucket, s3_client
from servicekit.settings import S3Settings

MiB = 1024 * 1024
WAV_HEADER = bytes.fromhex(
    "52494646ffffffff57415645666d74201000000001000100401f0000803e00000200100064617461ffffffff"
)
BOUNDARY = "benchboundary"


def audio(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    body = (block * (size // len(block) + 1))[: size - len(WAV_HEADER)]
    return WAV_HEADER + body


class StoredWatcher:
    """Sees `audio.stored` events from now on: job id → arrival time."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def start(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        parts = [
            TopicPartition(topics.AUDIO_STORED, p)
            for p in await producer.partitions_for(topics.AUDIO_STORED)
        ]
        await producer.stop()
        await self.consumer.start()
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for p in parts:
            await self.consumer.position(p)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self.consumer:
            self.arrived[json.loads(record.value or b"{}")["job_id"]] = time.perf_counter()
            self.changed.set()

    async def wait(self, job_ids: set[str]) -> float:
        while not job_ids <= self.arrived.keys():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 300)
        return max(self.arrived[j] for j in job_ids)

    async def stop(self) -> None:
        self.task.cancel()
        await self.consumer.stop()


async def upload(client: httpx.AsyncClient, data: bytes) -> str:
    answer = await client.post(
        "/tokens/bench/upload-audio", files={"file": ("bench.wav", data, "audio/wav")}
    )
    answer.raise_for_status()
    return str(answer.json()["job_id"])


async def bounded(concurrency: int, jobs: list) -> list:  # type: ignore[type-arg]
    gate = asyncio.Semaphore(concurrency)

    async def one(job):
        async with gate:
            return await job

    return await asyncio.gather(*(one(j) for j in jobs))


async def pipeline_round(
    edge: str, files: list[bytes], concurrency: int, watcher: StoredWatcher
) -> float:
    async with httpx.AsyncClient(base_url=edge, timeout=300) as client:
        start = time.perf_counter()
        ids = await bounded(concurrency, [upload(client, f) for f in files])
        end = await watcher.wait(set(ids))
    return sum(map(len, files)) / MiB / (end - start)


async def direct_round(settings: S3Settings, files: list[bytes], concurrency: int) -> float:
    async with s3_client(settings) as s3:
        await ensure_bucket(s3, "bench-direct")
        start = time.perf_counter()
        await bounded(
            concurrency,
            [
                s3.put_object(Bucket="bench-direct", Key=f"direct/{i}", Body=f)
                for i, f in enumerate(files)
            ],
        )
        elapsed = time.perf_counter() - start
    return sum(map(len, files)) / MiB / elapsed


async def time_to_202(edge: str, count: int) -> list[float]:
    data = audio(MiB, 7)
    times = []
    async with httpx.AsyncClient(base_url=edge, timeout=60) as client:
        for _ in range(count):
            start = time.perf_counter()
            await upload(client, data)
            times.append((time.perf_counter() - start) * 1000)
    return times


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class PeakSampler:
    """Samples the RSS of some processes every 20 ms in a thread; keeps the maximum."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: rss_kib(pid) for name, pid in pids.items()}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_kib(pid))

    def __enter__(self) -> "PeakSampler":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


async def big_body(size: int) -> AsyncIterator[bytes]:
    """A multipart body around ``size`` bytes of audio, generated as it is sent."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"'
        "\r\nContent-Type: audio/wav\r\n\r\n"
    ).encode() + WAV_HEADER
    block = os.urandom(MiB)
    sent = len(WAV_HEADER)
    while sent < size:
        piece = block[: min(MiB, size - sent)]
        sent += len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def memory_run(
    edge: str, size: int, pids: dict[str, int], watcher: StoredWatcher
) -> dict[str, tuple[int, int]]:
    idle = {name: rss_kib(pid) for name, pid in pids.items()}
    with PeakSampler(pids) as sampler:
        async with httpx.AsyncClient(base_url=edge, timeout=600) as client:
            answer = await client.post(
                "/tokens/bench/upload-audio",
                content=big_body(size),
                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
            answer.raise_for_status()
        await watcher.wait({answer.json()["job_id"]})
    return {name: (idle[name], sampler.peak[name]) for name in pids}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples")
    args = parser.parse_args()
    rounds, files_n, uploads_202, big = (
        (1, 4, 30, 128 * MiB) if args.quick else (3, 10, 200, 1024 * MiB)
    )

    # Only the ingest path: analysing every benchmark file would take CPU from it on a
    # small machine (a stack that is already running is used as it is).
    stack = Stack(apps=[a for a in DEFAULT_APPS if a.name in ("gateway", "uploader")])
    info = stack.up(apps=True)
    try:
        env = stack.env()
        edge = stack.edge_url
        pids = {s.name: s.pid for s in stack.status() if s.name in ("gateway", "uploader")}
        s3 = S3Settings(
            s3_endpoint_url=env["S3_ENDPOINT_URL"],
            s3_access_key_id=env["S3_ACCESS_KEY_ID"],
            s3_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
        )
        watcher = StoredWatcher(env["KAFKA_BOOTSTRAP_SERVERS"])
        await watcher.start()
        await time_to_202(edge, 3)  # warm up connections and code paths
        # Memory first, while the services' heaps are as small as they get.
        memory = await memory_run(edge, big, {k: v for k, v in pids.items() if v}, watcher)
        files = [audio(20 * MiB, i) for i in range(files_n)]
        ours, direct = [], []
        for _ in range(rounds):  # interleaved, so that machine noise hits both alike
            ours.append(await pipeline_round(edge, files, 4, watcher))
            direct.append(await direct_round(s3, files, 4))
        latencies = await time_to_202(edge, uploads_202)
        await watcher.stop()
    finally:
        stack.down(only=info)

    ratio = statistics.median(ours) / statistics.median(direct)
    rows = [
        {
            "measure": f"ingest throughput, {files_n}×20 MiB at concurrency 4, edge → audio.stored",
            "value": round(statistics.median(ours), 1),
            "unit": "MiB/s",
            "target": "",
            "rounds": rounds,
        },
        {
            "measure": "direct aiobotocore put_object, same files, same S3, concurrency 4",
            "value": round(statistics.median(direct), 1),
            "unit": "MiB/s",
            "target": "",
            "rounds": rounds,
        },
        {
            "measure": "ratio ours / direct S3",
            "value": round(ratio, 2),
            "unit": "×",
            "target": "≥ 0.5",
            "rounds": rounds,
        },
        {
            "measure": f"time to 202, 1 MiB upload, p50 of {uploads_202}",
            "value": round(pct(latencies, 50), 1),
            "unit": "ms",
            "target": "< 50",
            "rounds": 1,
        },
        {
            "measure": f"time to 202, 1 MiB upload, p99 of {uploads_202}",
            "value": round(pct(latencies, 99), 1),
            "unit": "ms",
            "target": "",
            "rounds": 1,
        },
    ]
    for name, (idle, peak) in memory.items():
        rows.append(
            {
                "measure": f"{name} peak RSS above idle, {big // MiB} MiB upload",
                "value": round((peak - idle) / 1024, 1),
                "unit": "MiB",
                "target": "< 64",
                "rounds": 1,
            }
        )
    write(
        "upload",
        "Upload path (gateway + uploader)",
        rows,
        notes=[
            f"throughput rounds: ours {[round(x, 1) for x in ours]}, "
            f"direct {[round(x, 1) for x in direct]} MiB/s",
            "ours includes the HTTP upload through Caddy, Kafka (acks=all), the uploader's "
            "multipart upload with verification, and the audio.stored event",
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
