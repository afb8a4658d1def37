"""Who may read a job (docs/architecture.md §6): the holder of its job access token.

The token comes from the HttpOnly cookie the gateway sets, the ``access_token`` query
parameter, or an ``Authorization: Bearer`` header; any one of them that grants access
is enough.
"""

import uuid

from fastapi import Request

from servicekit.http import ApiError
from servicekit.tokens import COOKIE_NAME, JobTokens, TokenProblem, bearer_token


def job_id_of(raw: str) -> str:
    """The canonical form of a job id from a path; 422 unless it is a UUID."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(422, "invalid_job_id", "the job id is not a UUID") from None


def presented_tokens(request: Request, access_token: str | None) -> list[str]:
    found: list[str] = []
    bearer = bearer_token(request.headers.get("authorization"))
    if bearer:
        found.append(bearer)
    if access_token:
        found.append(access_token)
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie:
        found.append(cookie)
    return found


def authorize(tokens: JobTokens, job_id: str, presented: list[str]) -> None:
    """Return if one of ``presented`` grants ``job_id``; else 401 or 403."""
    if not presented:
        raise ApiError(
            401,
            "missing_token",
            "a job access token is required (cookie, `access_token` or Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    problems = [tokens.check(token, job_id) for token in presented]
    if None in problems:
        return
    if TokenProblem.WRONG_JOB in problems:
        raise ApiError(403, "wrong_job", "the access token is for another job")
    raise ApiError(
        401,
        "invalid_token",
        "the job access token is invalid or expired",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )
