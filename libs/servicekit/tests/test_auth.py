"""Upload authentication (servicekit.auth, servicekit.jwks): JWTs of an issuer's JWKS,
keys by ``kid``, rotation without a restart at a bounded rate, and 401s that say what is
wrong without the library's words. The JWKS endpoint here is in memory; the gateway
against a real one that rotates is in test_fair_use.py."""

import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from servicekit.auth import OwnerAuth, Unauthorized
from servicekit.http import DependencyUnavailable
from servicekit.jwks import ASYMMETRIC, JwksKeys
from servicekit.settings import OwnerAuthSettings

pytestmark = pytest.mark.unit

ISSUER = "https://id.example.test"
AUDIENCE = "audiopipe"


class Issuer:
    """An OpenID provider in memory: discovery, a JWKS it can rotate, and a count of
    the key fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.up = True
        self.rotate()

    def rotate(self) -> str:
        kid = f"k{len(self.keys) + 1}"
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        return kid

    def token(self, kid: str | None = None, without: str = "", **claims: object) -> str:
        kid = kid or next(iter(self.keys))
        body = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
        body = {k: v for k, v in {**body, **claims}.items() if k != without}
        return jwt.encode(body, self.keys[kid], "RS256", headers={"kid": kid})

    def handler(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            return httpx.Response(503)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        self.fetches += 1
        jwks = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwks.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return httpx.Response(200, json={"keys": jwks})


def auth_for(issuer: Issuer, min_refresh: float = 30.0) -> OwnerAuth:
    client = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handler))
    keys = JwksKeys(client, issuer=ISSUER, min_refresh_seconds=min_refresh)
    return OwnerAuth(keys, issuer=ISSUER, audience=AUDIENCE, algorithms=ASYMMETRIC)


async def test_a_token_of_the_issuer_names_its_subject_found_by_discovery() -> None:
    issuer = Issuer()
    assert await auth_for(issuer).subject(issuer.token()) == "alice"


async def test_a_rotated_key_is_fetched_on_its_unknown_kid_without_a_restart() -> None:
    issuer = Issuer()
    auth = auth_for(issuer, min_refresh=0)
    assert await auth.subject(issuer.token()) == "alice"
    new_kid = issuer.rotate()
    assert await auth.subject(issuer.token(new_kid, sub="bob")) == "bob"
    assert issuer.fetches == 2


async def test_made_up_kids_refetch_the_keys_at_most_once_per_interval() -> None:
    issuer = Issuer()
    auth = auth_for(issuer, min_refresh=3600)
    assert await auth.subject(issuer.token()) == "alice"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for n in range(20):
        forged = jwt.encode(
            {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
            stranger,
            "RS256",
            headers={"kid": f"made-up-{n}"},
        )
        with pytest.raises(Unauthorized, match="signing key is not one of the issuer's"):
            await auth.subject(forged)
    assert issuer.fetches == 1


async def test_keys_had_keep_working_while_the_issuer_is_down_and_none_is_503() -> None:
    issuer = Issuer()
    auth = auth_for(issuer, min_refresh=0)
    assert await auth.subject(issuer.token()) == "alice"
    issuer.up = False
    assert await auth.subject(issuer.token()) == "alice"
    never_fetched = auth_for(issuer)
    with pytest.raises(DependencyUnavailable):
        await never_fetched.subject(issuer.token())


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "the bearer token has expired"),
        ({"aud": "someone-else"}, "the bearer token is not meant for this service (aud)"),
        ({"iss": "https://evil.example"}, "the bearer token is from another issuer (iss)"),
        ({"without": "sub"}, "the bearer token has no `sub` claim"),
    ],
)
async def test_a_refusal_says_what_is_wrong_in_our_words(
    claims: dict[str, Any], reason: str
) -> None:
    issuer = Issuer()
    with pytest.raises(Unauthorized) as caught:
        await auth_for(issuer).subject(issuer.token(**claims))
    assert caught.value.message == reason
    challenge = (caught.value.headers or {})["WWW-Authenticate"]
    assert (
        challenge
        == f'Bearer realm="audiopipe", error="invalid_token", error_description="{reason}"'
    )


async def test_an_algorithm_the_key_does_not_have_is_refused() -> None:
    issuer = Issuer()
    other = ec.generate_private_key(ec.SECP256R1())
    kid = next(iter(issuer.keys))
    token = jwt.encode(
        {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
        other,
        "ES256",
        headers={"kid": kid},
    )
    with pytest.raises(Unauthorized):
        await auth_for(issuer).subject(token)


def test_jwt_needs_issuer_and_audience_and_anonymous_takes_no_jwt_setting() -> None:
    with pytest.raises(ValueError, match="needs UPLOAD_JWT_ISSUER and UPLOAD_JWT_AUDIENCE"):
        OwnerAuthSettings(upload_auth="jwt", upload_jwt_issuer=ISSUER)
    with pytest.raises(ValueError, match="UPLOAD_AUTH=anonymous, but upload_jwt_issuer"):
        OwnerAuthSettings(upload_auth="anonymous", upload_jwt_issuer=ISSUER)
    assert (
        OwnerAuthSettings(upload_jwt_issuer=ISSUER, upload_jwt_audience=AUDIENCE).upload_auth
        == "jwt"
    )
    assert OwnerAuthSettings().upload_auth == "anonymous"  # development's default


def test_production_refuses_to_start_until_who_may_upload_is_chosen() -> None:
    # The gateway's and the notifier's settings are OwnerAuthSettings: both refuse.
    secret = "p" * 40  # a production secret, so that only the choice is missing
    with pytest.raises(ValueError, match="choose who may upload"):
        OwnerAuthSettings(environment="production", job_token_secret=secret)
    chosen = OwnerAuthSettings(
        environment="production", job_token_secret=secret, upload_auth="anonymous"
    )
    assert chosen.upload_auth == "anonymous"
    implied = OwnerAuthSettings(
        environment="production",
        job_token_secret=secret,
        upload_jwt_issuer=ISSUER,
        upload_jwt_audience=AUDIENCE,
    )
    assert implied.upload_auth == "jwt"
