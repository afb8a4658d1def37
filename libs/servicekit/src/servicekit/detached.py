"""Detached responses: the rest of a chunked HTTP/1.1 response written by the app
straight to the connection, after its ASGI call has returned.

A server-sent event stream lives for minutes and a process holds tens of thousands of
them, so what uvicorn keeps per open response is paid that many times: its
``RequestResponseCycle``, the cycle's ``asyncio.Event``, the scope and headers, the
request's task and the app's frames in it (about 8 KB per stream,
``bench/results/sse-memory.md``). The extension lets an app answer through ASGI as
usual (its checks, middleware and error answers unchanged), send
``http.response.start``, and then hand the body over:

    await send({"type": "http.response.detach", "stream": listener})

The protocol then calls ``listener.attached(response)`` with a :class:`DetachedResponse`,
a small slotted record holding the transport, and drops the cycle, the scope and the
task: the listener writes pre-framed chunks (:func:`chunk`) when it has something to
send, and hears of the connection only when it matters (``writable`` after the client
caught up, ``lost`` when it hung up). Ending the response hands the connection back to
uvicorn (keep-alive, or the next pipelined request) as the end of any response does.

The extension is in ``scope["extensions"]`` only where it works: the response must be
chunked (no ``content-length``) and not to a ``HEAD``; anything else is a RuntimeError.

The protocol that offers it, ``DetachingHttpToolsProtocol``, is a subclass of uvicorn's
httptools protocol and leans on its internals, so it lives in the compatibility layer
(:mod:`servicekit.compat.uvicorn_protocols`); ``servicekit.serve(..., detached=True)``
runs it. This module is what the app and the listener see.
"""

import asyncio
from typing import Protocol

__all__ = ["EXTENSION", "Connection", "DetachedResponse", "DetachedStream", "chunk"]

EXTENSION = "http.response.detach"

_LAST_CHUNK = b"0\r\n\r\n"


def chunk(body: bytes) -> bytes:
    """``body`` as one chunk of the chunked transfer coding (RFC 9112 §7.1): framed once
    by whoever shares it among many responses, written as is by each."""
    if not body:
        raise ValueError("an empty chunk would end the response")
    return b"%x\r\n%b\r\n" % (len(body), body)


class DetachedStream(Protocol):
    """What the app hands over with ``http.response.detach``."""

    def attached(self, response: "DetachedResponse") -> None:
        """The response is the listener's now: write to it, end it."""

    def writable(self) -> None:
        """The client read what was buffered (after :attr:`DetachedResponse.paused`)."""

    def lost(self) -> None:
        """The connection is gone before the response ended; it writes nothing more."""


class Connection(Protocol):
    """Where a detached response writes: the connection's asyncio protocol
    (``DetachingHttpToolsProtocol``)."""

    transport: asyncio.Transport

    def detached_ended(self, response: "DetachedResponse") -> None:
        """The response wrote its last chunk: the connection is the server's again."""


class DetachedResponse:
    """The body of one response, after its head: chunks straight to the transport."""

    __slots__ = ("_protocol", "keep_alive", "listener", "paused")

    def __init__(self, protocol: Connection, listener: DetachedStream, keep_alive: bool) -> None:
        self._protocol: Connection | None = protocol
        self.listener: DetachedStream | None = listener
        self.keep_alive = keep_alive
        """Whether the connection serves another request after this response."""
        self.paused = False
        """The transport's buffer is over its high-water mark: the client reads slower
        than the listener writes. Writing on grows the buffer; a listener that must not
        grow without bound waits for ``writable``."""

    def write(self, framed: bytes) -> None:
        """Write one or more chunks (:func:`chunk`); nothing once ended or lost."""
        protocol = self._protocol
        # Closing: the client is gone and connection_lost is on its way. uvloop closes
        # the socket's handle before it calls connection_lost, and a write in between
        # raises RuntimeError ("the handler is closed") where asyncio's loop drops it;
        # raised here, it would break off the fan-out of an event to every stream after
        # this one (servicekit.compat.aiokafka has the same story for Kafka).
        if protocol is not None and not protocol.transport.is_closing():
            protocol.transport.write(framed)

    def end(self, framed: bytes = b"") -> None:
        """Write ``framed`` (chunks, maybe none) and the last chunk; the connection goes
        back to the server. Once ended (or lost), nothing is written again."""
        protocol = self._protocol
        if protocol is None:
            return
        self.write(framed + _LAST_CHUNK if framed else _LAST_CHUNK)
        self.release()
        protocol.detached_ended(self)

    def release(self) -> None:
        """Forget the connection and the listener (the protocol's, once it is lost)."""
        # Breaks the cycles protocol ↔ response ↔ listener, so that reference counting
        # alone frees a finished stream (callers may keep it out of the collector).
        self._protocol = None
        self.listener = None
