from datetime import UTC, datetime

import pytest

from analyzer_bridge.ports import ServerAnswer
from analyzer_bridge.requesting import Accepted, Rejected, Retry, classify

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


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
