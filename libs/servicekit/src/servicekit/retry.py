"""Retry delays shared by every retrying caller: exponential backoff with full jitter,
never sooner than the server's ``Retry-After`` (docs/architecture.md §5.5).

The callers' loops differ (the bridge counts attempts in PostgreSQL and stops at a
job's deadline; the reference analysis server retries a download or a webhook in
memory), so what is shared is the delay, not a retry decorator such as tenacity's.
"""

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["backoff_delay", "parse_retry_after"]


def backoff_delay(
    retry: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number ``retry`` (1 for the first): "full jitter" over a
    window that doubles from ``base`` up to ``cap`` (https://aws.amazon.com/blogs/
    architecture/exponential-backoff-and-jitter/), so that many callers do not retry in
    lockstep; never sooner than ``retry_after``. ``jitter`` returns a uniform random
    number in [0, 1)."""
    window = min(cap, base * 2.0 ** (retry - 1))
    delay = jitter() * window
    return delay if retry_after is None else max(delay, float(retry_after))


def parse_retry_after(
    value: str | None, now: datetime | None = None, cap: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date
    (RFC 9110 §10.2.3), counted from ``now`` (the current time by default), at most
    ``cap`` when given. None when absent or unreadable."""
    seconds = _retry_after(value, now or datetime.now(UTC))
    return seconds if seconds is None or cap is None else min(seconds, cap)


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
