"""Per-job capability tokens for the webhook URL (DESIGN §6).

The analysis server gets ``.../webhook/analysis-complete?job_id=<id>&token=<jwt>``; the
token is an HS256 JWT whose subject is the job, so it grants posting results for that
one job only, and it expires some time after the job's deadline.
"""

import time

import jwt

AUDIENCE = "audiopipe:analysis-webhook"


class Capabilities:
    def __init__(self, secret: str, ttl_seconds: float) -> None:
        self._secret = secret
        self._ttl_seconds = ttl_seconds

    def issue(self, job_id: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": job_id,
            "aud": AUDIENCE,
            "iat": issued,
            "exp": issued + int(self._ttl_seconds),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def allows(self, token: str, job_id: str) -> bool:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["sub", "exp", "aud"]},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims["sub"] == job_id)
