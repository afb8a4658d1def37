"""Retry delays: exponential backoff with jitter, honouring ``Retry-After``."""

import email.utils
import random
import time


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)``,
    jittered by ±50 % so that many senders do not retry in lockstep, at most ``cap``."""
    delay = base * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.5)
    return min(delay, cap)


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or HTTP-date, RFC 9110
    §10.2.3), at most ``cap``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), cap)
