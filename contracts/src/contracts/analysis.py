"""The HTTP contract between the analyzer-bridge and an analysis server (DESIGN §7).

The bridge calls ``POST {ANALYSIS_SERVER_URL}/analyze`` with an :class:`AnalysisRequest`
and expects ``202``. The analysis server later POSTs :class:`AnalysisWebhook` bodies to
the request's ``webhook_url``: any number of ``progress`` calls, then one ``completed``
or ``failed``.
"""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.jobs import JobError


class AudioFeatures(BaseModel):
    """Features computed from the decoded audio."""

    model_config = ConfigDict(frozen=True)

    duration_seconds: float = Field(ge=0, description="Length of the audio in seconds.")
    sample_rate: int = Field(gt=0, description="Samples per second per channel (Hz).")
    channels: int = Field(gt=0, description="Number of audio channels.")
    frames: int = Field(ge=0, description="Samples per channel.")
    rms_dbfs: float = Field(
        description="Root-mean-square level over all samples, dB relative to full scale "
        "(-inf for digital silence is reported as -120)."
    )
    peak_dbfs: float = Field(description="Highest absolute sample level, dBFS.")
    silence_ratio: float = Field(
        ge=0, le=1, description="Share of 10 ms windows whose RMS is below -60 dBFS."
    )
    format: str = Field(default="", description="Container format, e.g. `WAV`, `FLAC`.")
    subtype: str = Field(default="", description="Sample encoding, e.g. `PCM_16`.")
    envelope: list[float] = Field(
        default_factory=list,
        description="Peak level per equal slice of the audio, 0..1 of full scale, "
        "at most 200 points; for drawing a waveform overview.",
    )


class AnalysisRequest(BaseModel):
    """Body of ``POST /analyze``."""

    job_id: str = Field(description="The job the audio belongs to.")
    audio_url: str = Field(description="Short-lived presigned GET URL of the audio.")
    content_type: str = Field(description="Media type of the audio as uploaded.")
    size: int = Field(ge=0, description="Size of the audio in bytes.")
    sha256: str = Field(description="Hex sha256 of the audio bytes.")
    webhook_url: str = Field(
        description="Where to POST progress and the result; a per-job capability URL."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, description="Opaque key/values to echo or interpret."
    )


class WebhookStatus(StrEnum):
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"


class AnalysisWebhook(BaseModel):
    """Body the analysis server POSTs to the ``webhook_url``."""

    job_id: str
    status: WebhookStatus
    progress: int | None = Field(default=None, ge=0, le=100)
    result: AudioFeatures | None = None
    error: JobError | None = None

    @model_validator(mode="after")
    def _status_carries_its_payload(self) -> "AnalysisWebhook":
        if self.status is WebhookStatus.PROGRESS and self.progress is None:
            raise ValueError("a progress webhook needs `progress`")
        if self.status is WebhookStatus.COMPLETED and self.result is None:
            raise ValueError("a completed webhook needs `result`")
        if self.status is WebhookStatus.FAILED and self.error is None:
            raise ValueError("a failed webhook needs `error`")
        return self
