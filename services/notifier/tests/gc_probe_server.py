"""The notifier app served as ``python -m notifier`` serves it (uvicorn, httptools,
uvloop), over an in-memory history, for ``test_gc_cycles.py``: run as a script.

    python gc_probe_server.py PORT OUT

SIGUSR2 sends the final event of every job that has an open stream (the streams end
from the server's side); SIGUSR1 runs a full collection with ``gc.DEBUG_SAVEALL`` and
writes what it found unreachable since the previous one to ``OUT/probe<n>.json``. The
collector runs only then (``gc.disable()``), so no cycle is freed unseen in between.
"""

import asyncio
import collections
import gc
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from pydantic import SecretStr

from contracts import JobStatus
from notifier.app import create_app
from notifier.deps import Services
from notifier.projection import JobSnapshot
from notifier.settings import Settings
from servicekit.serve import server
from servicekit.service import service_of

SECRET = "notifier-gc-probe-secret-32-bytes-long"


def _snapshot(job_id: str, event_id: int, status: JobStatus) -> JobSnapshot:
    return JobSnapshot(job_id, event_id, status, 10 * event_id, None, None, None, datetime.now(UTC))


class _History:
    """Every job has one applied, non-final event: a stream opens and then waits."""

    async def current(self, job_id: str) -> JobSnapshot:
        return _snapshot(job_id, 1, JobStatus.UPLOADING)

    async def applied_after(self, job_id: str, event_id: int) -> list[Any]:
        return []


def main(port: int, out: Path) -> None:
    gc.disable()
    # One client opens every stream: its share is the whole process here.
    settings = Settings(
        job_token_secret=SecretStr(SECRET), http_port=port, sse_max_streams_per_client=10_000
    )
    app = create_app(settings)
    services = service_of(app).get(Services)
    services.history = _History()
    running = server(app, settings, lifespan="off", detached=True)
    probes = 0

    def probe() -> None:
        nonlocal probes
        probes += 1
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            found = gc.collect()
            kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
        finally:
            gc.garbage.clear()
            gc.set_debug(0)
        # DEBUG_SAVEALL kept what it found alive in gc.garbage; cleared, it is cyclic
        # garbage again, which the next probe would count once more: free it now.
        gc.collect()
        report = {"unreachable": found, "types": dict(kinds.most_common(40))}
        (out / f"probe{probes}.json").write_text(json.dumps(report))

    def finish() -> None:
        for job in list(services.fanout._subscribers):
            services.fanout.publish(_snapshot(job, 2, JobStatus.COMPLETED))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, probe)
        loop.add_signal_handler(signal.SIGUSR2, finish)
        await running.serve()

    uvloop.run(serve())


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
