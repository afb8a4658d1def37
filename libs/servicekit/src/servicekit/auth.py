"""Who owns a job (docs/architecture.md §6): bearer JWTs of the operator's identity
provider, or anonymous uploads by choice (``UPLOAD_AUTH``, :class:`OwnerAuthSettings`).

With ``UPLOAD_AUTH=jwt`` every upload needs ``Authorization: Bearer <JWT>`` whose
signature verifies with a key of the configured issuer (its JWKS, by ``kid``:
:class:`servicekit.jwks.JwksKeys`; or one static key), whose ``iss`` and ``aud`` are the
configured ones, and that has not expired; its ``sub`` becomes the job's owner, the key
of the owner's limits, and what later proves ownership (an owner's jobs). The algorithm
comes from the key, never from the token alone, so a public key is never used as an
HMAC secret. A refusal is ``401`` with ``WWW-Authenticate`` (RFC 6750 §3) and a JSON
body saying what is wrong in our words, never the library's.

With ``UPLOAD_AUTH=anonymous`` uploads need no token, and the limits are keyed on the
client address the edge saw.
"""

import logging
from dataclasses import dataclass

import httpx
import jwt
from fastapi import Request

from servicekit.http import ApiError
from servicekit.jwks import ASYMMETRIC, JwksKeys, SigningKeys, StaticKey, UnknownKey
from servicekit.settings import OwnerAuthSettings
from servicekit.tokens import bearer_token

__all__ = ["REALM", "OwnerAuth", "Unauthorized", "owner_auth"]

log = logging.getLogger(__name__)

REALM = "audiopipe"


class Unauthorized(ApiError):
    """401 with RFC 6750's challenge: without ``error`` when no token came (§3.1)."""

    def __init__(self, message: str, *, token_given: bool) -> None:
        challenge = f'Bearer realm="{REALM}"'
        if token_given:
            challenge += f', error="invalid_token", error_description="{message}"'
        super().__init__(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the bearer token has expired"),
    (jwt.ImmatureSignatureError, "the bearer token is not valid yet"),
    (jwt.InvalidAudienceError, "the bearer token is not meant for this service (aud)"),
    (jwt.InvalidIssuerError, "the bearer token is from another issuer (iss)"),
    (jwt.InvalidSignatureError, "the bearer token's signature does not verify"),
    (jwt.DecodeError, "the bearer token is not a well-formed JWT"),
)


def _reason(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the bearer token has no `{error.claim}` claim"
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "the bearer token is not valid"


@dataclass(frozen=True)
class OwnerAuth:
    """The owner's bearer JWT, checked: ``keys`` is None when uploads are anonymous."""

    keys: SigningKeys | None
    issuer: str | None = None
    audience: str | None = None
    algorithms: frozenset[str] = ASYMMETRIC
    leeway_seconds: float = 30.0

    @property
    def required(self) -> bool:
        return self.keys is not None

    async def owner(self, request: Request) -> str | None:
        """The uploader's subject, or None when uploads are anonymous; 401 when a token
        is required and missing or not valid."""
        if self.keys is None:
            return None
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise Unauthorized("a bearer token is required to upload", token_given=False)
        return await self.subject(token)

    async def owner_if_any(self, request: Request) -> str | None:
        """The subject of a valid bearer JWT the request carries, else None: for the
        routes where the job's own token is the other way in."""
        token = bearer_token(request.headers.get("authorization"))
        if self.keys is None or token is None:
            return None
        try:
            return await self.subject(token)
        except Unauthorized:
            return None

    async def subject(self, token: str) -> str:
        assert self.keys is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Unauthorized(_reason(error), token_given=True) from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise Unauthorized("the bearer token's algorithm is not accepted", token_given=True)
        kid = header.get("kid")
        try:
            key = await self.keys.key(kid if isinstance(kid, str) else None, algorithm)
        except UnknownKey:
            raise Unauthorized(
                "the bearer token's signing key is not one of the issuer's", token_given=True
            ) from None
        if key.algorithm_name != algorithm:
            raise Unauthorized("the bearer token's algorithm is not its key's", token_given=True)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["sub", "exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise Unauthorized(_reason(error), token_given=True) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("the bearer token's `sub` is not a string", token_given=True)
        return subject


def owner_auth(settings: OwnerAuthSettings, http_client: httpx.AsyncClient) -> OwnerAuth:
    """``UPLOAD_AUTH`` as the settings resolved it: anonymous, one static key, or the
    issuer's JWKS (its URL given, or found by OpenID Connect discovery); the JWKS is
    fetched with ``http_client``."""
    if settings.upload_auth != "jwt":
        return OwnerAuth(None)
    assert settings.upload_jwt_issuer is not None
    keys: SigningKeys
    if settings.upload_jwt_key is not None:
        algorithm = settings.upload_jwt_algorithm
        keys = StaticKey(settings.upload_jwt_key.get_secret_value(), algorithm)
        algorithms = frozenset({algorithm})
    else:
        keys = JwksKeys(
            http_client,
            issuer=settings.upload_jwt_issuer,
            jwks_url=settings.upload_jwt_jwks_url,
            cache_seconds=settings.upload_jwks_cache_seconds,
            min_refresh_seconds=settings.upload_jwks_min_refresh_seconds,
        )
        algorithms = ASYMMETRIC
    return OwnerAuth(
        keys,
        issuer=settings.upload_jwt_issuer,
        audience=settings.upload_jwt_audience,
        algorithms=algorithms,
        leeway_seconds=settings.upload_jwt_leeway_seconds,
    )
