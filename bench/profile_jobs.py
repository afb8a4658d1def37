"""Where a job's CPU goes (issue 21): py-spy profiles of every Python process of the
stack and the Kafka broker's CPU by thread group, under the load of
``bench.time_to_result`` at concurrency 20.

    uv run python -m bench.profile_jobs [--jobs N] [--label NAME] [--raw-dir DIR]

The whole local stack runs (``bench.time_to_result``'s ``full_stack``); 3 s WAV jobs go
through the edge, each client waiting for its job's ``completed`` on the SSE stream, as
in that benchmark, after as many warm-up jobs as it runs. py-spy samples the gateway,
the uploader, the bridge, both notifiers and the reference analysis server for the
whole round (``--format raw``, summarised to
the functions with the most samples, by self and by inclusive share, idle waits left
out); the broker's threads are read from ``/proc`` and grouped by name, which is the
JVM's own account of where its CPU goes. Sampling costs CPU, so the CPU per job of
record is ``bench.time_to_result``'s, not this.

Each run adds its profile under ``--label`` to ``results/profile-jobs.json`` and
rewrites ``results/profile-jobs.md`` with every label, so a change is read as one
profile before and one after it.
"""

import argparse
import asyncio
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import raise_upload_limits, without_retention
from bench.profile_ingest import TICK, group_of, pyspy, summarise, thread_ticks
from bench.report import header, load_average, write_labelled
from bench.time_to_result import full_stack, progress_url, run_clients

PYTHON = ("gateway", "uploader", "analyzer-bridge", "notifier", "notifier-2", "reference-analyzer")
TOP = 12


async def measure(jobs: int, concurrency: int, warmup: int, raw_dir: Path) -> dict[str, Any]:
    with full_stack() as stack:
        pids = {c.name: c.pid for c in stack.components if c.pid is not None}
        path = "/tokens/bench/upload-audio"
        await run_clients(stack.edge_url, path, progress_url, concurrency, warmup)  # warm
        sampled = {name: pids[name] for name in PYTHON if name in pids}
        before = thread_ticks(pids["kafka"])
        with pyspy(sampled, raw_dir) as outputs:
            done = await run_clients(stack.edge_url, path, progress_url, concurrency, jobs)
        after = thread_ticks(pids["kafka"])
    groups: dict[str, float] = {}
    for name, ticks in after.items():
        group = group_of(name, "kafka")
        groups[group] = groups.get(group, 0) + (ticks - before.get(name, 0)) * 1000 / TICK
    return {
        "jobs": len(done),
        "completed": sum(j.status == "completed" for j in done),
        "load": load_average(),
        "kafka_ms_per_job": {
            g: round(ms / len(done), 1) for g, ms in sorted(groups.items(), key=lambda i: -i[1])
        },
        "profiles": {name: summarise(raw, TOP) for name, raw in outputs.items()},
    }


def render(runs: dict[str, Any], meta: dict[str, str]) -> str:
    lines = [
        *header(meta, " (none are used here: shares of samples)"),
    ]
    for label, run in runs.items():
        lines += [
            f"## {label}",
            "",
            f"{run['completed']}/{run['jobs']} jobs completed at concurrency 20 "
            f"(load average {run['load']}).",
            "",
            "Kafka broker, CPU ms per job by thread group:",
            "",
            "| group | ms/job |",
            "| --- | --- |",
            *(f"| {g} | {ms} |" for g, ms in run["kafka_ms_per_job"].items()),
            "",
        ]
        for process, profile in run["profiles"].items():
            lines += [
                f"### {process} ({profile['samples']} samples, idle waits left out)",
                "",
                "| self % | function | inclusive % | function |",
                "| --- | --- | --- | --- |",
            ]
            own, inclusive = profile["self"], profile["inclusive"]
            for i in range(max(len(own), len(inclusive))):
                a = own[i] if i < len(own) else ["", ""]
                b = inclusive[i] if i < len(inclusive) else ["", ""]
                lines.append(f"| {a[1]} | `{a[0]}` | {b[1]} | `{b[0]}` |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    raise_upload_limits()
    without_retention()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=150, help="jobs before sampling")
    parser.add_argument("--label", default="current", help="the section these figures fill")
    parser.add_argument("--raw-dir", type=Path, help="keep py-spy's raw stacks here")
    args = parser.parse_args()
    with TemporaryDirectory() as scratch:
        raw_dir = args.raw_dir or Path(scratch)
        raw_dir.mkdir(parents=True, exist_ok=True)
        figures = asyncio.run(measure(args.jobs, args.concurrency, args.warmup, raw_dir))
    write_labelled(
        "profile-jobs",
        "Where a job's CPU goes: profiles at concurrency 20 (3 s WAV)",
        args.label,
        figures,
        render,
        module="profile_jobs",
    )


if __name__ == "__main__":
    main()
