"""The analysis result is the analysis server's own object (docs/architecture.md §7):
it travels in the events as it came, with no well-known field added as ``null``."""

import json

import pytest

from contracts import AnalysisCompleted, AudioFeatures, JobStatus, JobStatusChanged

pytestmark = pytest.mark.unit

OWN_SHAPE = {
    "duration_s": 1.25,
    "sample_rate": 22050,
    "labels": ["music"],
    "nested": {"k": [1, None]},
    "peak_dbfs": None,  # sent as null: kept as null
}


def test_events_carry_the_result_as_it_came():
    result = AudioFeatures.model_validate_json(json.dumps(OWN_SHAPE))
    status = JobStatusChanged(job_id="j", status=JobStatus.COMPLETED, progress=100, result=result)
    completed = AnalysisCompleted(job_id="j", result=result)

    for event in (status, completed):
        sent = json.loads(event.model_dump_json())["result"]
        assert sent == OWN_SHAPE
        again = type(event).model_validate_json(event.model_dump_json())
        assert json.loads(again.model_dump_json())["result"] == OWN_SHAPE
    assert result.model_dump(mode="json") == OWN_SHAPE


def test_the_result_schema_is_the_same_for_reading_and_writing():
    reading = AudioFeatures.model_json_schema(mode="validation")
    writing = AudioFeatures.model_json_schema(mode="serialization")
    assert writing == reading
    assert "duration_seconds" in writing["properties"]
