"""The fair-use rules (gateway.limits), pure: what is let in, what is refused, and when
to try again."""

from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request

from gateway.limits import FairUse, Usage, client_key, judge_bytes, judge_upload, next_rate_tat

pytestmark = pytest.mark.unit

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
RULES = FairUse(
    rate_per_minute=6, burst=3, open_per_client=2, bytes_per_day=1000, bytes_in_flight=5000
)


def usage(**kwargs: object) -> Usage:
    values: dict[str, object] = {
        "now": NOON,
        "rate_tat": None,
        "open_uploads": 0,
        "bytes_today": 0,
        "bytes_in_flight": 0,
    }
    values.update(kwargs)
    return Usage(**values)  # type: ignore[arg-type]


def test_a_burst_is_let_in_then_the_rate_applies_with_the_wait_in_retry_after() -> None:
    state = usage()
    for _ in range(RULES.burst):
        assert judge_upload(RULES, state, 10) is None
        state = usage(rate_tat=next_rate_tat(RULES, state))
    refusal = judge_upload(RULES, state, 10)
    assert refusal is not None and refusal.code == "too_many_uploads"
    assert refusal.retry_after == 10  # one upload every 10 s at 6 a minute
    later = usage(now=NOON + timedelta(seconds=10), rate_tat=state.rate_tat)
    assert judge_upload(RULES, later, 10) is None


def test_uploads_open_at_once_are_bounded() -> None:
    refusal = judge_upload(RULES, usage(open_uploads=2), 10)
    assert refusal is not None and refusal.code == "too_many_open_uploads"
    assert refusal.retry_after > 0
    assert judge_upload(RULES, usage(open_uploads=1), 10) is None


def test_bytes_per_day_count_what_is_declared_and_reopen_at_utc_midnight() -> None:
    assert judge_upload(RULES, usage(bytes_today=900), 100) is None
    refusal = judge_upload(RULES, usage(bytes_today=900), 101)
    assert refusal is not None and refusal.code == "daily_bytes_exceeded"
    assert refusal.retry_after == 12 * 3600
    # Undeclared: let in while the day is not used up.
    assert judge_bytes(RULES, usage(bytes_today=999), 0) is None
    assert judge_bytes(RULES, usage(bytes_today=1000), 0) is not None


def test_bytes_in_flight_are_bounded_for_everyone() -> None:
    refusal = judge_bytes(RULES, usage(bytes_in_flight=4990), 11)
    assert refusal is not None and refusal.code == "server_busy"
    assert judge_bytes(RULES, usage(bytes_in_flight=4990), 10) is None


def test_zero_turns_a_limit_off() -> None:
    off = FairUse(rate_per_minute=0, burst=1, open_per_client=0, bytes_per_day=0, bytes_in_flight=0)
    busy = usage(rate_tat=NOON + timedelta(hours=1), open_uploads=99, bytes_today=10**12)
    assert judge_upload(off, busy, 10**12) is None
    assert next_rate_tat(off, busy) is None


def request_from(host: str) -> Request:
    return Request({"type": "http", "client": (host, 5555), "headers": []})


@pytest.mark.parametrize(
    ("host", "owner", "key"),
    [
        ("127.0.0.5", None, "addr:127.0.0.5"),
        ("127.0.0.5", "alice", "sub:alice"),
        ("2001:db8:1:2:3:4:5:6", None, "addr:2001:db8:1:2::/64"),
        ("::ffff:10.0.0.1", None, "addr:10.0.0.1"),
    ],
)
def test_limits_are_keyed_on_the_owner_else_the_client_address(
    host: str, owner: str | None, key: str
) -> None:
    assert client_key(request_from(host), owner) == key


def test_with_every_limit_off_the_gateway_asks_no_database() -> None:
    from gateway.app import Adapters
    from gateway.limits import NoQuota
    from gateway.settings import Settings

    off = {
        "upload_rate_per_minute": 0,
        "uploads_open_per_client": 0,
        "upload_bytes_per_day": 0,
        "upload_bytes_in_flight": 0,
    }
    assert isinstance(Adapters.real(Settings(**off)).quota, NoQuota)  # type: ignore[arg-type]
    assert not isinstance(Adapters.real(Settings()).quota, NoQuota)
