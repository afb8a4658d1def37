from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from analyzer_bridge.requests import (
    Accepted,
    Rejected,
    Retry,
    ServerAnswer,
    backoff_delay,
    classify,
    parse_retry_after,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("retry", "window"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)])
def test_backoff_window_doubles_up_to_the_cap(retry, window):
    assert backoff_delay(retry, base=0.5, cap=30, retry_after=None, jitter=0.999999) == (
        pytest.approx(window, rel=1e-5)
    )


def test_backoff_is_jittered_over_the_whole_window():
    delays = [backoff_delay(3, 0.5, 30, None, jitter=j / 10) for j in range(10)]
    assert delays == sorted(delays)
    assert delays[0] == 0
    assert max(delays) < 2.0


def test_backoff_never_comes_sooner_than_retry_after():
    assert backoff_delay(1, 0.5, 30, retry_after=7, jitter=0.5) == 7
    assert backoff_delay(8, 0.5, 30, retry_after=1, jitter=0.9) == pytest.approx(27)


def test_retry_after_in_seconds():
    assert parse_retry_after("3", NOW) == 3
    assert parse_retry_after(" 0 ", NOW) == 0


def test_retry_after_as_http_date():
    when = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, NOW) == pytest.approx(90)


def test_retry_after_in_the_past_means_now():
    when = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, NOW) == 0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_unreadable_retry_after_is_ignored(value):
    assert parse_retry_after(value, NOW) is None


def test_202_is_accepted():
    assert classify(ServerAnswer(202), NOW) == Accepted()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status):
    verdict = classify(ServerAnswer(status, retry_after="4", message="busy"), NOW)
    assert isinstance(verdict, Retry)
    assert verdict.retry_after == 4
    assert str(status) in verdict.reason


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422])
def test_other_client_errors_reject_with_the_servers_message(status):
    verdict = classify(ServerAnswer(status, message="unsupported codec"), NOW)
    assert isinstance(verdict, Rejected)
    assert "unsupported codec" in verdict.message
