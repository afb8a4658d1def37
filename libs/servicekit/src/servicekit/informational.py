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

The protocol that offers it, ``InformationalHttpToolsProtocol``, is a subclass of
uvicorn's httptools protocol, so it lives in the compatibility layer
(:mod:`servicekit.compat.uvicorn_protocols`); ``servicekit.serve(..., informational=True)``
runs it.
"""

import http
from collections.abc import Iterable

from servicekit.compat.uvicorn import HEADER_RE, HEADER_VALUE_RE

__all__ = ["EXTENSION", "informational_head"]

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
