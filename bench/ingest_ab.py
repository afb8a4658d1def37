"""Gateway variants side by side (issue 14 item 2): time to 202 of a 1 MiB upload, ingest
throughput against direct S3, and the gateway's CPU, in interleaved rounds of one run.

    uv run python -m bench.ingest_ab [--rounds 5] [--before <commit>]

One gateway process per variant, each on its own port against the same Kafka, uploader
and S3 of the local stack (started with the gateway and uploader if needed, stopped
again if this started it), called directly rather than through the edge, alike for
every variant. The variants:

- ``before``: the gateway of ``--before`` at 512 KiB chunks, 8 in flight;
- ``512 KiB/8`` and ``1 MiB/4``: this tree's gateway at two chunk settings (the same
  4 MiB in flight per upload).

bench/results/ingest_ab.md was taken at 43ee74d, whose gateway sent the ``finished``
marker right behind the unacknowledged last chunk (since reverted: see
bench/results/profile-ingest.md), against the gateway of 9bba07e.

Each round runs, in an order rotated per round, every variant's 1 MiB uploads one at a
time (time to 202), then every variant's 10×20 MiB at concurrency 4 until
``audio.stored``, each beside a direct ``put_object`` of the same files, so that the
machine's noise hits all alike. The gateway's CPU-seconds (user + system, /proc) per
200 MiB survive contention better than the throughput does.
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.common import cpu_seconds, free_port, fresh_gateway, percentile, raise_upload_limits
from bench.report import load_average, write
from bench.sse import wait_ready
from bench.upload import (
    MiB,
    StoredWatcher,
    audio,
    direct_round,
    ingest_stack,
    pipeline_round,
    time_to_202,
)
from servicekit.settings import S3Settings

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "9bba07e"
"""The branch's gateway before this pass."""


def old_gateway(commit: str, into: Path) -> Path:
    """The gateway package of ``commit``, exported (not checked out) under ``into``."""
    target = into / f"gateway-{commit}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit, "services/gateway/src"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "services" / "gateway" / "src"


@contextlib.contextmanager
def gateway_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A gateway whose output goes to ``log``: a pipe nobody reads would fill with its
    logs and stop it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def main() -> None:
    raise_upload_limits()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=40, help="1 MiB uploads per round")
    parser.add_argument("--before", default=BEFORE, help="the commit of the `before` gateway")
    args = parser.parse_args()

    stack = ingest_stack()
    info = stack.up(apps=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        fresh_gateway(info.reused)
        env = stack.env()
        s3 = S3Settings(
            s3_endpoint_url=env["S3_ENDPOINT_URL"],
            s3_access_key_id=env["S3_ACCESS_KEY_ID"],
            s3_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
        )
        old_src = old_gateway(args.before, ROOT / ".run" / "bench-ab")
        variants = {
            f"before ({args.before}), 512 KiB/8": (
                {"CHUNK_BYTES": str(512 * 1024), "MAX_CHUNKS_IN_FLIGHT": "8"},
                {"PYTHONPATH": str(old_src)},
            ),
            "this tree, 512 KiB/8": (
                {"CHUNK_BYTES": str(512 * 1024), "MAX_CHUNKS_IN_FLIGHT": "8"},
                {},
            ),
            "this tree, 1 MiB/4": (
                {"CHUNK_BYTES": str(MiB), "MAX_CHUNKS_IN_FLIGHT": "4"},
                {},
            ),
        }
        bases: dict[str, str] = {}
        with contextlib.ExitStack() as stack_of:
            for name, (settings, extra) in variants.items():
                port = free_port()
                proc_env = {**env, **settings, **extra, "HTTP_PORT": str(port)}
                log = ROOT / ".run" / "bench-ab" / f"gateway-{len(procs)}.log"
                proc = stack_of.enter_context(gateway_process(proc_env, log))
                await wait_ready(proc, port, "/readyz")
                procs[name] = proc
                bases[name] = f"http://127.0.0.1:{port}"
            watcher = StoredWatcher(env["KAFKA_BOOTSTRAP_SERVERS"])
            await watcher.start()
            files = [audio(20 * MiB, i) for i in range(10)]
            for name in variants:  # warm up connections and code paths
                await time_to_202(bases[name], 3)
                await pipeline_round(bases[name], files[:2], 2, watcher)
            latencies: dict[str, list[float]] = {name: [] for name in variants}
            throughput: dict[str, list[float]] = {name: [] for name in variants}
            direct: dict[str, list[float]] = {name: [] for name in variants}
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            load_before = load_average()
            names = list(variants)
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    latencies[name] += await time_to_202(bases[name], args.per_round)
                for name in order:
                    pid = procs[name].pid
                    before = cpu_seconds(pid)
                    throughput[name].append(await pipeline_round(bases[name], files, 4, watcher))
                    cpu[name].append(cpu_seconds(pid) - before)  # the files are 200 MiB
                    direct[name].append(await direct_round(s3, files, 4))
            await watcher.stop()
            load_after = load_average()
    finally:
        stack.down(only=info)

    rows = []
    for name in variants:
        ratios = [a / b for a, b in zip(throughput[name], direct[name], strict=True)]
        rows.append(
            {
                "variant": name,
                "202 p50 ms": round(percentile(latencies[name], 50), 1),
                "202 p99 ms": round(percentile(latencies[name], 99), 1),
                "samples": len(latencies[name]),
                "MiB/s (median)": round(statistics.median(throughput[name]), 1),
                "ours / direct S3 (median of rounds)": round(statistics.median(ratios), 2),
                "gateway CPU-s per 200 MiB (median)": round(statistics.median(cpu[name]), 2),
            }
        )
    notes = [
        f"{args.rounds} interleaved rounds (order rotated per round): {args.per_round} "
        "sequential 1 MiB uploads per variant, then 10×20 MiB at concurrency 4 per variant "
        "until audio.stored, each followed by a direct put_object round of the same files",
        "each variant is its own gateway process, called directly (not through the edge); "
        "uploader, Kafka and S3 are shared",
        "throughput rounds (MiB/s): " + "; ".join(f"{n}: {throughput[n]}" for n in variants),
        "direct S3 rounds (MiB/s): " + "; ".join(f"{n}: {direct[n]}" for n in variants),
        f"load average before → after: {load_before} → {load_after} "
        "(the machine's 2 cores are shared with other work)",
    ]
    print(write("ingest_ab", "Gateway variants, interleaved A/B", rows, notes))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
