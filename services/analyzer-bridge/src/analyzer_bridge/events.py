"""Where the bridge's events go: ``analysis.result`` and ``job.status`` (docs/architecture.md §4).

Every ``ce_id`` is derived from what happened, so a republished event carries the id
of the first publish and readers drop the duplicate.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from faststream.kafka import KafkaBroker

from contracts import (
    AnalysisCompleted,
    AnalysisFailed,
    Event,
    JobStatus,
    JobStatusChanged,
    stage_progress,
)
from servicekit.kafka import publish_event

SOURCE = "analyzer-bridge"


class EventSink(Protocol):
    async def publish(self, topic: str, event: Event, ce_id: str) -> None: ...


class KafkaEvents:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, topic: str, event: Event, ce_id: str) -> None:
        await publish_event(self._broker, topic, event, source=SOURCE, ce_id=ce_id)


@dataclass(frozen=True)
class Topics:
    analysis_result: str
    job_status: str


def analyzing(job_id: str, progress: int, detail: str) -> tuple[JobStatusChanged, str]:
    event = JobStatusChanged(
        job_id=job_id, status=JobStatus.ANALYZING, progress=progress, detail=detail
    )
    return event, f"{job_id}:status:analyzing:{progress}"


ANALYZING_START = stage_progress(JobStatus.ANALYZING, 0)


def final_events(
    job_id: str,
    result: AnalysisCompleted | AnalysisFailed,
    at: datetime,
) -> tuple[tuple[AnalysisCompleted | AnalysisFailed, str], tuple[JobStatusChanged, str]]:
    """The ``analysis.result`` event and the final ``job.status`` of a job, with their ids."""
    if isinstance(result, AnalysisCompleted):
        status = JobStatusChanged(
            job_id=job_id,
            status=JobStatus.COMPLETED,
            progress=stage_progress(JobStatus.COMPLETED),
            detail="analysis completed",
            result=result.result,
            time=at,
        )
    else:
        status = JobStatusChanged(
            job_id=job_id,
            status=JobStatus.FAILED,
            progress=stage_progress(JobStatus.FAILED),
            detail=result.error.message,
            error=result.error,
            time=at,
        )
    return (result, f"{job_id}:analysis-result"), (status, f"{job_id}:status:final")
