"""Which job a request names. Who may read it (docs/architecture.md §6) is the holder
of a job token that grants ``job:read``, from the HttpOnly cookie the gateway sets, the
``access_token`` query parameter or an ``Authorization: Bearer`` header: any one of them
is enough (``servicekit.tokens.authorize``).
"""

import uuid

from servicekit.http import ApiError


def job_id_of(raw: str) -> str:
    """The canonical form of a job id from a path; 422 unless it is a UUID."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(422, "invalid_job_id", "the job id is not a UUID") from None
