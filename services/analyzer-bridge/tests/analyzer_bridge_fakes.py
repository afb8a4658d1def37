"""Fakes of the bridge's ports (analyzer_bridge.ports), for unit tests of its rules and
handler. They keep what they were given in plain dicts and lists to assert on; the
store follows the conditions of the SQL in adapters/postgres.py."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from analyzer_bridge.analysis import Analysis, Outcome, State
from analyzer_bridge.capability import Capabilities
from analyzer_bridge.deadlines import Sweeper
from analyzer_bridge.finishing import Finisher
from analyzer_bridge.ports import (
    DependencyUnavailable,
    PublishError,
    ServerAnswer,
    ServerUnreachable,
)
from analyzer_bridge.requesting import Requester
from contracts import (
    AnalysisCompleted,
    AnalysisFailed,
    AnalysisRequest,
    AudioStored,
    JobStatusChanged,
)


def now() -> datetime:
    return datetime.now(UTC)


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, Analysis] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}
        self.tombstones: set[str] = set()
        self.down = 0
        """Calls left that fail as if the database were gone."""

    def _call(self) -> None:
        if self.down:
            self.down -= 1
            raise DependencyUnavailable("postgresql", detail="the fake is down")

    def put(self, row: Analysis) -> None:
        self.rows[row.job_id] = row

    def _update(self, job_id: str, **changes: object) -> Analysis:
        row = dataclasses.replace(self.rows[job_id], **changes)  # type: ignore[arg-type]
        self.rows[job_id] = row
        return row

    def _free(self, job_id: str, owner: str | None = None) -> bool:
        lease = self.leases.get(job_id)
        return lease is None or lease[1] < now() or lease[0] == owner

    async def ping(self) -> bool:
        self._call()
        return True

    async def insert_pending(
        self,
        event: AudioStored,
        deadline_seconds: float,
        *,
        owner: str | None = None,
        lease_seconds: float = 0.0,
    ) -> Analysis | None:
        self._call()
        if event.job_id in self.rows or event.job_id in self.tombstones:
            return None
        if owner is not None:
            self.leases[event.job_id] = (owner, now() + timedelta(seconds=lease_seconds))
        row = self.rows[event.job_id] = Analysis(
            job_id=event.job_id,
            state=State.PENDING,
            bucket=event.bucket,
            key=event.key,
            size=event.size,
            sha256=event.sha256,
            content_type=event.content_type,
            filename=event.filename,
            deadline=now() + timedelta(seconds=deadline_seconds),
            attempts=0 if owner is None else 1,
            progress=0,
            outcome=None,
            final_webhook_id=None,
            finished_at=None,
            published_at=None,
        )
        return row

    async def get(self, job_id: str) -> Analysis | None:
        self._call()
        return self.rows.get(job_id)

    async def take_attempt(self, job_id: str, owner: str, lease_seconds: float) -> Analysis | None:
        self._call()
        row = self.rows.get(job_id)
        if row is None or row.state is not State.PENDING or row.deadline <= now():
            return None
        if not self._free(job_id, owner):
            return None
        self.leases[job_id] = (owner, now() + timedelta(seconds=lease_seconds))
        return self._update(job_id, attempts=row.attempts + 1)

    async def extend_lease(self, job_id: str, owner: str, lease_seconds: float) -> None:
        self._call()
        if self.leases.get(job_id, ("",))[0] == owner:
            self.leases[job_id] = (owner, now() + timedelta(seconds=lease_seconds))

    async def release_leases(self, owner: str) -> None:
        self._call()
        for job_id, (holder, _) in list(self.leases.items()):
            if holder == owner:
                del self.leases[job_id]

    async def mark_requested(self, job_id: str, progress: int) -> int | None:
        self._call()
        row = self.rows.get(job_id)
        if row is None or row.state is not State.PENDING:
            return None
        self.leases.pop(job_id, None)
        self._update(job_id, state=State.REQUESTED, progress=max(row.progress, progress))
        return row.progress

    async def raise_progress(self, job_id: str, progress: int) -> bool:
        self._call()
        row = self.rows.get(job_id)
        if row is None or row.state.is_final or row.progress >= progress:
            return False
        self._update(job_id, progress=progress)
        return True

    async def claim_final(
        self, job_id: str, outcome: Outcome, webhook_id: str | None = None
    ) -> Analysis | None:
        self._call()
        row = self.rows.get(job_id)
        if row is None or row.state.is_final:
            return None
        self.leases.pop(job_id, None)
        return self._update(
            job_id,
            state=outcome.state,
            outcome=outcome,
            final_webhook_id=webhook_id,
            finished_at=now(),
        )

    async def mark_published(self, job_id: str) -> None:
        self._call()
        if self.rows[job_id].published_at is None:
            self._update(job_id, published_at=now())

    async def expired(self, limit: int = 100) -> list[str]:
        self._call()
        return [
            r.job_id for r in self.rows.values() if not r.state.is_final and r.deadline < now()
        ][:limit]

    async def unpublished(self, older_than_seconds: float, limit: int = 100) -> list[Analysis]:
        self._call()
        before = now() - timedelta(seconds=older_than_seconds)
        return [
            r
            for r in self.rows.values()
            if r.published_at is None and r.finished_at is not None and r.finished_at < before
        ][:limit]

    async def orphaned_pending(self, limit: int = 100) -> list[str]:
        self._call()
        return [
            r.job_id
            for r in self.rows.values()
            if r.state is State.PENDING and r.deadline > now() and self._free(r.job_id)
        ][:limit]

    async def erase(self, job_id: str) -> None:
        self._call()
        self.tombstones.add(job_id)
        self.rows.pop(job_id, None)
        self.leases.pop(job_id, None)

    async def deleted(self, job_id: str) -> bool:
        self._call()
        return job_id in self.tombstones

    async def prune(self, finished_seconds: float, tombstone_seconds: float) -> tuple[int, int]:
        self._call()
        before = now() - timedelta(seconds=finished_seconds)
        old = [
            r.job_id
            for r in self.rows.values()
            if finished_seconds > 0
            and r.published_at is not None
            and r.finished_at is not None
            and r.finished_at < before
        ]
        for job_id in old:
            del self.rows[job_id]
        return len(old), 0


class FakeEvents:
    def __init__(self) -> None:
        self.results: list[tuple[str, AnalysisCompleted | AnalysisFailed]] = []
        self.statuses: list[tuple[str, JobStatusChanged]] = []
        self.dead: list[tuple[str, str]] = []
        self.down = False

    async def result(self, event: AnalysisCompleted | AnalysisFailed, ce_id: str) -> None:
        if self.down:
            raise PublishError("the fake broker is down")
        self.results.append((ce_id, event))

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        if self.down:
            raise PublishError("the fake broker is down")
        self.statuses.append((ce_id, event))

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        self.dead.append((topic, reason))

    def of(self, job_id: str) -> list[tuple[str, int]]:
        return [(e.status.value, e.progress) for _, e in self.statuses if e.job_id == job_id]


class FakeServer:
    """Answers from a script (202 once it runs out); ``None`` in it means unreachable."""

    def __init__(self, *answers: ServerAnswer | None) -> None:
        self.script = list(answers)
        self.requests: list[AnalysisRequest] = []

    async def analyze(self, request: AnalysisRequest) -> ServerAnswer:
        self.requests.append(request)
        answer = self.script.pop(0) if self.script else ServerAnswer(202)
        if answer is None:
            raise ServerUnreachable("ConnectError: refused")
        return answer


class FakePresigner:
    async def presign_get(self, bucket: str, key: str) -> str:
        return f"http://s3.test/{bucket}/{key}?signed"


class Sleeps:
    """An injected ``sleep`` that only records the delays asked for; the call number
    ``stop_after`` is cancelled instead, which ends a loop that never ends by itself."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) == self.stop_after:
            raise asyncio.CancelledError


SECRET = "unit-test-webhook-capability-secret-of-some-length"
JOB = "5f0c8a1e-0000-4000-8000-00000000b001"


def stored(job_id: str = JOB) -> AudioStored:
    return AudioStored(
        job_id=job_id,
        bucket="b",
        key=f"audio/{job_id}",
        size=3,
        sha256="0" * 64,
        content_type="audio/wav",
        filename="take.wav",
    )


@dataclasses.dataclass
class Rules:
    """The bridge's rules over fakes: what each unit test starts from."""

    store: FakeStore
    events: FakeEvents
    server: FakeServer
    sleeps: Sleeps
    finisher: Finisher
    requester: Requester
    sweeper: Sweeper


def rules(
    *answers: ServerAnswer | None,
    server: FakeServer | None = None,
    max_attempts: int = 3,
    deadline_seconds: float = 600,
    sleeps: Sleeps | None = None,
) -> Rules:
    store, events, sleeps = FakeStore(), FakeEvents(), sleeps or Sleeps()
    server = server or FakeServer(*answers)
    finisher = Finisher(store, events)
    requester = Requester(
        store=store,
        server=server,
        presigner=FakePresigner(),
        capabilities=Capabilities(SECRET, 3600),
        finisher=finisher,
        public_base_url="http://edge.test/",
        max_attempts=max_attempts,
        base_delay=0.5,
        max_delay=30,
        lease_seconds=60,
        metadata={"reference.mode": "normal"},
        jitter=lambda: 0.5,
        sleep=sleeps,
    )
    sweeper = Sweeper(
        store,
        finisher,
        requester,
        interval_seconds=2,
        deadline_seconds=deadline_seconds,
        sleep=sleeps,
    )
    return Rules(store, events, server, sleeps, finisher, requester, sweeper)
