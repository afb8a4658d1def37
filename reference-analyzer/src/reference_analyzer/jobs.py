"""What the server has seen of each job, for the debug endpoint ``GET /jobs/{job_id}``.

Tests use it to wait for a condition ("the analysis has finished") instead of
sleeping, e.g. to check that a ``silent`` job really sent nothing. In memory and
bounded: the oldest idle jobs are forgotten first.
"""

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from contracts import AnalysisWebhook


@dataclass
class JobRecord:
    job_id: str
    requests: int = 0
    """``POST /analyze`` calls received for this job, whatever the answer."""
    accepted: int = 0
    """Of those, answered ``202`` (each starts an analysis run)."""
    finished: int = 0
    """Runs that have ended (cancelled runs included)."""
    final: AnalysisWebhook | None = None
    """The final message of the last finished run, whether or not it was sent."""
    delivered: Counter[str] = field(default_factory=Counter)
    """Webhooks acknowledged with 2xx, by status."""
    undelivered: int = 0
    replayed: int = 0
    """Requests answered as replays of one that had started a run; they start none."""
    stopped: int = 0
    """Runs stopped at their request's deadline; they send nothing more."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def running(self) -> int:
        return self.accepted - self.finished


class JobRegistry:
    def __init__(self, max_jobs: int = 10_000) -> None:
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._max_jobs = max_jobs

    def get(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def note_request(self, job_id: str) -> JobRecord:
        record = self._jobs.get(job_id)
        if record is None:
            record = self._jobs[job_id] = JobRecord(job_id)
            self._forget_oldest()
        self._jobs.move_to_end(job_id)
        record.requests += 1
        return record

    def run_started(self, record: JobRecord) -> None:
        record.accepted += 1
        record.idle.clear()

    def run_stopped(self, record: JobRecord) -> None:
        record.stopped += 1

    def run_finished(self, record: JobRecord, final: AnalysisWebhook | None) -> None:
        record.finished += 1
        if final is not None:
            record.final = final
        if record.running == 0:
            record.idle.set()

    def _forget_oldest(self) -> None:
        excess = len(self._jobs) - self._max_jobs
        for job_id in [j for j, r in self._jobs.items() if r.running == 0][: max(excess, 0)]:
            del self._jobs[job_id]
