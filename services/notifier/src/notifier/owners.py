"""An owner's jobs (docs/architecture.md §8): with ``UPLOAD_AUTH=jwt`` the JWT subject
of an upload owns its job, lists it (``GET /jobs``) and deletes it.

The list is newest first, a page at a time, continued by an opaque cursor: the last
job's position (when it was created, its id), so that jobs created or deleted while
someone pages move no other job across a page boundary (keyset pagination, never an
offset).
"""

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request

from notifier.ports import Lifecycle, Position
from servicekit.auth import OwnerAuth, Unauthorized
from servicekit.http import ApiError
from servicekit.tokens import bearer_token

DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_CURSOR_CHARS = 128

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


async def owner_of(auth: OwnerAuth, request: Request) -> str:
    """The verified subject of the request's bearer JWT; 401 without a valid one, and
    404 where uploads are anonymous: jobs have no owners there."""
    if not auth.required:
        raise ApiError(
            404,
            "no_owners",
            "uploads are anonymous here, so jobs have no owners to list: owners exist only "
            "with UPLOAD_AUTH=jwt; a job is read and deleted with its own access token",
        )
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized("a bearer token is required to list your jobs", token_given=False)
    return await auth.subject(token)


def encode_cursor(position: Position) -> str:
    created_at, job_id = position
    micros = (created_at - _EPOCH) // _MICROSECOND  # exact: PostgreSQL keeps microseconds
    return base64.urlsafe_b64encode(f"{micros}.{job_id}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Position:
    """The position a cursor of :func:`encode_cursor` names; 422 for anything else."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros, _, job_id = raw.partition(".")
        if not micros.isdigit():
            raise ValueError("not a time")
        return (_EPOCH + int(micros) * _MICROSECOND, str(uuid.UUID(job_id)))
    except (ValueError, binascii.Error, OverflowError):
        raise ApiError(422, "invalid_cursor", "the cursor is not one that GET /jobs gave") from None


async def page(lifecycle: Lifecycle, owner: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """One page of ``owner``'s jobs after ``cursor``: each as ``GET /jobs/{job_id}``
    shows it, and the cursor of the next page (None on the last)."""
    before = decode_cursor(cursor) if cursor is not None else None
    # One more than asked: whether there is a next page, without a count.
    found = await lifecycle.owned_by(owner, before, limit + 1)
    shown = found[:limit]
    more = len(found) > limit
    return {
        "jobs": [job.snapshot.public() for job in shown],
        "next_cursor": encode_cursor(shown[-1].position) if more else None,
    }
