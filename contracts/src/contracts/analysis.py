"""The HTTP contract between the analyzer-bridge and an analysis server (docs/architecture.md §7).

The bridge calls ``POST {ANALYSIS_SERVER_URL}/analyze`` with an :class:`AnalysisRequest`
and expects ``202``. The analysis server later POSTs :class:`AnalysisWebhook` bodies to
the request's ``webhook_url``: any number of ``progress`` calls, then one ``completed``
or ``failed``.
"""

from enum import StrEnum
from typing import Any, cast

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from contracts.jobs import JobError


class AudioFeatures(BaseModel):
    """The analysis server's result: its own JSON object, carried through unchanged.

    Any analysis server may report any fields; the bridge, the events, SSE and
    ``GET /jobs`` pass the object on as it came (docs/architecture.md, "Analysis server
    contract"). The fields below are the well-known ones, those the reference analysis
    server computes: each is optional, and typed where present, so that a reader can
    rely on ``duration_seconds`` being a number whenever it is there. Unknown fields
    are kept.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    duration_seconds: float | None = Field(
        default=None, ge=0, description="Length of the audio in seconds, from the decoded samples."
    )
    sample_rate: int | None = Field(
        default=None, gt=0, description="Samples per second per channel (Hz)."
    )
    channels: int | None = Field(default=None, gt=0, description="Number of audio channels.")
    frames: int | None = Field(default=None, ge=0, description="Samples per channel.")
    rms_dbfs: float | None = Field(
        default=None,
        description="Root-mean-square level over all samples, dB relative to full scale "
        "(-inf for digital silence is reported as -120).",
    )
    peak_dbfs: float | None = Field(
        default=None, description="Highest absolute sample level, dBFS."
    )
    silence_ratio: float | None = Field(
        default=None, ge=0, le=1, description="Share of 10 ms windows whose RMS is below -60 dBFS."
    )
    integrated_lufs: float | None = Field(
        default=None,
        description="Integrated loudness, LUFS (ITU-R BS.1770-4, EBU R128: K-weighted, "
        "gated 400 ms blocks); -70 or below when the audio is (almost) silent.",
    )
    loudness_range_lu: float | None = Field(
        default=None,
        ge=0,
        description="Loudness range, LU (EBU Tech 3342: spread of the 3 s short-term "
        "loudness between its 10th and 95th percentile, gated).",
    )
    true_peak_dbtp: float | None = Field(
        default=None,
        description="True peak, dBTP (ITU-R BS.1770-4 Annex 2: 4x oversampled peak).",
    )
    format: str | None = Field(default=None, description="Container format, e.g. `WAV`, `FLAC`.")
    subtype: str | None = Field(default=None, description="Sample encoding, e.g. `PCM_16`.")
    envelope: list[float] | None = Field(
        default=None,
        description="Peak level per equal slice of the audio, 0..1 of full scale, "
        "at most 200 points; for drawing a waveform overview.",
    )

    @model_serializer(mode="wrap")
    def _as_the_server_sent_it(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Only the fields that were set: a well-known field the server did not report
        stays absent instead of becoming ``null``, wherever the object is serialised
        (events, the bridge's and the notifier's stored copies, SSE, ``GET /jobs``)."""
        data = handler(self)
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if k in self.model_fields_set}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The serialiser above only leaves out what was never set; the shape is the
        # same, so the JSON Schema is the fields' in both modes (OpenAPI responses are
        # generated in serialisation mode and would otherwise show an empty schema).
        fields = {k: v for k, v in core_schema.items() if k != "serialization"}
        return handler(cast(CoreSchema, fields))


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
    deadline: AwareDatetime | None = Field(
        default=None,
        description="When the caller gives up on this analysis (RFC 3339, UTC): a server "
        "may stop the analysis then and send nothing more, since the job has already "
        "failed with `analysis_timeout`. Absent from older callers.",
        examples=["2026-01-01T12:10:00Z"],
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
