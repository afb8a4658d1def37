import json

import pytest

from analyzer_bridge.webhook_body import (
    BodyTooLarge,
    InvalidBody,
    InvalidResult,
    parse,
    read_bounded,
)
from contracts import AnalysisWebhook

pytestmark = pytest.mark.unit

OWN_SHAPE = {
    "duration_s": 2.0,
    "sample_rate": 48000,
    "channels": 1,
    "rms_dbfs": -21.5,
    "labels": ["speech", {"confidence": 0.9}],
    "integrated_lufs": None,
}


def body(**fields):
    return json.dumps({"job_id": "j", **fields}).encode()


def completed(result):
    return body(status="completed", result=result)


async def stream(*chunks):
    for chunk in chunks:
        yield chunk


def test_a_result_of_its_own_shape_is_kept_as_it_came():
    hook = parse(completed(OWN_SHAPE))

    assert isinstance(hook, AnalysisWebhook)
    assert hook.result is not None
    assert json.loads(hook.result.model_dump_json()) == OWN_SHAPE  # nothing added or lost


@pytest.mark.parametrize(
    ("result", "named"),
    [
        ({"sample_rate": "48000"}, "result.sample_rate: Input should be a valid integer"),
        ({"sample_rate": 48000.0}, "result.sample_rate"),
        ({"channels": True}, "result.channels"),
        ({"silence_ratio": 1.5}, "result.silence_ratio"),
        ({"format": 3}, "result.format"),
        ({"envelope": "flat"}, "result.envelope"),
        ({"labels": ["a\u0000b"]}, "result.labels.0: a string with U+0000"),
        ([1, 2], "result: must be a JSON object, not an array"),
        ("done", "result: must be a JSON object, not a string"),
        (None, "result: must be a JSON object, not null"),
    ],
)
def test_an_unusable_result_names_the_field(result, named):
    hook = parse(completed(result))

    assert isinstance(hook, InvalidResult)
    assert hook.job_id == "j"
    assert named in hook.message


def test_a_number_beyond_a_double_is_an_invalid_result_not_null():
    hook = parse(b'{"job_id": "j", "status": "completed", "result": {"big": [1e400]}}')
    assert isinstance(hook, InvalidResult)
    assert "result.big.0: a number too large for a double" in hook.message


def test_a_completed_call_without_a_result_is_an_invalid_result():
    hook = parse(body(status="completed"))
    assert isinstance(hook, InvalidResult)
    assert hook.message.startswith("result:")


def test_thousands_of_wrong_items_make_a_short_message():
    hook = parse(completed({"envelope": ["x"] * 10_000}))
    assert isinstance(hook, InvalidResult)
    assert "(and 9997 more)" in hook.message
    assert len(hook.message) < 500


def test_a_result_too_large_once_encoded_is_an_invalid_result():
    hook = parse(completed({"n": [1e5] * 100}), max_result_bytes=500)  # 1e5 -> 100000.0
    assert isinstance(hook, InvalidResult)
    assert "over the 500-byte limit" in hook.message


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"job_id": "j", "status": "progress", "progress": NaN}',
        b"[]",
        body(status="done"),
        body(status="progress"),
        body(status="progress", progress=101),
        body(status="failed", error={"code": "x"}),
        json.dumps({"status": "completed", "result": {}}).encode(),  # no job_id
    ],
)
def test_a_bad_envelope_is_a_bad_body_whatever_the_result(raw):
    with pytest.raises(InvalidBody):
        parse(raw)


def test_progress_and_failed_calls_parse_as_before():
    progress = parse(body(status="progress", progress=40))
    failed = parse(body(status="failed", error={"code": "invalid_audio", "message": "no"}))
    assert isinstance(progress, AnalysisWebhook) and progress.progress == 40
    assert isinstance(failed, AnalysisWebhook) and failed.error is not None


async def test_read_bounded_refuses_by_content_length_before_reading():
    async def never():
        raise AssertionError("read")
        yield b""

    with pytest.raises(BodyTooLarge):
        await read_bounded(never(), 10, content_length="11")


async def test_read_bounded_refuses_while_reading():
    with pytest.raises(BodyTooLarge):
        await read_bounded(stream(b"12345", b"678901"), 10)
    assert await read_bounded(stream(b"12345", b"67890"), 10, content_length="10") == b"1234567890"
