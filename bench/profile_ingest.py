"""Where the ingest path's CPU goes (issue 14): CPU-seconds per 200 MiB per process and
per thread group, and py-spy profiles of the gateway and the uploader.

    uv run python -m bench.profile_ingest [--rounds N] [--label NAME] [--no-pyspy]

Runs the upload benchmark's load (10×20 MiB at concurrency 4, through the edge, until
each job's ``audio.stored``) against the local stack with only the gateway and the
uploader, as ``bench.upload`` does. CPU time comes from ``/proc/<pid>/task/*/stat``
(user + system, every thread), read before and after the measured rounds, so it counts
work done, not wall time, and survives a busy machine (docs/architecture.md §13). The
Kafka JVM's threads are grouped by name (network, request handlers, GC, JIT, ...): that
is the broker's own account of where its CPU goes.

py-spy samples the gateway and the uploader in a separate round (sampling costs a
little CPU, so it is not in the measured rounds); ``--format raw`` stacks are summarised
to the functions with the most samples, by self time and by inclusive time.

Each run adds its figures under ``--label`` to ``results/profile-ingest.json`` and
rewrites ``results/profile-ingest.md`` with every label side by side, so a lever is
measured as one run before and one after it.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PERCENTILES, fresh_gateway, raise_upload_limits
from bench.report import RESULTS, load_average, machine
from bench.upload import MiB, StoredWatcher, audio, ingest_stack, pipeline_round, time_to_202
from servicekit.blocks import Blocks

PER = 200 * MiB
"""CPU is reported per this many bytes ingested, as in the issue."""

TICK = os.sysconf("SC_CLK_TCK")
PROCESSES = ("gateway", "uploader", "kafka", "s3", "edge")

# Kafka 4's JVM thread names, as /proc shows them (cut to 15 characters).
THREAD_GROUPS = (
    ("data plane (network + request handlers)", re.compile(r"^data-plane")),
    ("controller / metadata", re.compile(r"controller|metadat|raft|quorum", re.IGNORECASE)),
    ("GC", re.compile(r"GC|G1")),
    ("JIT", re.compile(r"Compiler")),
    ("JVM main / VM", re.compile(r"^java$|^VM ")),
)


def thread_ticks(pid: int) -> dict[str, int]:
    """CPU ticks (utime + stime) per thread name of a process and of its children."""
    out: Counter[str] = Counter()
    for proc in [pid, *children(pid)]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{proc}/task").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    stat = (task / "stat").read_text()
                    name = stat[stat.index("(") + 1 : stat.rindex(")")]
                    fields = stat[stat.rindex(")") + 2 :].split()
                    # Fields 14 and 15 of proc(5), counted from the state (field 3).
                    out[name] += int(fields[11]) + int(fields[12])
    return dict(out)


def children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                for child in (task / "children").read_text().split():
                    found += [int(child), *children(int(child))]
    return found


def group_of(name: str, process: str) -> str:
    if process != "kafka":
        return "all threads"
    for group, pattern in THREAD_GROUPS:
        if pattern.search(name):
            return group
    return "other"


def cpu_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], per: float
) -> dict[str, Any]:
    """Seconds per ``PER`` bytes, per process and per thread group."""
    result: dict[str, Any] = {}
    for process, ticks in after.items():
        groups: Counter[str] = Counter()
        for name, value in ticks.items():
            groups[group_of(name, process)] += value - before[process].get(name, 0)
        total = sum(groups.values())
        result[process] = {
            "cpu_s": round(total / TICK / per, 2),
            "groups": {g: round(v / TICK / per, 2) for g, v in groups.most_common()},
        }
    result["total"] = {"cpu_s": round(sum(p["cpu_s"] for p in result.values()), 2)}
    return result


@contextlib.contextmanager
def pyspy(pids: dict[str, int], folder: Path) -> Iterator[dict[str, Path]]:
    """py-spy record on each pid until the block ends (SIGINT makes it write)."""
    outputs = {name: folder / f"{name}.txt" for name in pids}
    procs = [
        subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(outputs[name]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    try:
        time.sleep(1.0)  # attached before the load starts
        yield outputs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``module.py:func``, the package kept for ours."""
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    parts = path.split("/site-packages/")[-1].split("/")
    where = "/".join(parts[-2:]) if len(parts) > 1 else parts[0]
    return f"{where}:{match['func']}"


IDLE_FRAMES = {"threading.py:Condition.wait", "queue.py:Queue.get"}


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top functions of a py-spy raw (collapsed stacks) file by self and inclusive share."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return {"samples": 0, "self": [], "inclusive": []}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";")]
        # A worker thread blocked on its queue is idle, though py-spy cannot tell.
        if not frames or frames[-1] in IDLE_FRAMES:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "self": [[f, round(100 * c / total, 1)] for f, c in own.most_common(top)],
        "inclusive": [[f, round(100 * c / total, 1)] for f, c in inclusive.most_common(top)],
    }


async def measure(rounds: int, profile: bool, raw_dir: Path | None = None) -> dict[str, Any]:
    stack = ingest_stack()
    info = stack.up(apps=True)
    try:
        fresh_gateway(info.reused)
        pids = {s.name: s.pid for s in stack.status() if s.name in PROCESSES and s.pid}
        edge = stack.edge_url
        watcher = StoredWatcher(stack.env()["KAFKA_BOOTSTRAP_SERVERS"])
        await watcher.start()
        await time_to_202(edge, 3)
        files = [audio(20 * MiB, i) for i in range(10)]
        await pipeline_round(edge, files, 4, watcher)  # warm up
        load_before = load_average()
        before = {name: thread_ticks(pid) for name, pid in pids.items()}
        speeds = [await pipeline_round(edge, files, 4, watcher) for _ in range(rounds)]
        after = {name: thread_ticks(pid) for name, pid in pids.items()}
        per = rounds * sum(map(len, files)) / PER
        profiles: dict[str, Any] = {}
        if profile:
            with tempfile.TemporaryDirectory() as scratch:
                folder = raw_dir or Path(scratch)
                folder.mkdir(parents=True, exist_ok=True)
                targets = {n: p for n, p in pids.items() if n in ("gateway", "uploader")}
                with pyspy(targets, folder) as outputs:
                    await pipeline_round(edge, files, 4, watcher)
                profiles = {name: summarise(path) for name, path in outputs.items()}
        threads = {name: thread_ticks(pid) for name, pid in pids.items()}
        await watcher.stop()
    finally:
        stack.down(only=info)
    return {
        "cpu_per_200MiB": cpu_delta(before, after, per),
        "throughput_MiBps": [round(s, 1) for s in speeds],
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rounds": rounds,
        "profiles": profiles,
        "threads": {name: dict(Counter(t).most_common(8)) for name, t in threads.items()},
    }


def _cut_bytearray(pieces: list[bytes], size: int) -> int:
    """The cutting before issue 14: grow a bytearray, slice a block, ``bytes()`` it."""
    buffer, cut = bytearray(), 0
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            cut += len(bytes(buffer[:size]))
            del buffer[:size]
    return cut + len(bytes(buffer))


def _cut_blocks(pieces: list[bytes], size: int) -> int:
    blocks, cut = Blocks(size, bytes), 0
    for piece in pieces:
        cut += sum(map(len, blocks.add(piece)))
    return cut + len(blocks.rest())


def copies(rounds: int = 5) -> dict[str, Any]:
    """CPU-seconds per 200 MiB of cutting pieces into blocks, bytearray vs Blocks, in
    this process, interleaved: the gateway's case (64 KiB body pieces into 512 KiB
    chunks) and the uploader's (512 KiB chunks into 8 MiB parts)."""
    out: dict[str, Any] = {}
    for case, piece, size in (
        ("gateway", 64 * 1024, 512 * 1024),
        ("uploader", 512 * 1024, 8 * MiB),
    ):
        block = os.urandom(piece)
        pieces = [block] * (PER // piece)
        timings: dict[str, list[float]] = {"bytearray": [], "Blocks": []}
        for _ in range(rounds):
            for name, cut in (("bytearray", _cut_bytearray), ("Blocks", _cut_blocks)):
                start = time.process_time()
                assert cut(pieces, size) == PER
                timings[name].append(time.process_time() - start)
        out[case] = {name: round(min(t), 3) for name, t in timings.items()}
    return out


def render(runs: dict[str, Any], meta: dict[str, str]) -> str:
    labels = list(runs)
    lines = [
        "# Ingest path: CPU-seconds per 200 MiB, per process",
        "",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}` (once per label)",
        f"- percentiles: {meta['percentiles']}",
        "- load: 10×20 MiB at concurrency 4 through the edge until `audio.stored`, "
        "CPU from /proc (user + system, all threads) over the measured rounds",
        "",
        "| process | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
    ]
    for process in [*PROCESSES, "total"]:
        cells = [
            str(runs[label]["cpu_per_200MiB"].get(process, {}).get("cpu_s", "")) for label in labels
        ]
        lines.append(f"| {process} | " + " | ".join(cells) + " |")
    lines.append(
        "| throughput, MiB/s (rounds) | "
        + " | ".join(", ".join(map(str, runs[label]["throughput_MiBps"])) for label in labels)
        + " |"
    )
    lines.append(
        "| load average before → after | "
        + " | ".join(
            f"{runs[label]['load_average_before']} → {runs[label]['load_average_after']}"
            for label in labels
        )
        + " |"
    )
    lines += ["", "## Kafka broker threads (CPU-s per 200 MiB)", ""]
    lines += ["| thread group | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    groups: list[str] = []
    for label in labels:
        for g in runs[label]["cpu_per_200MiB"].get("kafka", {}).get("groups", {}):
            if g not in groups:
                groups.append(g)
    for g in groups:
        cells = [
            str(runs[label]["cpu_per_200MiB"].get("kafka", {}).get("groups", {}).get(g, ""))
            for label in labels
        ]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    for label in labels:
        for name, prof in runs[label].get("profiles", {}).items():
            if not prof.get("samples"):
                continue
            lines += [
                "",
                f"## py-spy, {name}, {label} ({prof['samples']} samples at 200 Hz, idle excluded)",
                "",
                "| self % | function | | inclusive % | function |",
                "| --- | --- | --- | --- | --- |",
            ]
            for (sf, sp), (inf, ip) in zip(prof["self"], prof["inclusive"], strict=False):
                lines.append(f"| {sp} | `{sf}` | | {ip} | `{inf}` |")
    cuts = meta.get("copies")
    if isinstance(cuts, dict):
        lines += [
            "",
            "## Cutting pieces into chunks/parts, CPU-s per 200 MiB, in-process "
            "(best of 5, interleaved)",
            "",
            "| case | bytearray (before) | servicekit.blocks.Blocks (after) |",
            "| --- | --- | --- |",
        ]
        for case, t in cuts.items():
            lines.append(f"| {case} | {t['bytearray']} | {t['Blocks']} |")
    notes = meta.get("notes")
    if notes:
        lines += ["", "## Findings", "", notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    raise_upload_limits()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="current", help="the column these figures fill")
    parser.add_argument("--no-pyspy", action="store_true")
    parser.add_argument("--raw-dir", type=Path, help="keep py-spy's raw stacks here")
    parser.add_argument(
        "--copies", action="store_true", help="only the in-process cutting comparison"
    )
    args = parser.parse_args()
    if args.copies:
        update(copies=copies())
        return
    update(
        label=args.label, figures=asyncio.run(measure(args.rounds, not args.no_pyspy, args.raw_dir))
    )


def update(
    label: str | None = None,
    figures: dict[str, Any] | None = None,
    copies: dict[str, Any] | None = None,
) -> None:
    """Merge one run into results/profile-ingest.json and rewrite the markdown."""
    path = RESULTS / "profile-ingest.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    runs = saved.get("runs", {})
    if label is not None:
        runs[label] = figures
    meta = {
        "title": "Ingest path: CPU-seconds per 200 MiB, per process",
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "uv run python -m bench.profile_ingest --label <label>",
        "percentiles": PERCENTILES,
        "notes": saved.get("notes", ""),
        "copies": copies or saved.get("copies"),
    }
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({**meta, "runs": runs}, indent=2, ensure_ascii=False) + "\n")
    markdown = render(runs, meta)
    (RESULTS / "profile-ingest.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
