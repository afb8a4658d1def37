"""Where an open SSE stream's memory goes (issue 14): tracemalloc in a notifier process.

    uv run python -m bench.sse_memory                 # 1,000 then 5,000 streams
    uv run python -m bench.sse_memory --first 500 --second 2000

The notifier app (``notifier.app.create_app``, served by ``servicekit.serve.server``
exactly as ``python -m notifier`` serves it, lifespan off) runs in a subprocess with
tracemalloc on, over an in-memory history that knows every job (one non-final event),
so no Kafka or PostgreSQL is needed: only the per-stream cost of the HTTP path is
measured. The client (raw asyncio, another process) opens ``--first`` streams, the
server takes a snapshot, the client opens streams up to ``--second``, a second snapshot;
the difference over the streams added is each stream's share, grouped by the source
file and line that allocated it (``bench/results/sse-memory.md`` explains it). RSS is
read alongside (with tracemalloc's own overhead in it, so only the traced bytes are
broken down).
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import sse
from bench.common import free_port, rss_kib

SECRET = "bench-sse-memory-job-token-secret-0123456789"


class _History:
    """Every job has one applied, non-final event: a stream opens and then waits."""

    async def current(self, job_id: str) -> Any:
        from contracts import JobStatus
        from notifier.projection import JobSnapshot

        return JobSnapshot(job_id, 1, JobStatus.UPLOADING, 10, None, None, None, datetime.now(UTC))

    async def applied_after(self, job_id: str, event_id: int) -> list[Any]:
        return []


def serve(port: int, out: Path) -> None:
    """The server side: the notifier app on ``port``; SIGUSR1 writes a snapshot."""
    from pydantic import SecretStr

    from notifier.app import create_app
    from notifier.deps import Services
    from notifier.settings import Settings
    from servicekit.serve import server
    from servicekit.service import service_of

    tracemalloc.start(8)
    # One client opens every stream: its share per address (issue 19) is the process.
    settings = Settings(
        job_token_secret=SecretStr(SECRET),
        http_port=port,
        sse_max_streams=1_000_000,
        sse_max_streams_per_client=1_000_000,
    )
    app = create_app(settings)
    service_of(app).get(Services).history = _History()
    running = server(app, settings, lifespan="off", detached=True)
    taken = 0

    def snapshot() -> None:
        nonlocal taken
        taken += 1
        tracemalloc.take_snapshot().dump(str(out / f"snap{taken}"))
        (out / f"rss{taken}").write_text(str(rss_kib(os.getpid())))

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, snapshot)
        await running.serve()

    asyncio.run(main())


async def _streams(port: int, paths: list[str]) -> list[sse.SseClient]:
    clients, failures = await sse.open_streams("127.0.0.1", port, paths, lambda *_: None)
    if failures:
        raise RuntimeError(f"{len(failures)} streams failed: {failures[:3]}")
    return clients


async def _snapshot(proc: subprocess.Popen[bytes], out: Path, n: int) -> None:
    proc.send_signal(signal.SIGUSR1)
    while not (out / f"rss{n}").exists():  # noqa: ASYNC110 (written by another process)
        await asyncio.sleep(0.2)


def report(out: Path, first: int, second: int, top: int) -> list[str]:
    one, two = (tracemalloc.Snapshot.load(str(out / f"snap{n}")) for n in (1, 2))
    added = second - first
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    one, two = one.filter_traces(ignore), two.filter_traces(ignore)
    rss = [int((out / f"rss{n}").read_text()) for n in (1, 2)]
    total = sum(s.size_diff for s in two.compare_to(one, "filename"))
    lines = [
        f"- {first} → {second} streams: traced +{total / added:.0f} B/stream, "
        f"RSS +{(rss[1] - rss[0]) * 1024 / added:.0f} B/stream (tracemalloc's overhead in it)",
        "",
        "| B/stream | blocks/stream | file |",
        "| --- | --- | --- |",
    ]
    root = str(Path(sys.prefix).parent)
    for stat in two.compare_to(one, "filename")[:top]:
        name = stat.traceback[0].filename.replace(root, "").replace(sys.prefix, "")
        lines.append(f"| {stat.size_diff / added:.0f} | {stat.count_diff / added:.1f} | `{name}` |")
    lines += ["", "| B/stream | line |", "| --- | --- |"]
    for stat in two.compare_to(one, "lineno")[:top]:
        frame = stat.traceback[0]
        name = frame.filename.replace(root, "").replace(sys.prefix, "")
        lines.append(f"| {stat.size_diff / added:.0f} | `{name}:{frame.lineno}` |")
    return lines


async def measure(first: int, second: int, top: int) -> list[str]:
    from servicekit.tokens import JobTokens

    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"sse-memory-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    port = free_port()
    tokens = JobTokens(SECRET, 3600)
    cmd = ["-m", "bench.sse_memory", "--serve", str(port), "--out", str(out)]
    with sse.server_process(cmd, {"LOG_LEVEL": "WARNING"}) as proc:
        await sse.wait_ready(proc, port, "/healthz")
        jobs = [str(uuid.uuid4()) for _ in range(second)]
        paths = [f"/tokens/analysis-progress/{j}?access_token={tokens.issue(j)}" for j in jobs]
        clients = await _streams(port, paths[:first])
        await asyncio.sleep(1)
        await _snapshot(proc, out, 1)
        clients += await _streams(port, paths[first:])
        await asyncio.sleep(1)
        await _snapshot(proc, out, 2)
        for client in clients:
            client.close()
    return report(out, first, second, top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=int, default=1000)
    parser.add_argument("--second", type=int, default=5000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.out)
        return
    sse._raise_fd_limit()
    print("\n".join(asyncio.run(measure(args.first, args.second, args.top))))


if __name__ == "__main__":
    main()
