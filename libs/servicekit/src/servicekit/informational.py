"""Informational (1xx) responses on HTTP/1.1, which ASGI and uvicorn otherwise lack.

uvicorn writes only ``100 Continue`` by itself; its one informational extension,
``http.response.early_hint``, is HTTP/2 only and always ``103``. The resumable upload
draft's ``104 (Upload Resumption Supported)`` (draft-ietf-httpbis-resumable-upload-11
§4.1) must reach an HTTP/1.1 client before the server reads the upload's body, so
this protocol offers the ASGI extension ``http.response.informational``: while the
final response has not started, the app may send

    {"type": "http.response.informational", "status": 104, "headers": [(name, value)]}

any number of times, and each is written to the connection at once. The extension is
in ``scope["extensions"]`` only where it works: HTTP/1.1 (RFC 9110 §15.2: no 1xx to an
HTTP/1.0 client).
"""

import asyncio
import http
from collections.abc import Iterable
from typing import Any, cast

from uvicorn._types import ASGI3Application, Scope
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from servicekit.asgi_extension import RequestExtension

EXTENSION = "http.response.informational"

# Not in http.HTTPStatus: the draft's name for 104 (draft -11 §4.1, §14.3).
_PHRASES = {104: "Upload Resumption Supported"}


def informational_head(status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The bytes of a 1xx response head; ValueError for what must not be sent."""
    if not 100 <= status < 200 or status == 101:
        # 101 switches protocols, which only uvicorn's upgrade path may do.
        raise ValueError(f"{status} is not an informational status this server can send")
    try:
        phrase = _PHRASES.get(status) or http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}".encode() + b"\r\n"]
    for name, value in headers:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            raise ValueError(f"invalid header {name!r}")
        lines.append(name.lower() + b": " + value + b"\r\n")
    return b"".join(lines) + b"\r\n"


class InformationalHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``http.response.informational`` for HTTP/1.1.

    Each request's app is wrapped so that it writes 1xx heads to this connection's
    transport; everything else is uvicorn's."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Per request (servicekit.asgi_extension says why).
        super()._start_asgi_task(cycle, cast(ASGI3Application, _Informational(self.transport, app)))


class _Informational(RequestExtension):
    """The app of one request, offered ``http.response.informational`` on HTTP/1.1."""

    __slots__ = ("final_started", "transport")

    name = EXTENSION

    def __init__(self, transport: asyncio.Transport, app: ASGI3Application) -> None:
        super().__init__(app)
        self.transport = transport
        self.final_started = False

    def offered(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["http_version"] == "1.1"

    async def passed(self, message: Any) -> None:
        self.final_started = self.final_started or message["type"] == "http.response.start"
        await self.send(message)

    def extension(self, message: Any) -> None:
        if self.final_started:
            raise RuntimeError("an informational response after the final response")
        head = informational_head(int(message["status"]), message.get("headers", []))
        if not self.transport.is_closing():
            self.transport.write(head)
