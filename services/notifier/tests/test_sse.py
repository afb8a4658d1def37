import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import JobStatus
from notifier import sse
from notifier.projection import JobSnapshot

pytestmark = pytest.mark.unit


def snapshot(**changes) -> JobSnapshot:
    fields: dict[str, Any] = {
        "job_id": str(uuid.uuid4()),
        "event_id": 7,
        "status": JobStatus.ANALYZING,
        "progress": 60,
        "detail": "analysing",
        "result": None,
        "error": None,
        "time": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return JobSnapshot(**(fields | changes))


def test_event_has_id_and_data_and_no_event_type():
    text = snapshot().sse_event
    lines = text.split("\n")
    assert lines[0] == "id: 7"
    assert lines[1].startswith("data: ")
    assert not any(line.startswith("event:") for line in lines)
    assert text.endswith("\n\n")


def test_event_data_is_the_public_json():
    snap = snapshot(status=JobStatus.COMPLETED, progress=100, result={"duration_seconds": 1.5})
    data = json.loads(snap.sse_event.split("\n")[1].removeprefix("data: "))
    assert data == {
        "job_id": snap.job_id,
        "event_id": 7,
        "status": "completed",
        "progress": 100,
        "detail": "analysing",
        "result": {"duration_seconds": 1.5},
        "error": None,
        "time": "2026-01-01T00:00:00+00:00",
    }


def test_multiline_data_becomes_several_data_lines():
    assert sse.message(3, "a\nb") == "id: 3\ndata: a\ndata: b\n\n"


def test_retry_and_keep_alive_lines():
    assert sse.retry(2000) == "retry: 2000\n\n"
    assert sse.KEEP_ALIVE == ": keep-alive\n\n"
    assert sse.comment("two\nlines") == ": two\n: lines\n\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("0", 0), ("7", 7), ("007", 7), (str(2**63 - 1), 2**63 - 1)],
)
def test_an_event_id_is_ascii_digits_within_int64(raw, expected):
    assert sse.parse_event_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["+3", "-0", "-1", "1_000", " 7", "7 ", "1.0", "0x1", "x", "\u0663", "\uff13", "\u00b3",
     str(2**63), "9" * 40, "0" * 30 + "9" * 20],
)  # fmt: skip
def test_anything_else_is_not_an_event_id(raw):
    with pytest.raises(ValueError, match="event id"):
        sse.parse_event_id(raw)
