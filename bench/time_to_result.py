"""Time to result (issue 14, item 4): from the upload's ``202`` to the ``completed`` SSE
event for a 3 s WAV, through the whole local stack, beside the seed's design.

    uv run python -m bench.time_to_result            # 50 jobs at concurrency 1, 200 at 20
    uv run python -m bench.time_to_result --quick    # 10 and 40

Each client (``--concurrency`` of them, each one job after the other) POSTs the clip to
the edge, takes the ``202``, opens the job's ``progress_url`` (SSE) and stops the clock
when the ``completed`` event is parsed. p50, p99 and max over every job.

- audiopipe: the devstack as ``make run`` starts it (gateway, uploader, analyzer-bridge,
  notifier, reference analyzer, edge); a stack already running from this run folder is
  reused.
- seed: the seed's design as a small Starlette app in a subprocess (``/work/shared/seed``:
  upload handler → background task → S3 → analysis request → webhook → job state in a
  dict; the SSE loop looks at the dict once a second), against the same S3 and the same
  reference analyzer, reached directly rather than through the edge.

Where the time goes: a consumer without a group reads the pipeline's event topics during
the run (not ``audio.upload``: its chunks would cost the broker a fetch of every file,
counted as the pipeline's CPU), and each job's events are placed on one clock (Kafka
record timestamps, set by the producing client, on this machine's wall clock, beside the
client's own times). The stage table gives the median and p99 of each step over the jobs
of one run.
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.common import (
    cpu_spent,
    free_port,
    fresh_gateway,
    percentile,
    raise_upload_limits,
    settled,
    without_retention,
)
from bench.sse import server_process, wait_ready
from contracts import topics
from tests.support.audio import sine_wav
from tests.support.sse import events

ROOT = Path(__file__).resolve().parent.parent
CLIP_SECONDS = 3.0
FINAL = ("completed", "failed")


# --- the client -------------------------------------------------------------------


@dataclass
class Job:
    """One job as the client saw it, on the wall clock (seconds since the epoch)."""

    job_id: str
    posted: float
    accepted: float
    streaming: float = 0.0
    done: float = 0.0
    status: str = ""
    seen: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.done - self.accepted


async def one_job(
    client: httpx.AsyncClient, upload_url: str, progress_url: Any, audio: bytes
) -> Job:
    posted = time.time()
    answer = await client.post(upload_url, files={"file": ("tone.wav", audio, "audio/wav")})
    accepted = time.time()
    if answer.status_code != 202:
        raise RuntimeError(f"upload answered {answer.status_code}: {answer.text[:300]}")
    body = answer.json()
    job = Job(body["job_id"], posted, accepted)
    async with client.stream("GET", progress_url(body), timeout=120) as stream:
        job.streaming = time.time()
        if stream.status_code != 200:
            raise RuntimeError(f"progress answered {stream.status_code}")
        async for event in events(stream):
            data = event.json()
            now = time.time()
            job.seen.append((str(data.get("status")), int(data.get("progress") or 0), now))
            if data.get("status") in FINAL:
                job.done, job.status = now, str(data["status"])
                break
    if not job.done:
        raise RuntimeError(f"job {job.job_id}: the stream ended before a final event")
    return job


async def run_clients(
    base_url: str, upload_path: str, progress_url: Any, concurrency: int, jobs: int
) -> list[Job]:
    audio = sine_wav(seconds=CLIP_SECONDS, sample_rate=22050, channels=2)
    queue = list(range(jobs))
    done: list[Job] = []
    limits = httpx.Limits(max_connections=2 * concurrency + 4)

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
            while queue:
                queue.pop()
                done.append(await one_job(client, upload_path, progress_url, audio))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def summary(side: str, concurrency: int, jobs: list[Job], seconds: float) -> dict[str, Any]:
    ms = [j.seconds * 1000 for j in jobs]
    return {
        "design": side,
        "concurrency": concurrency,
        "jobs": len(jobs),
        "completed": sum(j.status == "completed" for j in jobs),
        "p50 ms": percentile(ms, 50),
        "p99 ms": percentile(ms, 99),
        "max ms": max(ms),
        "202 p50 ms": percentile(((j.accepted - j.posted) * 1000 for j in jobs), 50),
        "jobs/s": sum(j.status == "completed" for j in jobs) / seconds,  # completed only
    }


# --- the tap: every event of the pipeline, with its timestamps -----------------------


@dataclass
class Tap:
    """Kafka record timestamps (ms, producer's wall clock) of each job's events."""

    records: dict[str, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, job_id: str, stage: str, timestamp_ms: int) -> None:
        self.records[job_id].append((stage, timestamp_ms / 1000))

    def first(self, job_id: str, stage: str) -> float | None:
        times = [t for s, t in self.records.get(job_id, []) if s == stage]
        return min(times) if times else None


def stage_of(topic: str, value: bytes | None) -> str | None:
    if topic == topics.AUDIO_STORED:
        return "audio.stored"
    if topic == topics.ANALYSIS_RESULT:
        return "analysis.result"
    if topic == topics.JOB_STATUS and value:
        return f"job.status {json.loads(value).get('status')}"
    return None


@contextlib.asynccontextmanager
async def tap(bootstrap: str) -> AsyncIterator[Tap]:
    """Read the pipeline's event topics from their end, without a consumer group: not
    ``audio.upload``, whose chunks the broker would send this process too, on the CPU
    measured as the pipeline's."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from servicekit.compat.aiokafka import refresh_metadata
    from servicekit.kafka import bootstrap_list

    names = [topics.AUDIO_STORED, topics.ANALYSIS_RESULT, topics.JOB_STATUS]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_list(bootstrap),
        group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    collected = Tap()
    try:
        # Every topic's metadata (a client that follows no topic asks for all of them),
        # as bench.sse does: `topics()` does not update the partitions it knows.
        await refresh_metadata(consumer)
        assigned = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)

        async def read() -> None:
            async for record in consumer:
                stage = stage_of(record.topic, record.value)
                if stage and record.key:
                    collected.add(record.key.decode(), stage, record.timestamp)

        task = asyncio.create_task(read())
        try:
            yield collected
            await asyncio.sleep(1)  # the last records of the run
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await consumer.stop()


STAGES = [
    ("202 → audio.stored", "202", "audio.stored"),
    # The request to the analysis server and its analysis: no event of every job marks
    # the request (the bridge's `analyzing` notice is published only when the analysis
    # outlasts ANALYZING_NOTICE_SECONDS, so timing from it would sample the slow jobs).
    ("audio.stored → analysis.result", "audio.stored", "analysis.result"),
    ("analysis.result → job.status completed", "analysis.result", "job.status completed"),
    ("job.status completed → SSE delivered", "job.status completed", "SSE"),
]


def breakdown(label: str, jobs: list[Job], taps: Tap) -> list[dict[str, Any]]:
    """Median and p99 of each stage over the jobs that have every timestamp."""
    steps: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        times: dict[str, float | None] = {"202": job.accepted, "SSE": job.done}
        for _, start, end in STAGES:
            for stage in (start, end):
                if stage not in times:
                    times[stage] = taps.first(job.job_id, stage)
        for name, start, end in STAGES:
            a, b = times.get(start), times.get(end)
            if a is not None and b is not None:
                steps[name].append((b - a) * 1000)
        total = (job.done - job.accepted) * 1000
        steps["total (202 → SSE completed)"].append(total)
    return [
        {
            "run": label,
            "stage": name,
            "jobs": len(values),
            "p50 ms": percentile(values, 50),
            "p99 ms": percentile(values, 99),
        }
        for name, values in steps.items()
        if values
    ]


# --- the seed's design --------------------------------------------------------------


def seed_app() -> Any:
    """The seed (``/work/shared/seed``, user_audio_router.py) in small: the upload handler
    keeps the job in a dict and starts a background task (S3 upload, then the analysis
    request with a ``webhook_url``); the webhook writes the dict; the SSE endpoint sends
    the dict's entry once a second until it is final. Webhook signatures are not checked,
    as the seed did not; its analysis requests are signed, as the reference analysis server
    requires (one HMAC per job)."""
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from servicekit import webhooks
    from servicekit.s3 import s3_client
    from servicekit.settings import S3Settings

    settings = S3Settings()
    analyzer = os.environ["ANALYSIS_SERVER_URL"]
    public = os.environ["SEED_PUBLIC_URL"]
    secret = os.environ.get("WEBHOOK_SIGNING_SECRET", "")
    store: dict[str, dict[str, Any]] = {}
    http = httpx.AsyncClient(timeout=30)
    clients: dict[str, Any] = {}  # one S3 client for the process, as the seed's boto3

    async def process(job_id: str, data: bytes, content_type: str) -> None:
        key = f"seed/{job_id}"
        s3 = clients["s3"]
        await s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=data)
        url = await s3.generate_presigned_url(
            "get_object", Params={"Bucket": settings.s3_bucket, "Key": key}, ExpiresIn=600
        )
        store[job_id].update(status="processing", progress=10)
        body = json.dumps(
            {
                "job_id": job_id,
                "audio_url": url,
                "content_type": content_type,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "webhook_url": f"{public}/tokens/webhook/analysis-complete?job_id={job_id}",
                "metadata": {},
            }
        ).encode()
        headers = {"content-type": "application/json"}
        if secret:  # the reference analyzer refuses unsigned requests (docs/architecture.md §6)
            msg_id = f"msg_{uuid.uuid4().hex}"
            headers |= webhooks.signed_headers(secret, msg_id, int(time.time()), body)
        answer = await http.post(f"{analyzer}/analyze", content=body, headers=headers)
        if answer.status_code >= 300:
            store[job_id].update(status="failed", error=answer.text[:200])

    async def upload(request: Request) -> Response:
        form = await request.form()
        file = form["file"]
        assert not isinstance(file, str)
        data = await file.read()
        job_id = str(uuid.uuid4())
        store[job_id] = {"job_id": job_id, "status": "pending", "progress": 0}
        task = BackgroundTask(process, job_id, data, file.content_type or "audio/wav")
        return JSONResponse(
            {"job_id": job_id, "status": "pending", "progress_url": f"/progress/{job_id}"},
            status_code=202,
            background=task,
        )

    async def webhook(request: Request) -> Response:
        job_id = request.query_params["job_id"]
        hook = await request.json()
        entry = store[job_id]
        if hook.get("status") == "progress":
            entry.update(status="analyzing", progress=hook.get("progress", 0))
        else:
            entry.update(status=hook["status"], progress=100, result=hook.get("result"))
        return JSONResponse({"ok": True})

    async def progress(request: Request) -> StreamingResponse:
        job_id = request.path_params["job_id"]

        async def stream() -> AsyncIterator[bytes]:
            while True:
                entry = store.get(job_id)
                if entry is not None:
                    yield f"data: {json.dumps(entry)}\n\n".encode()
                    if entry["status"] in FINAL:
                        return
                await asyncio.sleep(1)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def readyz(_: Request) -> Response:
        return Response(status_code=200)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with s3_client(settings) as s3:
            clients["s3"] = s3
            yield
        await http.aclose()

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/tokens/{token_id}/upload-audio", upload, methods=["POST"]),
            Route("/tokens/webhook/analysis-complete", webhook, methods=["POST"]),
            Route("/progress/{job_id}", progress),
            Route("/readyz", readyz),
        ],
    )


def serve_seed(port: int) -> None:
    import uvicorn

    uvicorn.run(seed_app(), host="127.0.0.1", port=port, log_level="warning")


# --- the run ------------------------------------------------------------------------


@contextlib.contextmanager
def full_stack() -> Iterator[Any]:
    """The stack (``devstack.StackInfo``); what this started is stopped after."""
    from devstack import Stack

    stack = Stack(root=ROOT)
    started = stack.up(apps=True, timeout=120)
    try:
        fresh_gateway(started.reused)
        yield started
    finally:
        stack.down(only=started)


WARMUP_CONCURRENCY = 20
ANALYSIS_SERVER = "reference-analyzer"
CPU_COLUMNS = [
    "kafka", "s3", "postgres", "edge", "gateway", "uploader", "analyzer-bridge",
    "notifier", "notifier-2", "seed",
]  # fmt: skip


def cpu_row(design: str, concurrency: int, spent: dict[str, float], jobs: int) -> dict[str, Any]:
    """CPU ms per job by process, from the CPU-seconds ``spent`` over ``jobs``;
    ``pipeline`` is every process but the analysis server (the figure issue 21 bounds),
    ``total`` includes it. ``pipeline ÷ analysis server``: the pipeline's cost in units
    of the analysis server's, whose work per job the clip fixes, to compare runs made
    while this shared machine ran at different speeds."""
    ms = {name: seconds * 1000 / jobs for name, seconds in spent.items()}
    pipeline = sum(v for n, v in ms.items() if n != ANALYSIS_SERVER)
    analysis = ms.get(ANALYSIS_SERVER)
    return (
        {"design": design, "concurrency": concurrency}
        | {name: ms.get(name) for name in CPU_COLUMNS}
        | {
            "pipeline": pipeline,
            ANALYSIS_SERVER: analysis,
            "total": sum(ms.values()),
            "pipeline ÷ analysis server": round(pipeline / analysis, 2) if analysis else None,
        }
    )


def progress_url(body: dict[str, Any]) -> str:
    """The ``progress_url`` of a 202 (audiopipe's carries the job's access token)."""
    return str(body["progress_url"])


async def measure_audiopipe(
    edge_url: str,
    bootstrap: str,
    pids: dict[str, int],
    plan: list[tuple[int, int]],
    warmup: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    cpu: list[dict[str, Any]] = []
    path = "/tokens/bench/upload-audio"
    # Warm: connections, caches, and the broker's JIT, which compiles for its first tens
    # of seconds under load (bench/results/profile-jobs.md); a long-running stack is
    # measured, not one just started.
    await run_clients(edge_url, path, progress_url, WARMUP_CONCURRENCY, warmup)
    for concurrency, jobs in plan:
        spent: dict[str, float] = {}
        async with tap(bootstrap) as taps:
            with cpu_spent(spent, pids):
                started = time.perf_counter()
                done = await run_clients(edge_url, path, progress_url, concurrency, jobs)
                seconds = time.perf_counter() - started
        rows.append(summary("audiopipe (push)", concurrency, done, seconds))
        stages += breakdown(f"audiopipe, concurrency {concurrency}", done, taps)
        cpu.append(cpu_row("audiopipe", concurrency, spent, len(done)))
        print(rows[-1], flush=True)
    return rows, stages, cpu


async def measure_seed(
    env: dict[str, str], pids: dict[str, int], plan: list[tuple[int, int]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    cpu: list[dict[str, Any]] = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    seed_env = {**env, "SEED_PUBLIC_URL": base}
    args = ["-m", "bench.time_to_result", "--serve-seed", str(port)]
    with server_process(args, seed_env, signal.SIGKILL) as proc:
        await wait_ready(proc, port, "/readyz")
        path = "/tokens/bench/upload-audio"

        await run_clients(base, path, progress_url, 1, 3)
        used = {"seed": proc.pid} | {n: pids[n] for n in ("s3", ANALYSIS_SERVER)}
        for concurrency, jobs in plan:
            spent: dict[str, float] = {}
            with cpu_spent(spent, used):
                started = time.perf_counter()
                done = await run_clients(base, path, progress_url, concurrency, jobs)
                seconds = time.perf_counter() - started
            rows.append(summary("seed (poll 1 s)", concurrency, done, seconds))
            cpu.append(cpu_row("seed", concurrency, spent, len(done)))
            print(rows[-1], flush=True)
    return rows, cpu


async def run(
    plan: list[tuple[int, int]], seed: bool, warmup: int
) -> tuple[list[dict[str, Any]], ...]:
    with full_stack() as stack:
        pids = {c.name: c.pid for c in stack.components if c.pid is not None}
        bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
        await settled(bootstrap)
        rows, stages, cpu = await measure_audiopipe(stack.edge_url, bootstrap, pids, plan, warmup)
        if seed:
            seed_rows, seed_cpu = await measure_seed(stack.env, pids, plan)
            rows += seed_rows
            cpu += seed_cpu
    return rows, stages, cpu


def main() -> None:
    raise_upload_limits()
    without_retention()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs at concurrency 1")
    parser.add_argument("--concurrent-jobs", type=int, default=200, help="jobs at concurrency 20")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="10 and 40 jobs")
    parser.add_argument(
        "--warmup", type=int, default=150, help="jobs at concurrency 20 before measuring"
    )
    parser.add_argument("--no-seed", action="store_true", help="only audiopipe")
    parser.add_argument("--serve-seed", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_seed:
        serve_seed(args.serve_seed)
        return
    one, many = (10, 40) if args.quick else (args.jobs, args.concurrent_jobs)
    plan = [(1, one), (args.concurrency, many)]
    load_before = os.getloadavg()[0]
    rows, stages, cpu = asyncio.run(run(plan, seed=not args.no_seed, warmup=args.warmup))
    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    notes = [
        f"A {CLIP_SECONDS:g} s 16-bit stereo 22.05 kHz WAV "
        f"({len(sine_wav(CLIP_SECONDS, 22050, 2)) // 1024} KiB) per job; time = 202 received "
        "→ `completed` event parsed from the job's SSE stream (the stream is opened after "
        "the 202, as a browser does).",
        "audiopipe: the devstack (gateway, uploader, analyzer-bridge, notifier ×2, "
        "reference analyzer) through the edge (Caddy); seed: the seed's design in a "
        "Starlette subprocess (dict + SSE polling once a second) against the same S3 and "
        "reference analyzer, without the edge.",
        "Retention is off for the stack it starts (bench.common.without_retention): the "
        "sweeps would otherwise erase earlier runs' jobs during this one.",
        "The run begins once no consumer group of the stack is still draining earlier "
        "records (bench.common.settled), whose work would count as this run's. Then, "
        f"before measuring, {args.warmup} jobs at concurrency {WARMUP_CONCURRENCY} warm "
        "the stack: connections, caches and the broker's JIT, which compiles for its "
        "first tens of seconds under load.",
        "Everything (Kafka, SeaweedFS, PostgreSQL, services, client) shares this machine's "
        f"cores with other work ({load}); figures are medians and p99 of one run.",
    ]
    report.write("time_to_result", "Time to result: 202 → completed (3 s WAV)", rows, notes)
    report.write(
        "time_to_result_stages",
        "Time to result by stage (Kafka record timestamps)",
        stages,
        [
            "Each stage from the first record of its end event minus its start (the 202 "
            "and the SSE delivery are the client's clock; the rest are Kafka record "
            "timestamps, set by the producing service). Same run as time_to_result.md.",
        ],
        module="time_to_result",
    )
    report.write(
        "time_to_result_cpu",
        "Time to result: CPU milliseconds per job, by process",
        cpu,
        [
            "User + system CPU time of each process of the stack (`/proc/<pid>/stat`) "
            "over the run, divided by its jobs "
            f"({load}). Same run as "
            "time_to_result.md; each process with its descendants (PostgreSQL's "
            "backends), the client's own CPU not counted. `pipeline` is every process "
            "but the analysis server; the seed's row counts the seed process, S3 and the "
            "analysis server it uses.",
            "CPU time is not the machine's constant: on a shared VM the same work costs "
            "more CPU-milliseconds while the host is busy (the analysis server's unchanged "
            "work per job has measured 16–32 ms on this machine, minutes apart). "
            "`pipeline ÷ analysis server` divides that out, to compare runs.",
        ],
        module="time_to_result",
    )


if __name__ == "__main__":
    main()
