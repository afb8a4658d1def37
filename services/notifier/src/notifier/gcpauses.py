"""The garbage collector of a process holding tens of thousands of streams (issue 14).

Every open stream is a few dozen long-lived container objects (its task, coroutine
frames, subscription, the server's protocol and scope), so a full collection walks all
of them and pauses every stream at once. Two measures:

- :func:`settle` after start-up: what start-up left (modules, the app, settings) moves
  to the permanent generation (``gc.freeze``), so that no collection walks it again,
  and the youngest generation is collected less often (a larger first threshold), which
  also promotes fewer short-lived objects.
- :func:`watch`: every pause, start to stop as ``gc.callbacks`` report it, goes to the
  ``audiopipe_gc_pause_seconds`` histogram (by generation), which ``/metrics`` serves and
  the SSE benchmark reads before and after its fan-out.
"""

import gc
import time
from typing import Any

from prometheus_client import Histogram

GC_PAUSES = Histogram(
    "audiopipe_gc_pause_seconds",
    "Garbage-collector pauses, gc.callbacks start to stop, by generation.",
    ["generation"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)

FIRST_THRESHOLD = 10_000
"""Allocations (less deallocations) of container objects between young collections;
CPython's default is 700."""

_started = 0.0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
    else:
        GC_PAUSES.labels(str(info["generation"])).observe(time.perf_counter() - _started)


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
