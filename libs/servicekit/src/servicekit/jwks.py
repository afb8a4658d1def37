"""Where the keys that verify an owner's JWT come from (servicekit.auth): one static key,
or an OpenID Connect issuer's JWKS (RFC 7517 §5), fetched over httpx.

The JWKS URL is configured (``UPLOAD_JWT_JWKS_URL``) or found by OpenID Connect
Discovery 1.0 §4 from the issuer (``<issuer>/.well-known/openid-configuration``, whose
``issuer`` must be the configured one, §4.3). Keys are cached by ``kid`` and the set is
fetched again when it is older than ``cache_seconds``, or when a token names a ``kid``
the cache does not have: that is how a rotation reaches the gateway without a restart.
A stranger can make up any number of ``kid``\\s, so such refetches happen at most once
per ``min_refresh_seconds``, and one fetch at a time. While the issuer does not answer,
the keys already had keep working; with none, an upload is 503.
"""

import asyncio
import logging
import time
from typing import Protocol

import httpx
import jwt

from servicekit.http import DependencyUnavailable

__all__ = ["ASYMMETRIC", "JwksKeys", "SigningKeys", "StaticKey", "UnknownKey"]

log = logging.getLogger(__name__)

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class UnknownKey(Exception):
    """No key of the issuer has the token's ``kid`` (after a refresh, where allowed)."""


class SigningKeys(Protocol):
    """Where the issuer's verification keys come from: its JWKS
    (:class:`JwksKeys`) or one configured key (:class:`StaticKey`)."""

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        """The key for a token signed with ``algorithm`` under ``kid``; raises
        :class:`UnknownKey`, or ``DependencyUnavailable`` when the keys cannot be had."""
        ...


class StaticKey:
    """One key from the settings (``UPLOAD_JWT_KEY``): a PEM public key, or an HMAC
    secret for ``HS256``, used with exactly ``UPLOAD_JWT_ALGORITHM``."""

    def __init__(self, material: str, algorithm: str) -> None:
        algo = jwt.get_algorithm_by_name(algorithm)
        jwk = algo.to_jwk(algo.prepare_key(material), as_dict=True)
        self.algorithm = algorithm
        self._key = jwt.PyJWK.from_dict(jwk, algorithm)

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        if algorithm != self.algorithm:
            raise UnknownKey(algorithm)
        return self._key


class JwksKeys:
    """:class:`SigningKeys` from an issuer's JWKS."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        issuer: str,
        jwks_url: str | None = None,
        cache_seconds: float = 900.0,
        min_refresh_seconds: float = 30.0,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many times the set was fetched (what the refresh bound limits)."""

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        if self._wants_refresh(kid):
            async with self._lock:
                # Another request may have fetched while this one waited for the lock.
                if self._wants_refresh(kid):
                    await self._refresh()
        if not self._keys:
            raise DependencyUnavailable("the identity provider", detail="no keys fetched yet")
        found = self._keys.get(kid)
        if found is None and kid is None and len(self._keys) == 1:
            # A token without `kid` is matched only when the issuer has one key.
            found = next(iter(self._keys.values()))
        if found is None or found.algorithm_name != algorithm:
            raise UnknownKey(kid)
        return found

    def _wants_refresh(self, kid: str | None) -> bool:
        now = time.monotonic()
        if self._tried_at is not None and now - self._tried_at < self._min_refresh_seconds:
            return False  # the bound: at most one fetch per min_refresh_seconds
        stale = self._fetched_at is None or now - self._fetched_at >= self._cache_seconds
        return stale or kid not in self._keys

    async def _refresh(self) -> None:
        self._tried_at = time.monotonic()
        try:
            keys = await self._fetch()
        except (httpx.HTTPError, ValueError) as error:
            # Keep what we had; without any, no upload can be checked: 503 until the
            # issuer answers (tried again at most once per min_refresh_seconds).
            log.warning("the issuer's keys could not be fetched: %s", error)
            if not self._keys:
                raise DependencyUnavailable("the identity provider", detail=str(error)) from None
            return
        self._keys, self._fetched_at = keys, time.monotonic()
        self.fetches += 1
        log.info("fetched the issuer's keys: %s", ", ".join(sorted(str(k) for k in keys)))

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        url = self._jwks_url or await self._discover()
        answer = await self._client.get(url)
        answer.raise_for_status()
        document = answer.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError(f"{url} is not a JWK Set")
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm we do not use
            if key.algorithm_name in ASYMMETRIC:
                keys[key.key_id] = key
        if not keys:
            raise ValueError(f"{url} has no signing key we can use")
        return keys

    async def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        answer = await self._client.get(url)
        answer.raise_for_status()
        config = answer.json()
        if not isinstance(config, dict) or config.get("issuer") != self._issuer:
            raise ValueError(f"{url} is not the configuration of issuer {self._issuer}")
        jwks_uri = config.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError(f"{url} names no jwks_uri")
        self._jwks_url = jwks_uri
        return jwks_uri
