from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from servicekit.retry import backoff_delay, parse_retry_after

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def fixed(value: float):
    return lambda: value


@pytest.mark.parametrize(("retry", "window"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)])
def test_backoff_window_doubles_up_to_the_cap(retry, window):
    assert backoff_delay(retry, base=0.5, cap=30, jitter=fixed(0.999999)) == (
        pytest.approx(window, rel=1e-5)
    )


def test_backoff_is_jittered_over_the_whole_window():
    delays = [backoff_delay(3, 0.5, 30, None, fixed(j / 10)) for j in range(10)]
    assert delays == sorted(delays)
    assert delays[0] == 0
    assert max(delays) < 2.0


def test_backoff_never_comes_sooner_than_retry_after():
    assert backoff_delay(1, 0.5, 30, retry_after=7, jitter=fixed(0.5)) == 7
    assert backoff_delay(8, 0.5, 30, retry_after=1, jitter=fixed(0.9)) == pytest.approx(27)


def test_backoff_jitters_by_default():
    delays = {backoff_delay(5, 1.0, 30) for _ in range(20)}
    assert len(delays) > 1
    assert all(0 <= d < 16 for d in delays)


def test_retry_after_in_seconds():
    assert parse_retry_after("3", NOW) == 3
    assert parse_retry_after(" 0 ", NOW) == 0


def test_retry_after_as_http_date():
    when = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, NOW) == pytest.approx(90)


def test_retry_after_in_the_past_means_now():
    when = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, NOW) == 0


def test_retry_after_is_capped_when_asked():
    assert parse_retry_after("3600", NOW, cap=30) == 30
    assert parse_retry_after("3", NOW, cap=30) == 3


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_unreadable_retry_after_is_ignored(value):
    assert parse_retry_after(value, NOW) is None
    assert parse_retry_after(value, NOW, cap=5) is None
