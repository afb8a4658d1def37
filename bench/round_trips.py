"""Round trips per job (issue 21): the PostgreSQL statements each service runs, the Kafka
requests each client sends and the statuses each client's stream carries, per job, under
``bench.time_to_result``'s load (3 s WAV through the edge, concurrency 20).

    uv run python -m bench.round_trips [--jobs N] [--label NAME]

Why counts: on a loopback stack most of a service's CPU goes to its round trips (a
``send`` pays for both ends' kernel work; see ``results/throughput.md``), and CPU per job
on a shared machine moves 15-30% from one run to the next, while these counts do not. A
change that saves a statement or a request per job shows here exactly.

- PostgreSQL: ``log_statement = all`` for the measured jobs (``ALTER SYSTEM``, reset
  after); each server process is put to the service whose connection it serves (its
  client port, among the service processes' sockets).
- Kafka: the broker's request log (devstack's ``KAFKA_REQUEST_LOG=1``), by client id and
  API; both notifiers share the client id ``notifier``. The broker must be started by
  this run, so that its log is on.
- Statuses: the ``job.status`` events each SSE client received.

Each run adds its counts under ``--label`` to ``results/round_trips.json`` and rewrites
``results/round_trips.md`` with every label.
"""

import argparse
import asyncio
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.common import raise_upload_limits, without_retention
from bench.report import header, load_average, write_labelled
from bench.time_to_result import full_stack, progress_url, run_clients

SERVICES = ("gateway", "uploader", "analyzer-bridge", "notifier", "notifier-2")
STATEMENT = re.compile(r"^\[(\d+)\] LOG:  (?:statement|execute [^:]*): ?(.*)$")
REQUEST = re.compile(r'"clientId":"([^"]*)","requestApiKeyName":"(\w+)"')
TOP = 25
ROOT = Path(__file__).resolve().parent.parent


class Tail:
    """What is appended to a log file from now on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size if path.exists() else 0

    def lines(self) -> list[str]:
        with self.path.open(errors="replace") as f:
            f.seek(self.start)
            return f.read().splitlines()


async def statement_logging(dsn: str, on: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if on:
            await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            await conn.execute("ALTER SYSTEM SET log_line_prefix = '[%p] '")
        else:
            await conn.execute("ALTER SYSTEM RESET log_statement")
            await conn.execute("ALTER SYSTEM RESET log_line_prefix")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def backends(dsn: str, pids: dict[str, int]) -> dict[int, str]:
    """Each PostgreSQL server process's service, by the client port it serves."""
    ports: dict[int, str] = {}
    for name, pid in pids.items():
        for socket in psutil.Process(pid).net_connections(kind="tcp"):
            if socket.laddr:
                ports[socket.laddr.port] = name
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL"
        )
    finally:
        await conn.close()
    return {r["pid"]: ports.get(r["client_port"], "other") for r in rows}


def statements(lines: list[str], owner: dict[int, str]) -> tuple[Counter[str], Counter[str]]:
    """Statements by service, and by service and statement (its first line)."""
    by_service: Counter[str] = Counter()
    by_text: Counter[str] = Counter()
    current: str | None = None
    for i, line in enumerate(lines):
        match = STATEMENT.match(line)
        if not match:
            continue
        current = owner.get(int(match.group(1)), "other")
        text = match.group(2).strip()
        if not text:  # a statement that starts on its next line
            following = lines[i + 1] if i + 1 < len(lines) else ""
            text = following.strip()
        by_service[current] += 1
        by_text[f"{current}: {' '.join(text.split())[:80]}"] += 1
    return by_service, by_text


def requests(lines: list[str]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for line in lines:
        match = REQUEST.search(line)
        if match:
            counted[f"{match.group(1)} {match.group(2)}"] += 1
    return counted


async def measure(jobs: int, concurrency: int, warmup: int) -> dict[str, Any]:
    from devstack import Stack

    paths = Stack(root=ROOT).paths
    with full_stack() as stack:
        if "kafka" in stack.reused:
            raise SystemExit(
                "the local stack's broker was already running, without its request log; "
                "stop it (make stop) and run the benchmark again"
            )
        dsn = stack.env["DATABASE_URL"]
        pids = {c.name: c.pid for c in stack.components if c.pid is not None}
        path = "/tokens/bench/upload-audio"
        await run_clients(stack.edge_url, path, progress_url, concurrency, warmup)
        kafka_log, pg_log = Tail(paths.log("kafka-requests")), Tail(paths.log("postgres"))
        await statement_logging(dsn, on=True)
        try:
            done = await run_clients(stack.edge_url, path, progress_url, concurrency, jobs)
            owner = await backends(dsn, {n: pids[n] for n in SERVICES if n in pids})
        finally:
            await statement_logging(dsn, on=False)
        await asyncio.sleep(1)  # the broker's log is written as requests complete
        by_service, by_text = statements(pg_log.lines(), owner)
        by_request = requests(kafka_log.lines())
    n = len(done)
    return {
        "jobs": n,
        "completed": sum(j.status == "completed" for j in done),
        "load": load_average(),
        "statuses_per_job": round(sum(len(j.seen) for j in done) / n, 2),
        "statements_per_job": round(sum(by_service.values()) / n, 2),
        "statements": {k: round(v / n, 2) for k, v in by_service.most_common()},
        "top_statements": {k: round(v / n, 2) for k, v in by_text.most_common(TOP)},
        "requests_per_job": round(sum(by_request.values()) / n, 2),
        "requests": {k: round(v / n, 2) for k, v in by_request.most_common()},
    }


def render(runs: dict[str, Any], meta: dict[str, str]) -> str:
    lines = [
        *header(meta, " (none are used here: counts per job)"),
        "| run | jobs | statuses per job (SSE) | PostgreSQL statements per job | "
        "Kafka requests per job |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {label} | {r['completed']}/{r['jobs']} | {r['statuses_per_job']} | "
            f"{r['statements_per_job']} | {r['requests_per_job']} |"
            for label, r in runs.items()
        ),
        "",
    ]
    for label, run in runs.items():
        lines += [
            f"## {label}",
            "",
            f"Load average {run['load']} at the end.",
            "",
            "| PostgreSQL statements per job, by service | |",
            "| --- | --- |",
            *(f"| {k} | {v} |" for k, v in run["statements"].items()),
            "",
            "| Kafka requests per job, by client and API | |",
            "| --- | --- |",
            *(f"| {k} | {v} |" for k, v in run["requests"].items()),
            "",
            "| most run statements (service: first line) | per job |",
            "| --- | --- |",
            *(f"| `{k.replace('|', '/')}` | {v} |" for k, v in run["top_statements"].items()),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    raise_upload_limits()
    without_retention()
    os.environ["KAFKA_REQUEST_LOG"] = "1"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=40, help="jobs before counting")
    parser.add_argument("--label", default="current", help="the section these counts fill")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.jobs, args.concurrency, args.warmup))
    write_labelled(
        "round_trips",
        "Round trips per job at concurrency 20 (3 s WAV)",
        args.label,
        figures,
        render,
        module="round_trips",
    )


if __name__ == "__main__":
    main()
