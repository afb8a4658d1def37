"""Fixtures: the reference app in memory with its outgoing calls routed to in-memory
stand-ins for S3 and the bridge, and an independent signature verifier."""

import base64
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from reference_analyzer.app import create_app
from reference_analyzer.settings import Settings
from reference_analyzer.testing import AudioServer, HostRouter, SignedRequests, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"reference-analyzer-test-key-32b!").decode()


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Standard Webhooks verification written from the spec with hmac and base64 only,
    independent of ``servicekit.webhooks``, which signs them."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1) for s in headers.get("webhook-signature", "").split()]
    return any(v == "v1" and hmac.compare_digest(sig, expected) for v, sig in offered)


@pytest.fixture
def signing_secret() -> str:
    return SECRET


@pytest.fixture
def verify() -> Callable[[Mapping[str, str], bytes], bool]:
    return lambda headers, body: verify_signature(SECRET, headers, body)


def fast_settings(**overrides: Any) -> Settings:
    """Quick retries, small blocks, a signing secret; the environment is not read."""
    values: dict[str, Any] = {
        "retry_backoff_seconds": 0.01,
        "retry_max_delay_seconds": 0.05,
        "block_frames": 4096,
        "progress_interval_seconds": 0,  # every step, as the tests of its order expect
        "webhook_signing_secret": SECRET,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings_for() -> Callable[..., Settings]:
    return fast_settings


@dataclass
class InMemory:
    client: httpx.AsyncClient
    """Talks to the reference app."""
    audio: AudioServer
    hooks: WebhookReceiver

    async def job(self, job_id: str, wait: float = 30) -> dict[str, Any]:
        """``GET /jobs/{job_id}`` once no analysis of the job is running."""
        response = await self.client.get(f"/jobs/{job_id}", params={"wait": wait})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture
def in_memory() -> Callable[..., contextlib.AbstractAsyncContextManager[InMemory]]:
    """``async with in_memory(**settings) as env``: the app, its lifespan included."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[InMemory]:
        audio, hooks = AudioServer(), WebhookReceiver()
        routes = {"audio.test": audio.app, "hooks.test": hooks.app}
        outgoing = httpx.AsyncClient(transport=HostRouter(routes))
        settings = fast_settings(**overrides)
        app = create_app(settings, client=outgoing)
        transport = httpx.ASGITransport(app=app)
        # Requests are signed as the bridge signs them, when the app has a secret.
        secret = settings.signing_secret
        auth = SignedRequests(secret) if secret else None
        async with (
            outgoing,
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=transport, base_url="http://reference", auth=auth
            ) as client,
        ):
            yield InMemory(client, audio, hooks)

    return start
