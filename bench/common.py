"""What every benchmark measures the same way (docs/architecture.md §13): free ports, a
process's memory and CPU time from ``/proc``, and percentiles.

**Percentiles, one definition.** The q-th percentile of n samples is found at rank
q/100·(n-1) of the sorted samples (counted from 0), interpolated linearly between the
two samples around it: Hyndman and Fan's type 7, numpy's default, and the standard
library's ``statistics.quantiles(..., method="inclusive")``, which computes it here.
p50 is therefore the median (the middle sample, or the mean of the two middle ones,
as ``statistics.median`` gives it); p99 of fewer than 100 samples lies between the
two largest. Every results file names this definition (:data:`PERCENTILES`, written by
``bench.report.write``).
"""

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.limits import TEST_UPLOAD_LIMITS
from tests.support.processes import free_port

__all__ = [
    "PERCENTILES",
    "consumer_lag",
    "cpu_seconds",
    "cpu_spent",
    "draining",
    "free_port",
    "fresh_gateway",
    "percentile",
    "raise_upload_limits",
    "rss_kib",
    "settled",
    "without_retention",
]

PERCENTILES = (
    "pN is the sorted samples' value at rank N/100·(n-1), interpolated linearly between "
    "the two closest ranks (Hyndman–Fan type 7, numpy's default, Python's "
    "statistics.quantiles(method='inclusive')); p50 is the median"
)
"""The definition of every percentile in ``bench/results`` (see the module)."""


def percentile(values: Iterable[float], q: int) -> float:
    """The ``q``-th percentile (1–99) of ``values`` (see the module)."""
    samples = list(values)
    if not 0 < q < 100:
        raise ValueError(f"a percentile is between 1 and 99, not {q}")
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its descendants, all their threads
    (``/proc/<pid>/stat`` fields 14-17 of each: a process's own time and its reaped
    children's, so PostgreSQL's backends count whether they still run or have ended)."""
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while listed
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = sum(int(f) for f in fields[11:15])
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0)
        todo += children.get(current, [])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def cpu_spent(into: dict[str, float], pids: dict[str, int]) -> Iterator[None]:
    """Add to ``into`` the CPU-seconds each of ``pids`` (with its descendants, as
    :func:`cpu_seconds` counts) spent while the block ran."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    yield
    for name, pid in pids.items():
        into[name] = into.get(name, 0.0) + cpu_seconds(pid) - before[name]


def raise_upload_limits() -> None:
    """Raise the gateway's fair-use limits (docs/architecture.md §6) for every gateway
    this benchmark starts: one client drives it, far faster than a person, as in the
    tests (``tests/support/limits.py``). The limits are still counted."""
    os.environ.update(TEST_UPLOAD_LIMITS)


def without_retention() -> None:
    """Keep what the stack this benchmark starts stores (``AUDIO_RETENTION_SECONDS`` and
    ``JOB_RETENTION_SECONDS`` 0): otherwise the sweeps erase the jobs of runs some
    minutes before (the devstack keeps audio 15 min) while this one runs, and their
    deletions' work, a share that depends on what ran before, counts as this run's."""
    os.environ.update({"AUDIO_RETENTION_SECONDS": "0", "JOB_RETENTION_SECONDS": "0"})


def fresh_gateway(reused: Iterable[str]) -> None:
    """Stop with a clear word when the stack's gateway was already running: it keeps the
    limits it was started with (``make run``'s refuse a benchmark's load)."""
    if "gateway" in set(reused):
        raise SystemExit(
            "the local stack's gateway was already running, with its own fair-use limits; "
            "stop it (make stop) and run the benchmark again"
        )


async def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Records not yet consumed, by consumer group: every group's committed offsets
    against the ends of their partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await ends.start()
        try:
            lag: dict[str, int] = {}
            for group, *_ in await admin.list_consumer_groups():
                committed = await admin.list_consumer_group_offsets(group)
                known = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
                if known:
                    end = await ends.end_offsets(list(known))
                    lag[group] = sum(max(end[tp] - offset, 0) for tp, offset in known.items())
            return lag
        finally:
            await ends.stop()
    finally:
        await admin.close()


def draining(before: dict[str, int], now: dict[str, int]) -> dict[str, int]:
    """The groups whose lag fell between two looks: still working through records that
    were there before (a group nobody consumes keeps its lag, and does not count)."""
    return {group: lag for group, lag in now.items() if lag < before.get(group, lag)}


async def settled(bootstrap: str, every: float = 5.0, give_up_after: float = 900.0) -> None:
    """Return once no consumer group of the stack is still draining earlier records.

    A stack started on an old run folder may spend minutes on work from before (a
    retention sweep's deletions: some 30,000 once, which doubled a job's measured CPU);
    a benchmark that starts meanwhile counts that work as its jobs'."""
    before = await consumer_lag(bootstrap)
    deadline = time.monotonic() + give_up_after
    while True:
        await asyncio.sleep(every)
        now = await consumer_lag(bootstrap)
        busy = draining(before, now)
        if not busy:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the stack is still draining earlier records: {busy}")
        print(f"waiting for the stack to finish earlier work (records left: {busy})", flush=True)
        before = now
