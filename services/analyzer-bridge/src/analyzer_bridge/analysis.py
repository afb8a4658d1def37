"""One job's analysis as the bridge keeps it: its state, how it ended, its row
(docs/architecture.md §3, §8). Plain data, shared by the rules and the store."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts import AudioFeatures, JobError


class State(StrEnum):
    PENDING = "pending"
    REQUESTED = "requested"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (State.COMPLETED, State.FAILED)


@dataclass(frozen=True)
class Outcome:
    """How an analysis ended: a result or an error."""

    result: AudioFeatures | None = None
    error: JobError | None = None

    @property
    def state(self) -> State:
        return State.COMPLETED if self.result is not None else State.FAILED

    @classmethod
    def failed(cls, code: str, message: str) -> "Outcome":
        return cls(error=JobError(code=code, message=message))


@dataclass(frozen=True)
class Analysis:
    """A job's row: ``pending`` from ``audio.stored`` until the analysis server accepts
    the request (``requested``), then ``completed`` or ``failed``."""

    job_id: str
    state: State
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    filename: str
    deadline: datetime
    attempts: int
    progress: int
    outcome: Outcome | None
    final_webhook_id: str | None
    finished_at: datetime | None
    published_at: datetime | None
