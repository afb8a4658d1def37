"""Job access tokens (DESIGN §6): issued by the gateway at upload, checked by the
notifier before it shows a job. A token is a JWT (HS256) whose subject is the job id,
with an expiry; one shared secret (``JOB_TOKEN_SECRET``) signs and verifies."""

import time
from enum import Enum

import jwt

AUDIENCE = "audiopipe:job"
COOKIE_NAME = "audiopipe_job_token"


class TokenProblem(Enum):
    INVALID = "invalid"
    WRONG_JOB = "wrong_job"


class JobTokens:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def issue(self, job_id: str, owner: str | None = None) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": job_id,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + self.ttl_seconds,
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
                audience=AUDIENCE,
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError:
            return TokenProblem.INVALID
        return None if claims["sub"] == job_id else TokenProblem.WRONG_JOB
