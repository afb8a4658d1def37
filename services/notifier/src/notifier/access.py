"""Which job a request names, and who may delete it (docs/architecture.md §6).

Who may read a job is the holder of a job token that grants ``job:read``, from the
HttpOnly cookie the gateway sets, the ``access_token`` query parameter or an
``Authorization: Bearer`` header: any one of them is enough
(``servicekit.tokens.authorize``). Who may delete it is the holder of its
``job:write`` token (the ``access_token`` of the upload's answer; the cookie and the
progress URL only read), or its owner, by the bearer JWT of the identity provider
(``UPLOAD_AUTH=jwt``).
"""

import uuid

import jwt
from fastapi import Request

from servicekit.auth import OwnerAuth
from servicekit.http import ApiError
from servicekit.tokens import JobTokens, Scope, authorize, bearer_token, presented_tokens


def job_id_of(raw: str) -> str:
    """The canonical form of a job id from a path; 422 unless it is a UUID."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(422, "invalid_job_id", "the job id is not a UUID") from None


async def deleting_owner(
    tokens: JobTokens, auth: OwnerAuth, request: Request, job_id: str, access_token: str | None
) -> str | None:
    """Who may delete ``job_id``: None for the holder of a token of the job with
    ``job:write``; else the verified subject of the owner's bearer JWT (whether the
    job is its own is the deletion's question); else 401 or 403 as for any job token
    (``insufficient_scope`` for one that only reads)."""
    presented = presented_tokens(request, access_token)
    if any(tokens.allows(token, job_id, Scope.WRITE) for token in presented):
        return None
    bearer = bearer_token(request.headers.get("authorization"))
    if auth.required and bearer is not None and not _job_token(tokens, bearer):
        return await auth.subject(bearer)  # or 401, saying what is wrong with it
    authorize(tokens, job_id, presented, needs=Scope.WRITE)
    raise AssertionError("authorize refuses when no token grants job:write")


def _job_token(tokens: JobTokens, token: str) -> bool:
    """Whether ``token`` claims to be a job token (its audience, unverified): then a
    refusal speaks of job tokens, not of the identity provider's."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    audience = claims.get("aud")
    return audience == tokens.audience or (
        isinstance(audience, list) and tokens.audience in audience
    )
