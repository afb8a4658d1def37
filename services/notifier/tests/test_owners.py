"""An owner's list: the cursor and the pages, with a fake store (the real keyset query:
test_deletion.py)."""

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import JobStatus, JobStatusChanged
from notifier import owners
from servicekit.http import ApiError

sys.path.insert(0, str(Path(__file__).parent))
from notifier_fakes import FakeStore

pytestmark = pytest.mark.unit


def test_a_cursor_names_its_position_exactly():
    position = (datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), str(uuid.uuid4()))
    cursor = owners.encode_cursor(position)
    assert owners.decode_cursor(cursor) == position
    assert cursor.isascii() and "=" not in cursor  # fits a query string as it is


@pytest.mark.parametrize(
    "cursor",
    ["", "not a cursor", "x" * 200, owners.encode_cursor((datetime.now(UTC), "x"))[:-1] + "!"],
)
def test_a_cursor_this_route_did_not_give_is_422(cursor):
    with pytest.raises(ApiError) as refused:
        owners.decode_cursor(cursor)
    assert (refused.value.status_code, refused.value.code) == (422, "invalid_cursor")


async def test_pages_cover_every_job_of_the_owner_once_newest_first():
    store = FakeStore()
    mine = []
    for n in range(11):
        job = str(uuid.uuid4())
        owner = "alice" if n % 3 else "bob"
        event = JobStatusChanged(job_id=job, status=JobStatus.ACCEPTED, progress=0, owner=owner)
        await store.record_batch([(job, event)])
        if owner == "alice":
            mine.append(job)
    seen, cursor = [], None
    while True:
        page = await owners.page(store, "alice", cursor, 3)
        assert len(page["jobs"]) <= 3
        seen += [job["job_id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == mine[::-1]
