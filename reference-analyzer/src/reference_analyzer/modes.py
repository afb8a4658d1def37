"""Test modes: the reference server can misbehave on purpose, so that the bridge's
tests can exercise its retries, deadlines and idempotency.

A mode comes from the configuration (:class:`~reference_analyzer.settings.Settings`)
and can be overridden per request by ``metadata`` keys of the ``AnalysisRequest``:

``reference.mode``
    ``normal`` (default), ``slow`` (pause ``delay_seconds`` before downloading),
    ``reject`` (answer ``400``), ``silent`` (accept and analyse, but never call back),
    ``twice`` (deliver the final webhook twice: same ``webhook-id``, same body).
``reference.fail_first``
    ``N``: the first N requests for this ``job_id`` get ``503`` with ``Retry-After``.
``reference.delay_seconds``
    pause before downloading, in any mode; ``slow`` without it uses the configured default.
``reference.sign``
    ``true`` (sign when a secret is configured), ``false`` (never sign), ``invalid``
    (sign with a wrong key, to test that forged webhooks are refused).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

KEY_PREFIX: Final = "reference."
MODE_KEY: Final = "reference.mode"
FAIL_FIRST_KEY: Final = "reference.fail_first"
DELAY_KEY: Final = "reference.delay_seconds"
SIGN_KEY: Final = "reference.sign"
KEYS: Final = frozenset({MODE_KEY, FAIL_FIRST_KEY, DELAY_KEY, SIGN_KEY})
MAX_DELAY_SECONDS: Final = 3600.0

E = TypeVar("E", bound=StrEnum)


class Mode(StrEnum):
    NORMAL = "normal"
    SLOW = "slow"
    REJECT = "reject"
    SILENT = "silent"
    TWICE = "twice"


class Signing(StrEnum):
    ON = "true"
    OFF = "false"
    INVALID = "invalid"


class ModeError(ValueError):
    """A ``reference.*`` metadata key or value is not understood."""


@dataclass(frozen=True)
class Behaviour:
    """How one request is to be treated."""

    mode: Mode = Mode.NORMAL
    fail_first: int = 0
    delay_seconds: float = 0.0
    signing: Signing = Signing.ON


def resolve(
    metadata: Mapping[str, str],
    *,
    default_mode: Mode = Mode.NORMAL,
    default_fail_first: int = 0,
    slow_delay_seconds: float = 0.0,
) -> Behaviour:
    """The behaviour for a request: its ``reference.*`` metadata over the configuration."""
    # A misspelt key silently ignored would make a test pass for the wrong reason.
    unknown = sorted(k for k in metadata if k.startswith(KEY_PREFIX) and k not in KEYS)
    if unknown:
        raise ModeError(f"unknown test-mode keys {unknown}; known: {sorted(KEYS)}")
    mode = _enum(metadata, MODE_KEY, Mode, default_mode)
    fail_first = _fail_first(metadata.get(FAIL_FIRST_KEY), default_fail_first)
    delay = _delay(metadata.get(DELAY_KEY))
    if delay is None:
        delay = slow_delay_seconds if mode is Mode.SLOW else 0.0
    signing = _enum(metadata, SIGN_KEY, Signing, Signing.ON)
    return Behaviour(mode=mode, fail_first=fail_first, delay_seconds=delay, signing=signing)


def _enum(metadata: Mapping[str, str], key: str, kind: type[E], default: E) -> E:
    raw = metadata.get(key)
    if raw is None:
        return default
    try:
        return kind(raw.strip().lower())
    except ValueError:
        raise ModeError(f"{key} must be one of {[m.value for m in kind]}, not {raw!r}") from None


def _fail_first(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ModeError(f"{FAIL_FIRST_KEY} must be a whole number >= 0, not {raw!r}")
    return value


def _delay(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_DELAY_SECONDS:
        raise ModeError(f"{DELAY_KEY} must be seconds in 0..{MAX_DELAY_SECONDS:g}, not {raw!r}")
    return value
