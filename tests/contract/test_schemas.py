import json

import pytest

from contracts import EVENT_TYPES, JobStatus, JobStatusChanged, stage_progress
from contracts.schemas import SCHEMA_DIR, documents, render

pytestmark = pytest.mark.unit


def test_checked_in_schemas_match_the_models() -> None:
    wanted = documents()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert set(on_disk) == set(wanted), "run `uv run python -m contracts.schemas`"
    for name, schema in wanted.items():
        assert on_disk[name] == render(schema), (
            f"{name} is stale: run `uv run python -m contracts.schemas`"
        )


def test_every_event_type_has_a_described_schema() -> None:
    for ce_type, model in EVENT_TYPES.items():
        schema = model.model_json_schema()
        assert schema.get("description"), f"{ce_type} needs a docstring"
        assert "job_id" in schema["required"]


def test_readers_ignore_fields_they_do_not_know() -> None:
    payload = {
        "job_id": "j",
        "status": "analyzing",
        "progress": 60,
        "time": "2026-01-01T00:00:00Z",
        "added_in_a_later_version": {"x": 1},
    }
    event = JobStatusChanged.model_validate_json(json.dumps(payload))
    assert event.status is JobStatus.ANALYZING


def test_progress_spans_only_grow_along_the_lifecycle() -> None:
    order = [
        JobStatus.ACCEPTED,
        JobStatus.UPLOADING,
        JobStatus.UPLOADED,
        JobStatus.ANALYZING,
        JobStatus.COMPLETED,
    ]
    points = [stage_progress(s, f) for s in order for f in (0.0, 0.5, 1.0)]
    assert points == sorted(points)
    assert points[0] == 0 and points[-1] == 100
