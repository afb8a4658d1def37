"""Fair use on the real broker and database (issue 19 points 1, 2; docs/architecture.md
§6): the limits hold across two gateway replicas, a killed replica's uploads stop
counting, and uploads are authenticated against an issuer whose JWKS rotates."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.adapters.postgres import PostgresUploadStore
from gateway.adapters.postgres_limits import PostgresQuota
from gateway.app import create_app
from gateway.limits import FairUse, Refused
from gateway.settings import Settings
from tests.support.audio import sine_wav, wav_form
from tests.support.inprocess import bound_socket, serving
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

FILES = {"file": ("tone.wav", sine_wav(0.2), "audio/wav")}


def settings_for(infra: dict[str, str], schema: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra["KAFKA_BOOTSTRAP_SERVERS"],
        "database_url": infra["DATABASE_URL"],
        "database_schema": schema,
        "upload_rate_per_minute": 0,
        "uploads_open_per_client": 0,
        "upload_bytes_per_day": 0,
        "upload_bytes_in_flight": 0,
        **overrides,
    }
    return Settings(**values)


def client_at(url: str, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=30)


@pytest.fixture
def schema() -> str:
    return f"gw_fair_{uuid.uuid4().hex[:8]}"


async def test_the_rate_holds_across_two_replicas_and_each_client_has_its_own(
    infra: dict[str, str], schema: str
) -> None:
    settings = settings_for(infra, schema, upload_rate_per_minute=1, upload_rate_burst=3)
    async with (
        serving(create_app(settings), bound_socket()) as one,
        serving(create_app(settings), bound_socket()) as two,
        client_at(one, "127.0.0.2") as a1,
        client_at(two, "127.0.0.2") as a2,
        client_at(two, "127.0.0.3") as stranger,
    ):
        answers = [
            (await http.post("/tokens/t1/upload-audio", files=FILES)).status_code
            for http in (a1, a2, a1, a2)
        ]
        assert answers == [202, 202, 202, 429]
        refused = await a1.post("/tokens/t1/upload-audio", files=FILES)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_uploads"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await stranger.post("/tokens/t1/upload-audio", files=FILES)).status_code == 202


class SlowBody:
    """A multipart body of filler "audio" that sends its head, then waits for ``go``."""

    def __init__(self, size: int) -> None:
        self.body = wav_form(size, "slow")
        self.content_type = "multipart/form-data; boundary=slow"
        self.go = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body[:1000]
        await self.go.wait()
        yield self.body[1000:]


async def test_uploads_open_at_once_are_counted_across_replicas(
    infra: dict[str, str], schema: str
) -> None:
    settings = settings_for(infra, schema, uploads_open_per_client=2)
    async with (
        serving(create_app(settings), bound_socket()) as one,
        serving(create_app(settings), bound_socket()) as two,
        client_at(one, "127.0.0.4") as a1,
        client_at(two, "127.0.0.4") as a2,
    ):
        slow = [SlowBody(20_000), SlowBody(20_000)]

        async def send(http: httpx.AsyncClient, body: SlowBody) -> httpx.Response:
            headers = {"Content-Type": body.content_type, "Content-Length": str(len(body.body))}
            return await http.post("/tokens/t1/upload-audio", content=body, headers=headers)

        pending = [asyncio.create_task(send(a1, slow[0])), asyncio.create_task(send(a2, slow[1]))]
        async with PostgresQuota(settings, FairUse()) as quota:

            async def both_open() -> bool:
                return (await quota.usage_of("addr:127.0.0.4")).open_uploads == 2

            await eventually(both_open, within=10, what="both slow uploads to be admitted")
        third = await a2.post("/tokens/t1/upload-audio", files=FILES)
        assert third.status_code == 429
        assert third.json()["error"]["code"] == "too_many_open_uploads"
        for body in slow:
            body.go.set()
        assert [(await task).status_code for task in pending] == [202, 202]
        assert (await a1.post("/tokens/t1/upload-audio", files=FILES)).status_code == 202


async def test_a_killed_replicas_uploads_stop_counting_once_their_leases_lapse(
    infra: dict[str, str], schema: str
) -> None:
    settings = settings_for(infra, schema)
    rules = FairUse(rate_per_minute=0, open_per_client=1, bytes_per_day=0, bytes_in_flight=0)
    async with PostgresUploadStore(settings, 5), PostgresQuota(settings, rules, 1.0) as dead:
        await dead.admit_upload("addr:127.0.0.5", 100, 100)  # never released, never renewed
        async with PostgresQuota(settings, rules, 1.0) as alive:
            with pytest.raises(Refused):
                await alive.admit_upload("addr:127.0.0.5", 100, 100)

            async def admitted() -> bool:
                try:
                    await alive.admit_upload("addr:127.0.0.5", 100, 100)
                except Refused:
                    return False
                return True

            await eventually(admitted, within=10, what="the dead replica's lease to lapse")


async def test_bytes_per_day_and_in_flight_are_shared_and_refused_before_the_body(
    infra: dict[str, str], schema: str
) -> None:
    settings = settings_for(infra, schema)
    rules = FairUse(rate_per_minute=0, open_per_client=0, bytes_per_day=1000, bytes_in_flight=1500)
    async with (
        PostgresUploadStore(settings, 5),
        PostgresQuota(settings, rules) as one,
        PostgresQuota(settings, rules) as two,
    ):
        first = await one.admit_upload("addr:127.0.0.6", 800, 800)
        with pytest.raises(Refused) as caught:
            await two.admit_upload("addr:127.0.0.6", 300, 300)
        assert caught.value.refusal.code == "daily_bytes_exceeded"
        with pytest.raises(Refused) as caught:
            await two.admit_upload("addr:127.0.0.7", 800, 800)
        assert caught.value.refusal.code == "server_busy"
        await one.release(first)
        await two.admit_upload("addr:127.0.0.7", 800, 800)  # the first body is over
        usage = await two.usage_of("addr:127.0.0.6")
        assert usage.bytes_today == 800  # what it declared stays counted for the day


class RotatingIssuer:
    """An OpenID provider on a real socket: discovery, and a JWKS that rotates."""

    def __init__(self) -> None:
        self.url = ""
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "first"

    def rotate(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "second"

    def token(self, sub: str, key: Any = None, kid: str | None = None) -> str:
        claims = {"sub": sub, "iss": self.url, "aud": "audiopipe", "exp": int(time.time()) + 60}
        return jwt.encode(claims, key or self.key, "RS256", headers={"kid": kid or self.kid})

    def app(self) -> Starlette:
        async def configuration(_: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(_: Request) -> JSONResponse:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
            return JSONResponse({"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", configuration),
                Route("/jwks", jwks),
            ]
        )


async def test_uploads_need_the_issuers_jwt_and_a_rotated_key_works_without_a_restart(
    infra: dict[str, str], schema: str
) -> None:
    issuer = RotatingIssuer()
    sock = bound_socket()
    issuer.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with serving(issuer.app(), sock):
        settings = settings_for(
            infra,
            schema,
            upload_auth="jwt",
            upload_jwt_issuer=issuer.url,
            upload_jwt_audience="audiopipe",
            upload_jwks_min_refresh_seconds=0.01,
        )
        async with (
            serving(create_app(settings), bound_socket()) as url,
            client_at(url, "127.0.0.8") as http,
        ):
            missing = await http.post("/tokens/t1/upload-audio", files=FILES)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == 'Bearer realm="audiopipe"'

            def bearer(token: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {token}"}

            first = issuer.token("alice")
            ok = await http.post("/tokens/t1/upload-audio", files=FILES, headers=bearer(first))
            assert ok.status_code == 202, ok.text
            old_key, old_kid = issuer.key, issuer.kid
            issuer.rotate()
            rotated = await http.post(
                "/tokens/t1/upload-audio", files=FILES, headers=bearer(issuer.token("bob"))
            )
            assert rotated.status_code == 202, rotated.text
            owner = jwt.decode(rotated.json()["access_token"], options={"verify_signature": False})
            assert owner["owner"] == "bob"
            retired = issuer.token("alice", key=old_key, kid=old_kid)
            refused = await http.post(
                "/tokens/t1/upload-audio", files=FILES, headers=bearer(retired)
            )
            assert refused.status_code == 401
            assert refused.json()["error"]["message"] == (
                "the bearer token's signing key is not one of the issuer's"
            )
