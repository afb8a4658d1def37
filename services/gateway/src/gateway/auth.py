"""Optional bearer-JWT authentication of uploads (docs/architecture.md §6).

With no key configured uploads are anonymous. With a key, ``Authorization: Bearer``
must carry a JWT that verifies with it (signature, expiry, and audience/issuer when
configured); its ``sub`` becomes the job's owner. One algorithm is configured, never
taken from the token, so a public key can never be used as an HMAC secret.
"""

from dataclasses import dataclass

import jwt
from fastapi import Request

from gateway.settings import Settings
from servicekit.http import ApiError
from servicekit.tokens import bearer_token


@dataclass(frozen=True)
class UploadAuth:
    key: str | None
    algorithm: str
    audience: str | None = None
    issuer: str | None = None

    @classmethod
    def configured(cls, settings: Settings) -> "UploadAuth":
        """As ``UPLOAD_JWT_KEY``, ``_ALGORITHM``, ``_AUDIENCE`` and ``_ISSUER`` say."""
        key = settings.upload_jwt_key
        return cls(
            key.get_secret_value() if key else None,
            settings.upload_jwt_algorithm,
            settings.upload_jwt_audience,
            settings.upload_jwt_issuer,
        )

    def owner(self, request: Request) -> str | None:
        """The uploader's subject, or None for anonymous uploads; 401 when required and
        missing or invalid."""
        if self.key is None:
            return None
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise _unauthorized("a bearer token is required to upload")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["sub", "exp"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"the bearer token is not valid: {exc}") from exc
        return str(claims["sub"])


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
