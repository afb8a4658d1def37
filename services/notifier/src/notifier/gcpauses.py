"""The garbage collector of a process holding tens of thousands of streams (issue 14).

Every open stream is a dozen or so long-lived container objects (its record, the
server's protocol, its parser and flow control, the transport), so a full collection
walks all of them and pauses every stream at once. Three measures:

- :func:`settle` after start-up: what start-up left (modules, the app, settings) moves
  to the permanent generation (``gc.freeze``), so that no collection walks it again,
  and the youngest generation is collected less often (a larger first threshold), which
  also promotes fewer short-lived objects.
- :func:`stream_opened`: as streams open, every :data:`FREEZE_EVERY` of them the
  objects they keep are frozen too (a collection first, which walks only what is not
  frozen yet, so it is short), so that no later collection walks an open stream's
  objects again: full collections during a fan-out stay as short as the objects made
  since the last freeze. A frozen object is still freed by reference counting when its
  stream ends; only a reference cycle among frozen objects would stay, and a closed
  stream leaves none (``tests/test_gc_cycles.py`` checks it on uvloop, as served).
- :func:`watch`: every pause, start to stop as ``gc.callbacks`` report it, goes to the
  ``audiopipe_gc_pause_seconds`` histogram (by generation; its CPU time in
  ``audiopipe_gc_pause_cpu_seconds``), which ``/metrics`` serves and
  the SSE benchmark reads before and after its fan-out.
"""

import asyncio
import gc
import time
from typing import Any

from prometheus_client import Histogram

_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
GC_PAUSES = Histogram(
    "audiopipe_gc_pause_seconds",
    "Garbage-collector pauses, gc.callbacks start to stop, by generation.",
    ["generation"],
    buckets=_BUCKETS,
)
GC_PAUSES_CPU = Histogram(
    "audiopipe_gc_pause_cpu_seconds",
    "The same pauses in this thread's CPU time: the collector's own work, without the "
    "time the process waited for a core (a busy machine can stretch a pause's wall time).",
    ["generation"],
    buckets=_BUCKETS,
)

FIRST_THRESHOLD = 10_000
"""Allocations (less deallocations) of container objects between young collections;
CPython's default is 700."""

FREEZE_EVERY = 1000
"""Streams opened between two freezes: each freeze's collection walks about this many
streams' objects (a few milliseconds), and a burst of openings freezes a few times."""

_started = _started_cpu = 0.0
_opened = 0
_freezing = False


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _started, _started_cpu
    if phase == "start":
        _started, _started_cpu = time.perf_counter(), time.thread_time()
    else:
        generation = str(info["generation"])
        GC_PAUSES.labels(generation).observe(time.perf_counter() - _started)
        GC_PAUSES_CPU.labels(generation).observe(time.thread_time() - _started_cpu)


def watch() -> None:
    """Record every collection's pause from now on (once per process)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def settle() -> None:
    """Freeze what start-up built and space the young collections (see the module)."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_THRESHOLD, second, third)


def stream_opened() -> None:
    """Count an opened stream; every :data:`FREEZE_EVERY`, freeze soon after (see the
    module), from the loop rather than inside the request that reached the count."""
    global _opened, _freezing
    _opened += 1
    if _opened >= FREEZE_EVERY and not _freezing:
        _freezing = True
        asyncio.get_running_loop().call_soon(_freeze)


def _freeze() -> None:
    global _opened, _freezing
    _opened, _freezing = 0, False
    gc.collect()
    gc.freeze()
