"""The upload route over HTTP (in memory: the Kafka sink is a fake)."""

import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_fakes import FakeQuota, FakeSink, FakeUploadStore

from gateway.app import Adapters, create_app
from gateway.settings import Settings
from servicekit.tokens import COOKIE_NAME, JobTokens
from tests.support.audio import WAV_HEAD

pytestmark = pytest.mark.unit

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


ISSUER = "https://id.example.test/"
AUDIENCE = "audiopipe-uploads"
JWT_ON = {
    "upload_jwt_key": PUBLIC_PEM,
    "upload_jwt_issuer": ISSUER,
    "upload_jwt_audience": AUDIENCE,
}


def client(**settings: object) -> tuple[httpx.AsyncClient, FakeSink]:
    sink = FakeSink()
    fakes = Adapters(FakeUploadStore(), FakeQuota(), sink)
    app = create_app(Settings(**settings), fakes)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway"), sink


def forged_hs256_with_public_key() -> dict[str, Any]:
    """The classic algorithm-confusion forgery: HS256 keyed with the public key."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": "mallory", "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE}
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(PUBLIC_PEM.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return {"Authorization": f"Bearer {head}.{body}.{b64(mac)}"}


def bearer(
    sub: str = "alice", key: Any = PRIVATE, alg: str = "RS256", **claims: object
) -> dict[str, Any]:
    claims = {"sub": sub, "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE, **claims}
    token = jwt.encode(claims, key, algorithm=alg)
    return {"Authorization": f"Bearer {token}"}


FILES = {"file": ("tone.wav", WAV_HEAD + b"\0" * 1000, "audio/wav")}


async def test_anonymous_upload_is_accepted_with_a_job_token_and_cookie() -> None:
    http, sink = client()
    async with http:
        answer = await http.post("/tokens/t-1/upload-audio", files=FILES)
    assert answer.status_code == 202
    body = answer.json()
    tokens = JobTokens(Settings().job_token_secret.get_secret_value(), 60)
    assert tokens.check(body["access_token"], body["job_id"]) is None
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert f"Path=/tokens/analysis-progress/{body['job_id']}" in cookie
    assert body["progress_url"].startswith(f"/tokens/analysis-progress/{body['job_id']}?")
    assert sink.kinds()[-1] == "JobStatusChanged"


async def test_with_a_key_configured_an_upload_without_bearer_token_is_401() -> None:
    http, sink = client(**JWT_ON)
    async with http:
        answer = await http.post("/tokens/t1/upload-audio", files=FILES)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["www-authenticate"] == 'Bearer realm="audiopipe"'
    assert answer.json()["error"]["message"] == "a bearer token is required to upload"
    assert sink.messages == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-jwt"},
        bearer(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        bearer(exp=int(time.time()) - 120),  # past the 30 s leeway
        # The public key used as an HMAC secret: algorithm confusion is refused.
        forged_hs256_with_public_key(),
    ],
)
async def test_invalid_bearer_tokens_are_401_and_change_nothing(headers: dict[str, Any]) -> None:
    http, sink = client(**JWT_ON)
    async with http:
        answer = await http.post("/tokens/t1/upload-audio", files=FILES, headers=headers)
    assert answer.status_code == 401
    assert sink.messages == []


async def test_the_token_subject_is_recorded_as_the_owner() -> None:
    http, sink = client(**JWT_ON)
    async with http:
        answer = await http.post("/tokens/t1/upload-audio", files=FILES, headers=bearer("bob"))
    assert answer.status_code == 202
    started = sink.messages[0][2]
    assert started.owner == "bob"
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert claims["owner"] == "bob"


@pytest.mark.parametrize("token_id", ["a b", "x" * 129, "semi;colon"])
async def test_a_bad_token_id_is_422(token_id: str) -> None:
    http, sink = client()
    async with http:
        answer = await http.post(f"/tokens/{token_id}/upload-audio", files=FILES)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_token_id"
    assert sink.messages == []


async def test_a_declared_size_over_the_limit_is_413_before_reading_the_body() -> None:
    http, sink = client(max_upload_bytes=1000)
    async with http:
        answer = await http.post(
            "/tokens/t1/upload-audio", files={"file": ("a.wav", WAV_HEAD + b"\0" * 200_000)}
        )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"
    assert sink.messages == []


@pytest.mark.parametrize(
    "request_args",
    [
        {"data": {"name": "song"}},  # a form, urlencoded as clients send one without files
        {"files": {"upload": ("a.wav", WAV_HEAD, "audio/wav")}},  # the wrong field name
        {},  # no body at all
    ],
    ids=["urlencoded", "other-field", "no-body"],
)
async def test_a_request_without_a_file_field_is_422_naming_the_field(request_args) -> None:
    http, sink = client()
    async with http:
        answer = await http.post("/tokens/t1/upload-audio", **request_args)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "missing_file"
    assert "`file`" in answer.json()["error"]["message"]
    assert sink.messages == []


async def test_a_riff_wave_header_alone_is_422_and_nothing_is_sent() -> None:
    http, sink = client()
    files = {"file": ("tone.wav", b"RIFF\x04\x00\x00\x00WAVE", "audio/wav")}
    async with http:
        answer = await http.post("/tokens/t1/upload-audio", files=files)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "truncated_audio"
    assert sink.messages == []


async def test_with_kafka_known_down_an_upload_is_503_before_its_body_is_read() -> None:
    sink = FakeSink(up=False)
    app = create_app(Settings(), Adapters(FakeUploadStore(), FakeQuota(), sink))
    body_reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal body_reads
        body_reads += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tokens/t-1/upload-audio",
        "raw_path": b"/tokens/t-1/upload-audio",
        "query_string": b"",
        "headers": [
            (b"host", b"gateway"),
            (b"content-type", b"multipart/form-data; boundary=BB"),
            (b"content-length", b"1000000"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("gateway", 80),
    }
    await app(scope, receive, send)
    start = sent[0]
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"5"
    assert b'"code":"unavailable"' in b"".join(m.get("body", b"") for m in sent[1:])
    assert body_reads == 0
    assert sink.messages == []


async def test_once_kafka_answers_again_uploads_are_accepted() -> None:
    http, sink = client()
    sink.up = False
    async with http:
        refused = await http.post("/tokens/t-1/upload-audio", files=FILES)
        sink.up = True
        accepted = await http.post("/tokens/t-1/upload-audio", files=FILES)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
    assert accepted.status_code == 202


async def test_a_listed_origin_may_run_a_resumable_client_and_read_its_headers() -> None:
    origin = "https://app.example"
    http, _ = client(cors_allowed_origins=[origin])
    async with http:
        preflight = await http.options(
            "/uploads/00000000-0000-4000-8000-000000000000",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "upload-offset, tus-resumable",
            },
        )
        assert preflight.status_code == 200
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        answer = await http.post("/tokens/t1/upload-audio", headers={"Origin": origin})
    exposed = answer.headers["access-control-expose-headers"].lower()
    assert "location" in exposed
    assert "upload-offset" in exposed


class NeverRead:
    """A request body that fails the test if anything reads it."""

    def __aiter__(self) -> "NeverRead":
        return self

    async def __anext__(self) -> bytes:
        raise AssertionError("the body was read")


async def test_beyond_the_rate_an_upload_is_429_before_its_body_is_read() -> None:
    from gateway.limits import FairUse

    sink = FakeSink()
    quota = FakeQuota(
        FairUse(rate_per_minute=1, burst=2, open_per_client=0, bytes_per_day=0, bytes_in_flight=0)
    )
    app = create_app(Settings(), Adapters(FakeUploadStore(), quota, sink))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        for _ in range(2):
            assert (await http.post("/tokens/t1/upload-audio", files=FILES)).status_code == 202
        published = len(sink.messages)
        refused = await http.post(
            "/tokens/t1/upload-audio",
            content=NeverRead(),
            headers={"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "99"},
        )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_uploads"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(sink.messages) == published  # nothing stored or published
    assert quota.leases == {}  # every admitted body released its hold


async def test_each_client_address_has_its_own_share() -> None:
    from gateway.limits import FairUse

    quota = FakeQuota(
        FairUse(rate_per_minute=1, burst=1, open_per_client=0, bytes_per_day=0, bytes_in_flight=0)
    )
    app = create_app(Settings(), Adapters(FakeUploadStore(), quota, FakeSink()))
    for host, expected in (("127.0.0.2", 202), ("127.0.0.2", 429), ("127.0.0.3", 202)):
        transport = httpx.ASGITransport(app=app, client=(host, 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            answer = await http.post("/tokens/t1/upload-audio", files=FILES)
        assert answer.status_code == expected, host


async def test_the_progress_url_and_cookie_carry_a_token_that_only_reads() -> None:
    from servicekit.tokens import Scope, TokenProblem

    http, _ = client()
    async with http:
        body = (await http.post("/tokens/t-1/upload-audio", files=FILES)).json()
    tokens = JobTokens(Settings().job_token_secret.get_secret_value(), 60)
    shared = body["progress_url"].split("access_token=")[1]
    assert tokens.check(shared, body["job_id"], Scope.READ) is None
    assert tokens.check(shared, body["job_id"], Scope.WRITE) is TokenProblem.INSUFFICIENT_SCOPE
    assert tokens.check(body["access_token"], body["job_id"], Scope.WRITE) is None


async def test_an_owners_limits_follow_the_owner_across_addresses() -> None:
    from gateway.limits import FairUse

    quota = FakeQuota(
        FairUse(rate_per_minute=1, burst=1, open_per_client=0, bytes_per_day=0, bytes_in_flight=0)
    )
    fakes = Adapters(FakeUploadStore(), quota, FakeSink())
    app = create_app(Settings(**JWT_ON), fakes)  # type: ignore[arg-type]
    answers = []
    for host, sub in (("127.0.0.2", "alice"), ("127.0.0.3", "alice"), ("127.0.0.3", "bob")):
        transport = httpx.ASGITransport(app=app, client=(host, 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            answer = await http.post("/tokens/t1/upload-audio", files=FILES, headers=bearer(sub))
        answers.append(answer.status_code)
    assert answers == [202, 429, 202]  # alice's share is alice's wherever she is; bob has his
