"""The projection rules of `job.status` (docs/architecture.md §3), as pure functions.

A job only moves forward: an event that would lower its status rank or touch a final
state is recorded but ignored, and gets no event id (only applied events are numbered,
so the SSE ids have no gaps; docs/architecture.md §9); a redelivered event (same ``ce_id``) is
dropped; the visible progress never decreases (``contracts.progress_after``). An event
of a deleted job is dropped too: nothing of it is written, so a late or replayed event
cannot bring the job back (docs/architecture.md §8).
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

from contracts import JobStatus, JobStatusChanged, progress_after
from notifier import sse


@dataclass(frozen=True)
class JobSnapshot:
    """A job as clients see it: the state after one applied event.

    ``event_id`` increases per job; it is the SSE ``id:`` of this state.
    """

    job_id: str
    event_id: int
    status: JobStatus
    progress: int
    detail: str | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    time: datetime
    traceparent: str | None = None
    """The W3C trace context of the event (not shown to clients)."""
    encoded: dict[str, bytes] = field(default_factory=dict, init=False, compare=False, repr=False)
    """Bytes made from this state once and shared by every stream that sends it, by
    whoever writes them (``notifier.streams.framed``): not part of the state."""

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    def public(self) -> dict[str, Any]:
        """The JSON body of an SSE ``data:`` line and of ``GET /jobs/{id}``."""
        return {
            "job_id": self.job_id,
            "event_id": self.event_id,
            "status": self.status.value,
            "progress": self.progress,
            "detail": self.detail,
            "result": self.result,
            "error": self.error,
            "time": self.time.isoformat(),
        }

    @cached_property
    def public_json(self) -> str:
        """:meth:`public` as compact JSON, serialised once however many streams send it
        (a cached_property writes the instance ``__dict__``, so it works on a frozen
        dataclass and stays out of its fields, equality and repr)."""
        return json.dumps(self.public(), separators=(",", ":"))

    @cached_property
    def sse_event(self) -> str:
        """The SSE event of this state, formatted once for every stream that sends it
        (formatting it per stream showed in py-spy profiles of a 10,000-stream fan-out;
        issue 14)."""
        return sse.message(self.event_id, self.public_json)


class Outcome(StrEnum):
    APPLIED = "applied"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    """Already recorded under the same ``ce_id``: nothing is written."""
    DELETED = "deleted"
    """The job was deleted (it has a tombstone): nothing is written."""

    @property
    def writes(self) -> bool:
        """Whether the event is recorded in the history."""
        return self in (Outcome.APPLIED, Outcome.IGNORED)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str | None
    snapshot: JobSnapshot
    """What to record: for an applied event, the new current state. Its ``event_id``
    names an event only when applied; an ignored event is recorded without one."""


def decide(
    current: JobSnapshot | None,
    event: JobStatusChanged,
    *,
    event_id: int,
    duplicate: bool = False,
    deleted: bool = False,
) -> Decision:
    """What ``event`` (recorded as ``event_id``) does to a job whose state is ``current``."""
    progress = progress_after(None if current is None else current.progress, event.progress)
    snapshot = JobSnapshot(
        job_id=event.job_id,
        event_id=event_id,
        status=event.status,
        progress=progress,
        detail=event.detail,
        # The analysis server's own object, as it came: no well-known field added as null.
        result=(
            event.result.model_dump(mode="json", exclude_unset=True)
            if event.result is not None
            else None
        ),
        error=event.error.model_dump(mode="json") if event.error is not None else None,
        # A producer that sends a naive time means UTC (every service stamps UTC).
        time=event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC),
    )
    if deleted:
        return Decision(Outcome.DELETED, "the job was deleted", snapshot)
    if duplicate:
        return Decision(Outcome.DUPLICATE, "duplicate ce_id", snapshot)
    if current is None:
        return Decision(Outcome.APPLIED, None, snapshot)
    if current.is_final:
        return Decision(Outcome.IGNORED, f"job is already {current.status}", snapshot)
    if event.status.rank < current.status.rank:
        return Decision(
            Outcome.IGNORED,
            f"{event.status} would move the job back from {current.status}",
            snapshot,
        )
    if (event.status, progress, event.detail) == (current.status, current.progress, current.detail):
        return Decision(Outcome.IGNORED, "changes nothing", snapshot)
    return Decision(Outcome.APPLIED, None, snapshot)
