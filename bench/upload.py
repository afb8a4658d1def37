"""Upload path benchmark (issues 3, 14): ingest throughput against direct S3 and against
the seed's design, time to 202, and the memory of the gateway and uploader while 1 GiB
goes through.

    uv run python -m bench.upload [--quick]

Runs against the local stack (started if needed, with only the gateway and uploader, and
stopped again if this started it), through the edge, as a client would. Throughput is
compared side by side, in interleaved rounds of the same files at the same concurrency
(docs/architecture.md §13), with

- a direct aiobotocore ``put_object`` to the same S3 server, once with the uploader's
  client configuration (``UNSIGNED-PAYLOAD``) and once with botocore's default over
  plain HTTP (the body's sha256 signed), as issue 14 measured it;
- the seed's design: a FastAPI ``UploadFile`` route in a subprocess that answers once
  it has read the upload and then stores it with ``put_object`` in a ``BackgroundTasks``
  task (not durable: a crash after the answer loses the file). Its throughput runs from
  the first request to the last object in S3.
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    cpu_spent,
    free_port,
    fresh_gateway,
    percentile,
    raise_upload_limits,
    rss_kib,
)
from bench.report import load_average, write
from bench.sse import server_process, wait_ready
from contracts import topics
from devstack import Stack
from devstack.config import Settings
from servicekit.s3 import ensure_bucket, s3_client
from servicekit.settings import S3Settings

MiB = 1024 * 1024
WAV_HEADER = bytes.fromhex(
    "52494646ffffffff57415645666d74201000000001000100401f0000803e00000200100064617461ffffffff"
)
BOUNDARY = "benchboundary"


def ingest_stack() -> Stack:
    """The local stack with only the gateway and uploader as apps. The app list comes from
    the environment's settings, so that AUDIOPIPE_PORT_OFFSET moves the apps' ports too
    (devstack's DEFAULT_APPS carry the unshifted ones)."""
    apps = [a for a in Settings.from_environ().apps if a.name in ("gateway", "uploader")]
    return Stack(apps=apps)


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


SEED_BUCKET = "bench-seed"


def seed_app(settings: S3Settings) -> Any:
    """The seed's upload design: read the ``UploadFile`` whole, answer 202, then store it
    in a background task. ``GET /stored?ids=...`` says which are in S3 (for the bench)."""
    from contextlib import asynccontextmanager

    from fastapi import BackgroundTasks, FastAPI, Query, UploadFile

    stored: set[str] = set()
    changed = asyncio.Condition()
    clients: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with s3_client(settings) as s3:
            await ensure_bucket(s3, SEED_BUCKET)
            clients["s3"] = s3
            yield

    app = FastAPI(lifespan=lifespan)

    async def store(job_id: str, data: bytes, content_type: str) -> None:
        await clients["s3"].put_object(
            Bucket=SEED_BUCKET, Key=f"seed/{job_id}", Body=data, ContentType=content_type
        )
        stored.add(job_id)
        async with changed:
            changed.notify_all()

    @app.post("/tokens/{token_id}/upload-audio", status_code=202)
    async def upload_audio(
        token_id: str, file: UploadFile, background: BackgroundTasks
    ) -> dict[str, str]:
        data = await file.read()
        job_id = str(uuid.uuid4())
        background.add_task(store, job_id, data, file.content_type or "audio/wav")
        return {"job_id": job_id, "status": "accepted"}

    @app.get("/stored")
    async def done(ids: list[str] = Query(default_factory=list)) -> dict[str, int]:  # noqa: B008
        """Answers once every one of ``ids`` is in S3."""
        async with changed:
            await changed.wait_for(lambda: stored.issuperset(ids))
        return {"stored": len(ids)}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_seed(port: int) -> None:
    import uvicorn

    settings = S3Settings()  # S3_* from the environment the bench passes
    uvicorn.run(
        seed_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


async def seed_round(base: str, files: list[bytes], concurrency: int) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        start = time.perf_counter()
        ids = await bounded(concurrency, [upload(client, f) for f in files])
        (await client.get("/stored", params={"ids": ids})).raise_for_status()
        end = time.perf_counter()
    return sum(map(len, files)) / MiB / (end - start)


async def time_to_202(edge: str, count: int) -> list[float]:
    data = audio(MiB, 7)
    times = []
    async with httpx.AsyncClient(base_url=edge, timeout=60) as client:
        for _ in range(count):
            start = time.perf_counter()
            await upload(client, data)
            times.append((time.perf_counter() - start) * 1000)
    return times


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


async def main() -> None:
    raise_upload_limits()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples")
    args = parser.parse_args()
    rounds, files_n, uploads_202, big = (
        (1, 4, 30, 128 * MiB) if args.quick else (5, 10, 200, 1024 * MiB)
    )

    # Only the ingest path: analysing every benchmark file would take CPU from it on a
    # small machine (a stack that is already running is used as it is).
    stack = ingest_stack()
    info = stack.up(apps=True)
    try:
        fresh_gateway(info.reused)
        env = stack.env()
        edge = stack.edge_url
        pids = {s.name: s.pid for s in stack.status() if s.name in ("gateway", "uploader")}
        # The uploader's client configuration (UNSIGNED-PAYLOAD) ...
        s3 = S3Settings(
            s3_endpoint_url=env["S3_ENDPOINT_URL"],
            s3_access_key_id=env["S3_ACCESS_KEY_ID"],
            s3_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
        )
        # ... and botocore's default over plain HTTP, as issue 14 measured direct S3.
        s3_signed = s3.model_copy(update={"s3_sign_payload": True})
        watcher = StoredWatcher(env["KAFKA_BOOTSTRAP_SERVERS"])
        await watcher.start()
        await time_to_202(edge, 3)  # warm up connections and code paths
        # Memory first, while the services' heaps are as small as they get.
        memory = await memory_run(edge, big, {k: v for k, v in pids.items() if v}, watcher)
        files = [audio(20 * MiB, i) for i in range(files_n)]
        seed_port = free_port()
        seed_env = {
            "S3_ENDPOINT_URL": s3.s3_endpoint_url or "",
            "S3_ACCESS_KEY_ID": s3.s3_access_key_id,
            "S3_SECRET_ACCESS_KEY": s3.s3_secret_access_key.get_secret_value(),
        }
        seed_args = ["-m", "bench.upload", "--serve-seed", str(seed_port)]
        seed_base = f"http://127.0.0.1:{seed_port}"
        ours: list[float] = []
        direct: list[float] = []
        signed: list[float] = []
        seed: list[float] = []
        # CPU-seconds per process, summed over the rounds of each design (issue 21).
        stack_pids = {s.name: s.pid for s in stack.status() if s.pid}
        cpu: dict[str, dict[str, float]] = {d: {} for d in ("ours", "direct", "seed")}
        with server_process(seed_args, seed_env, signal.SIGKILL) as proc:
            await wait_ready(proc, seed_port, "/readyz")
            await seed_round(seed_base, files[:2], 2)  # warm up
            seed_pids = {"seed": proc.pid, "s3": stack_pids["s3"]}
            for _ in range(rounds):  # interleaved, so that machine noise hits all alike
                with cpu_spent(cpu["ours"], stack_pids):
                    ours.append(await pipeline_round(edge, files, 4, watcher))
                with cpu_spent(cpu["direct"], {"s3": stack_pids["s3"]}):
                    direct.append(await direct_round(s3, files, 4))
                signed.append(await direct_round(s3_signed, files, 4))
                with cpu_spent(cpu["seed"], seed_pids):
                    seed.append(await seed_round(seed_base, files, 4))
        latencies = await time_to_202(edge, uploads_202)
        await watcher.stop()
    finally:
        stack.down(only=info)

    def paired(a: list[float], b: list[float]) -> float:
        """Median of the per-round ratios: each round's peers ran back to back."""
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    label = f"{files_n}×20 MiB at concurrency 4"
    rows = [
        {
            "measure": f"ingest throughput, {label}, edge → audio.stored (durable)",
            "value": round(statistics.median(ours), 1),
            "unit": "MiB/s",
            "target": "",
            "rounds": rounds,
        },
        {
            "measure": "direct aiobotocore put_object, same files, same S3, uploader's "
            "client config (UNSIGNED-PAYLOAD)",
            "value": round(statistics.median(direct), 1),
            "unit": "MiB/s",
            "target": "",
            "rounds": rounds,
        },
        {
            "measure": "direct put_object, botocore's default (payload sha256 signed), "
            "as in issue 14",
            "value": round(statistics.median(signed), 1),
            "unit": "MiB/s",
            "target": "",
            "rounds": rounds,
        },
        {
            "measure": "seed design: FastAPI UploadFile, 202, put_object in a background "
            "task (not durable), first request → last object in S3",
            "value": round(statistics.median(seed), 1),
            "unit": "MiB/s",
            "target": "",
            "rounds": rounds,
        },
        {
            "measure": "ratio ours / direct S3 (UNSIGNED-PAYLOAD)",
            "value": round(paired(ours, direct), 2),
            "unit": "×",
            "target": "≥ 0.5",
            "rounds": rounds,
        },
        {
            "measure": "ratio ours / direct S3 (signed, as in issue 14)",
            "value": round(paired(ours, signed), 2),
            "unit": "×",
            "target": "≥ 0.5",
            "rounds": rounds,
        },
        {
            "measure": "ratio ours / seed design",
            "value": round(paired(ours, seed), 2),
            "unit": "×",
            "target": "≥ 1.0",
            "rounds": rounds,
        },
        {
            "measure": f"time to 202, 1 MiB upload, p50 of {uploads_202}",
            "value": round(percentile(latencies, 50), 1),
            "unit": "ms",
            "target": "< 50",
            "rounds": 1,
        },
        {
            "measure": f"time to 202, 1 MiB upload, p99 of {uploads_202}",
            "value": round(percentile(latencies, 99), 1),
            "unit": "ms",
            "target": "",
            "rounds": 1,
        },
    ]
    gib = rounds * sum(map(len, files)) / 1024**3
    described = {
        "ours": "ours (edge → gateway → Kafka → uploader → S3)",
        "direct": "direct put_object (UNSIGNED-PAYLOAD), the S3 server",
        "seed": "seed design",
    }
    for design, seconds in cpu.items():
        for name, value in [*sorted(seconds.items()), ("total", sum(seconds.values()))]:
            rows.append(
                {
                    "measure": f"CPU per GiB ingested, {described[design]}: {name}",
                    "value": round(value / gib, 2),
                    "unit": "CPU-s/GiB",
                    "target": "",
                    "rounds": rounds,
                }
            )
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
            f"throughput rounds (MiB/s): ours {[round(x, 1) for x in ours]}, "
            f"direct {[round(x, 1) for x in direct]}, direct signed "
            f"{[round(x, 1) for x in signed]}, seed {[round(x, 1) for x in seed]}",
            "ratios are medians of the per-round ratios (the peers run back to back in each round)",
            "ours includes the HTTP upload through Caddy, Kafka (acks=all), the uploader's "
            "multipart upload with verification, and the audio.stored event; the seed is "
            "called directly (it had no edge) and answers before anything is durable",
            f"load average at the end: {load_average()} (the machine's cores are shared "
            "with other work)",
            "CPU per GiB: user + system CPU-seconds of each process (with its descendants, "
            "/proc) over the throughput rounds of its design, divided by the GiB those "
            "rounds ingested; the client's own CPU is not counted",
        ],
    )


if __name__ == "__main__":
    # The seed peer's own process (uvicorn runs its own event loop).
    if sys.argv[1:2] == ["--serve-seed"]:
        serve_seed(int(sys.argv[2]))
    else:
        asyncio.run(main())
