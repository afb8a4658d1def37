"""The benchmarks' one percentile definition (bench.common): p50 is the median, and
every pN interpolates linearly between the closest ranks (type 7)."""

import statistics

import pytest

from bench.common import draining, percentile

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("samples", [[3.0], [2.0, 1.0], [5.0, 1.0, 4.0], [1.0, 2.0, 3.0, 10.0]])
def test_p50_is_the_median(samples):
    assert percentile(samples, 50) == statistics.median(samples)


def test_p99_interpolates_between_the_closest_ranks():
    samples = [float(n) for n in range(101)]  # 0..100: rank 99 is exactly 99
    assert percentile(samples, 99) == 99.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile(reversed(samples), 90) == 90.0


@pytest.mark.parametrize("q", [0, 100])
def test_only_percentiles_between_1_and_99(q):
    with pytest.raises(ValueError, match="between 1 and 99"):
        percentile([1.0, 2.0], q)


def test_only_a_group_whose_lag_falls_is_still_draining():
    before = {"uploader.deletions": 30_000, "gone": 12, "idle": 0}
    now = {"uploader.deletions": 29_000, "gone": 12, "idle": 0, "new": 5}
    assert draining(before, now) == {"uploader.deletions": 29_000}
    assert draining(now, now) == {}
