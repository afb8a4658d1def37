import pytest

from uploader.offsets import AppendedSinceAssignment, CommitTracker

pytestmark = pytest.mark.unit


def test_commit_stops_at_the_earliest_open_job() -> None:
    t = CommitTracker()
    assert t.safe_offset("p0") is None
    t.opened("p0", "a", 10)
    t.processed("p0", 10)
    t.opened("p0", "b", 11)
    t.processed("p0", 11)
    t.processed("p0", 12)
    assert t.safe_offset("p0") == 10
    t.closed("p0", "b")
    assert t.safe_offset("p0") == 10
    t.closed("p0", "a")
    assert t.safe_offset("p0") == 13


def test_a_redelivered_start_keeps_the_first_offset() -> None:
    t = CommitTracker()
    t.opened("p0", "a", 5)
    t.opened("p0", "a", 9)
    assert t.safe_offset("p0") == 5


def test_partitions_are_independent_and_revocation_returns_open_jobs() -> None:
    t = CommitTracker()
    t.opened("p0", "a", 1)
    t.processed("p1", 40)
    assert t.safe_offset("p1") == 41
    assert t.forget("p0") == ["a"]
    assert t.safe_offset("p0") is None


def test_a_checkpointed_job_holds_only_its_unsaved_chunk_or_nothing() -> None:
    tracker = CommitTracker()
    tracker.opened("p", "long", 3)
    tracker.opened("p", "short", 10)
    tracker.processed("p", 20)
    assert tracker.safe_offset("p") == 3
    assert tracker.safe_offset("p", {"long": 12}) == 10
    tracker.closed("p", "short")
    assert tracker.safe_offset("p", {"long": 12}) == 12
    assert tracker.safe_offset("p", {"long": None}) == 21


def test_records_from_the_first_known_end_on_were_appended_since_the_assignment() -> None:
    appended = AppendedSinceAssignment()
    assert not appended.fresh("p0", 3, None)  # no fetch seen yet: may be a replay
    assert not appended.fresh("p0", 7, 10)  # the first record handled: before the end
    assert not appended.fresh("p0", 9, 12)  # still before the end first seen (10)
    assert appended.fresh("p0", 10, 12)
    assert not appended.fresh("p1", 10, 11)  # each partition its own


def test_a_revoked_partition_starts_anew_at_its_next_assignment() -> None:
    appended = AppendedSinceAssignment()
    appended.fresh("p0", 7, 10)
    appended.forget("p0")
    assert not appended.fresh("p0", 10, 15)  # replayed by the new owner: looked up
    assert appended.fresh("p0", 15, 15)
