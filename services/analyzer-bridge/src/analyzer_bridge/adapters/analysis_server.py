"""The analysis server's HTTP API (docs/architecture.md §7):
:class:`analyzer_bridge.ports.AnalysisServer` over httpx.

Every transport error (refused, reset, any timeout) leaves as
:class:`~analyzer_bridge.ports.ServerUnreachable`; any HTTP answer is a
:class:`~analyzer_bridge.ports.ServerAnswer` for the rules to judge.

With a signing secret, each request carries Standard Webhooks headers over its exact
body (:mod:`servicekit.webhooks`, the secret the analysis server signs its webhooks
with), so that the analysis server serves no one else (docs/architecture.md §7). The
``webhook-id`` is the job's: every attempt for a job is a retry of the same message,
so a server that remembers ids (the reference one does) starts no second analysis
when an answer was lost on its way back.
"""

import hashlib
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import httpx

from analyzer_bridge.ports import ServerAnswer, ServerUnreachable
from contracts import AnalysisRequest
from servicekit import webhooks
from servicekit.resources import Resource


def message_id(job_id: str) -> str:
    """The ``webhook-id`` of a job's analysis request: the same for every attempt, and
    without the ``.`` the spec forbids in ids (job ids are not trusted to lack one)."""
    return "msg_" + hashlib.sha256(f"analyze:{job_id}".encode()).hexdigest()[:32]


_LIMITS = httpx.Limits(max_keepalive_connections=8, keepalive_expiry=4.0)
"""Idle connections kept: fewer than httpx's 20, because its pool asks every idle
connection whether the server closed it (a ``poll`` through anyio) before each request
and after each answer. A burst of requests after a busy minute had left 20 idle ones
costing about 0.4 ms of CPU per request more than 8 (issue 21); an analysis request
is answered at once (202), so a few connections carry them. And each for 4 s, not
httpx's 5: uvicorn (the reference server) closes an idle connection after 5 s, and a
request sent on it just then was lost and retried."""


class HttpAnalysisServer(Resource):
    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        signing_secret: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._url = base_url.rstrip("/") + "/analyze"
        self._client = httpx.AsyncClient(
            timeout=timeout_seconds, transport=transport, limits=_LIMITS
        )
        self._secret = signing_secret
        self._clock = clock

    async def open(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._client.aclose)

    def _headers(self, job_id: str, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self._secret is not None:
            timestamp = int(self._clock())  # each attempt's own, as a retry's must be
            headers |= webhooks.signed_headers(self._secret, message_id(job_id), timestamp, body)
        return headers

    async def analyze(self, request: AnalysisRequest) -> ServerAnswer:
        # `deadline` is left out when unknown rather than sent as null: older servers
        # never saw the field, and a reader of the contract expects it absent.
        body = request.model_dump_json(exclude_none=True).encode()
        try:
            response = await self._client.post(
                self._url, content=body, headers=self._headers(request.job_id, body)
            )
        except httpx.TransportError as exc:  # includes every timeout
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return ServerAnswer(
            status=response.status_code,
            retry_after=response.headers.get("retry-after"),
            message=_message_of(response),
        )


def _message_of(response: httpx.Response) -> str:
    """The server's explanation: our own error shape, FastAPI's ``detail``, or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
        if "detail" in body:
            return str(body["detail"])[:500]
    return response.text[:500]
