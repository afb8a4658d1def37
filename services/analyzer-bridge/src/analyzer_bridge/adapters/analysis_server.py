"""The analysis server's HTTP API (docs/architecture.md §7):
:class:`analyzer_bridge.ports.AnalysisServer` over httpx.

Every transport error (refused, reset, any timeout) leaves as
:class:`~analyzer_bridge.ports.ServerUnreachable`; any HTTP answer is a
:class:`~analyzer_bridge.ports.ServerAnswer` for the rules to judge.
"""

from contextlib import AsyncExitStack

import httpx

from analyzer_bridge.ports import ServerAnswer, ServerUnreachable
from contracts import AnalysisRequest
from servicekit.resources import Resource


class HttpAnalysisServer(Resource):
    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self._url = base_url.rstrip("/") + "/analyze"
        self._client = httpx.AsyncClient(timeout=timeout_seconds, transport=transport)

    async def open(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._client.aclose)

    async def analyze(self, request: AnalysisRequest) -> ServerAnswer:
        try:
            response = await self._client.post(self._url, json=request.model_dump(mode="json"))
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
