"""Signed, expiring tokens that grant something about one job (docs/architecture.md §6).

- Job access tokens: issued by the gateway at upload, checked by the notifier before it
  shows a job (audience :data:`AUDIENCE`; shared secret ``JOB_TOKEN_SECRET``).
- Webhook capabilities: issued by the analyzer-bridge into the webhook URL it hands the
  analysis server, checked when the webhook arrives (its own audience and secret).

Both are JWTs (HS256) whose subject is the job id; the audience keeps one kind of token
from being accepted as the other.
"""

import time
from enum import Enum

import jwt

__all__ = ["AUDIENCE", "COOKIE_NAME", "JobTokens", "TokenProblem", "bearer_token"]

AUDIENCE = "audiopipe:job"
COOKIE_NAME = "audiopipe_job_token"


class TokenProblem(Enum):
    INVALID = "invalid"
    WRONG_JOB = "wrong_job"


class JobTokens:
    def __init__(self, secret: str, ttl_seconds: float, audience: str = AUDIENCE) -> None:
        self._secret = secret
        self.ttl_seconds = int(ttl_seconds)
        self.audience = audience

    def issue(self, job_id: str, owner: str | None = None, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {
            "sub": job_id,
            "aud": self.audience,
            "iat": issued,
            "exp": issued + self.ttl_seconds,
        }
        if owner:
            claims["owner"] = owner
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def check(self, token: str, job_id: str) -> TokenProblem | None:
        """None when ``token`` grants access to ``job_id``, else what is wrong with it."""
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
        return None if claims["sub"] == job_id else TokenProblem.WRONG_JOB

    def allows(self, token: str, job_id: str) -> bool:
        return self.check(token, job_id) is None


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1;
    the scheme is case-insensitive, RFC 9110 §11.1), or None when the header is absent,
    of another scheme, or carries no token. Checking the token is the caller's part."""
    scheme, _, credentials = (authorization or "").partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token else None
