"""Contracts of the audiopipe services: topics, CloudEvents headers, event models and
the analysis server's HTTP contract. Pure data; no service logic."""

from contracts import headers, topics
from contracts.analysis import AnalysisRequest, AnalysisWebhook, AudioFeatures, WebhookStatus
from contracts.events import (
    CE_TYPE_OF,
    EVENT_TYPES,
    AnalysisCompleted,
    AnalysisFailed,
    AudioStored,
    CeType,
    DeletionReason,
    Erase,
    Event,
    JobDeleted,
    JobStatusChanged,
    UploadAborted,
    UploadFinished,
    UploadStarted,
)
from contracts.jobs import ErrorCode, JobError, JobStatus, progress_after, stage_progress

__all__ = [
    "CE_TYPE_OF",
    "EVENT_TYPES",
    "AnalysisCompleted",
    "AnalysisFailed",
    "AnalysisRequest",
    "AnalysisWebhook",
    "AudioFeatures",
    "AudioStored",
    "CeType",
    "DeletionReason",
    "Erase",
    "ErrorCode",
    "Event",
    "JobDeleted",
    "JobError",
    "JobStatus",
    "JobStatusChanged",
    "UploadAborted",
    "UploadFinished",
    "UploadStarted",
    "WebhookStatus",
    "headers",
    "progress_after",
    "stage_progress",
    "topics",
]
