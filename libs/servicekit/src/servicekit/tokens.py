"""Signed, expiring tokens that grant something about one job (docs/architecture.md §6).

- Job access tokens: issued by the gateway at upload, checked by the notifier before it
  shows a job (audience :data:`AUDIENCE`; shared secret ``JOB_TOKEN_SECRET``).
- Webhook capabilities: issued by the analyzer-bridge into the webhook URL it hands the
  analysis server, checked when the webhook arrives (its own audience and secret).

Both are JWTs (HS256) whose subject is the job id; the audience keeps one kind of token
from being accepted as the other.

A job access token carries scopes (``scope``, space-separated as in RFC 8693 §4.2):
:attr:`Scope.READ` shows the job's progress and state; :attr:`Scope.WRITE` also appends
to or cancels its upload and ends the job. The upload's answer gives the holder both in
``access_token``; what is made to be shared (``progress_url``, the progress cookie)
carries :attr:`Scope.READ` alone (issue 19). A token without the claim was issued before
scopes and keeps both until it expires (``JOB_TOKEN_TTL_SECONDS``), so an upload in
progress continues across the upgrade.
"""

import time
from collections.abc import Iterable
from enum import Enum, StrEnum

import jwt
from starlette.requests import Request

from servicekit.http import ApiError

__all__ = [
    "AUDIENCE",
    "COOKIE_NAME",
    "EVERY_SCOPE",
    "JobTokens",
    "Scope",
    "TokenProblem",
    "authorize",
    "bearer_token",
    "presented_tokens",
]

AUDIENCE = "audiopipe:job"
COOKIE_NAME = "audiopipe_job_token"


class Scope(StrEnum):
    READ = "job:read"
    WRITE = "job:write"


EVERY_SCOPE = (Scope.READ, Scope.WRITE)


class TokenProblem(Enum):
    INVALID = "invalid"
    WRONG_JOB = "wrong_job"
    INSUFFICIENT_SCOPE = "insufficient_scope"


class JobTokens:
    def __init__(self, secret: str, ttl_seconds: float, audience: str = AUDIENCE) -> None:
        self._secret = secret
        self.ttl_seconds = int(ttl_seconds)
        self.audience = audience

    def issue(
        self,
        job_id: str,
        owner: str | None = None,
        now: float | None = None,
        scopes: Iterable[Scope] = EVERY_SCOPE,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {
            "sub": job_id,
            "aud": self.audience,
            "iat": issued,
            "exp": issued + self.ttl_seconds,
            "scope": " ".join(scopes),
        }
        if owner:
            claims["owner"] = owner
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def issue_progress(self, job_id: str, owner: str | None = None) -> str:
        """A token that only reads the job: for the progress URL and cookie."""
        return self.issue(job_id, owner, scopes=(Scope.READ,))

    def check(self, token: str, job_id: str, needs: Scope = Scope.READ) -> TokenProblem | None:
        """None when ``token`` grants ``needs`` on ``job_id``, else what is wrong with it."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=self.audience,
                options={"require": ["sub", "exp", "aud"]},
            )
        except jwt.PyJWTError:
            return TokenProblem.INVALID
        if claims["sub"] != job_id:
            return TokenProblem.WRONG_JOB
        granted = claims.get("scope")
        if isinstance(granted, str) and needs not in granted.split():
            return TokenProblem.INSUFFICIENT_SCOPE
        return None

    def allows(self, token: str, job_id: str, needs: Scope = Scope.READ) -> bool:
        return self.check(token, job_id, needs) is None


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1;
    the scheme is case-insensitive, RFC 9110 §11.1), or None when the header is absent,
    of another scheme, or carries no token. Checking the token is the caller's part."""
    scheme, _, credentials = (authorization or "").partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token else None


def presented_tokens(request: Request, access_token: str | None = None) -> list[str]:
    """Every job token the request carries: an ``Authorization: Bearer`` header, the
    ``access_token`` query parameter, the progress cookie (docs/architecture.md §6)."""
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


def authorize(
    tokens: JobTokens, job_id: str, presented: list[str], needs: Scope = Scope.READ
) -> None:
    """Return if one of ``presented`` grants ``needs`` on ``job_id``; else 401 or 403 in
    the one error shape, saying what is wrong (RFC 6750 §3.1's error codes in
    ``WWW-Authenticate``)."""
    if not presented:
        raise ApiError(
            401,
            "missing_token",
            "a job access token is required (cookie, `access_token` or Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    problems = [tokens.check(token, job_id, needs) for token in presented]
    if None in problems:
        return
    if TokenProblem.INSUFFICIENT_SCOPE in problems:
        raise ApiError(
            403,
            "insufficient_scope",
            "this token only reads the job's progress; this needs the job's own "
            "`access_token` (from the upload's answer) or its owner's bearer token",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needs}"'},
        )
    if TokenProblem.WRONG_JOB in problems:
        raise ApiError(403, "wrong_job", "the access token is for another job")
    raise ApiError(
        401,
        "invalid_token",
        "the job access token is invalid or expired",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )
