"""Reading a webhook's body: bounded in size, then the envelope and the result apart.

The ``result`` of a ``completed`` webhook is the analysis server's own JSON object
(docs/architecture.md §7): any fields, the well-known ones typed where present. So the
envelope (``job_id``, ``status``, ...) and the result are judged separately: a bad
envelope is a bad request that changes nothing, while a well-formed ``completed`` call
whose result is unusable is the analysis server's final answer, and fails the job at
once with ``analysis_invalid_result`` instead of leaving it to its deadline.
"""

import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import ValidationError

from contracts import AnalysisWebhook, AudioFeatures, WebhookStatus
from servicekit.http import describe_errors

MAX_BODY_BYTES = 1024 * 1024
"""Largest webhook body accepted, and largest result once re-encoded: with its event's
envelope it stays below ``servicekit.kafka.MAX_MESSAGE_BYTES``."""


class BodyTooLarge(Exception):
    """The body is over the limit; nothing of it was parsed."""


class InvalidBody(Exception):
    """Not a webhook: not JSON, or an envelope that does not fit the contract."""


@dataclass(frozen=True)
class InvalidResult:
    """A well-formed ``completed`` webhook whose result cannot be carried on."""

    job_id: str
    message: str
    """Names the field, e.g. ``result.sample_rate: Input should be a valid integer``."""


async def read_bounded(
    chunks: AsyncIterator[bytes], limit: int, content_length: str | None = None
) -> bytes:
    """The whole body, or :class:`BodyTooLarge` as soon as it is known to exceed
    ``limit``: from ``Content-Length`` before reading, else while reading."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge(f"the body is {content_length} bytes, over the {limit}-byte limit")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the body is over the {limit}-byte limit")
    return bytes(body)


def parse(body: bytes, max_result_bytes: int = MAX_BODY_BYTES) -> AnalysisWebhook | InvalidResult:
    """The webhook in ``body``; :class:`InvalidResult` for a ``completed`` one whose
    result is unusable; :class:`InvalidBody` for anything else that is wrong."""
    try:
        # Strict JSON: NaN and Infinity are not JSON (RFC 8259 §6).
        raw = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidBody(f"the body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidBody("the body must be a JSON object")
    if raw.get("status") != WebhookStatus.COMPLETED.value:
        return _validated(raw)
    # The envelope alone, with a stand-in result, so that its problems are told apart
    # from the result's.
    envelope = _validated({**raw, "result": {}})
    problem = _result_problem(raw.get("result", _MISSING), max_result_bytes)
    if isinstance(problem, str):
        return InvalidResult(envelope.job_id, problem)
    return envelope.model_copy(update={"result": problem})


_MISSING = object()


def _validated(raw: dict[str, Any]) -> AnalysisWebhook:
    try:
        return AnalysisWebhook.model_validate(raw)
    except ValidationError as exc:
        raise InvalidBody(_describe(exc) or "invalid body") from None


def _result_problem(result: object, max_bytes: int) -> AudioFeatures | str:
    """The result as a model, or what is wrong with it."""
    if result is _MISSING:
        return "result: a completed webhook needs one (a JSON object)"
    if not isinstance(result, dict):
        return f"result: must be a JSON object, not {_json_type(result)}"
    for path, problem in _unstorable(result, "result"):
        return f"{path}: {problem}"
    try:
        # Strict: a well-known field is the type it is documented as, not something
        # that converts to it ("8000" is not a sample rate), so what is carried on is
        # what the server sent.
        features = AudioFeatures.model_validate(result, strict=True)
    except ValidationError as exc:
        return _describe(exc, prefix="result")
    size = len(features.model_dump_json())
    if size > max_bytes:
        return f"result: {size} bytes once encoded, over the {max_bytes}-byte limit"
    return features


def _unstorable(value: object, path: str) -> Iterator[tuple[str, str]]:
    """Values JSON can carry but the events and PostgreSQL's ``jsonb`` cannot: numbers
    beyond a double (they would become ``null``) and U+0000 in strings."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, "a number too large for a double"
    elif isinstance(value, str) and "\x00" in value:
        yield path, "a string with U+0000"
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unstorable(item, f"{path}.{i}")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield path, "a key with U+0000"
            yield from _unstorable(item, f"{path}.{key}")


MAX_PROBLEMS = 3
"""Problems named in a message: a result may hold thousands of wrong items, and the
message travels in the job's error."""


def _describe(exc: ValidationError, prefix: str = "") -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return describe_errors(errors, prefix=prefix, limit=MAX_PROBLEMS)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"
