"""The lifecycle rules that every producer and the notifier share (contracts.jobs)."""

import pytest

from contracts import progress_after

pytestmark = pytest.mark.unit


def test_the_first_report_is_the_progress() -> None:
    assert progress_after(None, 20) == 20


@pytest.mark.parametrize(
    ("current", "reported", "after"), [(50, 75, 75), (75, 50, 75), (75, 75, 75)]
)
def test_progress_never_decreases(current: int, reported: int, after: int) -> None:
    assert progress_after(current, reported) == after
