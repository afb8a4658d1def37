"""Kafka topic names. Every topic is keyed by ``job_id`` so that one job's events stay
in order in one partition (docs/architecture.md §4)."""

from typing import Final

AUDIO_UPLOAD: Final = "audio.upload"
"""Gateway → uploader: ``started``, raw ``chunk`` messages, ``finished`` or ``aborted``."""

AUDIO_STORED: Final = "audio.stored"
"""Uploader → analyzer-bridge and any subscriber: the audio is durably in S3."""

ANALYSIS_RESULT: Final = "analysis.result"
"""Analyzer-bridge → any subscriber: the analysis server's final answer for a job."""

JOB_STATUS: Final = "job.status"
"""All services → notifier and any subscriber: every lifecycle transition of a job."""

JOB_DELETED: Final = "job.deleted"
"""Notifier (a deletion asked for) and the retention sweepers → every service and every
subscriber: erase what you hold of the job (docs/architecture.md, "Data lifecycle")."""

ALL: Final = (AUDIO_UPLOAD, AUDIO_STORED, ANALYSIS_RESULT, JOB_STATUS, JOB_DELETED)

DLQ_SUFFIX: Final = ".dlq"


def dead_letter(topic: str) -> str:
    """The dead-letter topic for ``topic``: poison messages go there with the reason."""
    return topic + DLQ_SUFFIX
