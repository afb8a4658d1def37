"""Detached responses: the rest of a chunked HTTP/1.1 response written by the app
straight to the connection, after its ASGI call has returned.

A server-sent event stream lives for minutes and a process holds tens of thousands of
them, so what uvicorn keeps per open response is paid that many times: its
``RequestResponseCycle``, the cycle's ``asyncio.Event``, the scope and headers, the
request's task and the app's frames in it (about 8 KB per stream,
``bench/results/sse-memory.md``). This protocol lets an app answer through ASGI as
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
"""

import asyncio
from typing import Any, Protocol, cast

from uvicorn._types import ASGI3Application, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from servicekit.asgi_extension import RequestExtension

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


class DetachedResponse:
    """The body of one response, after its head: chunks straight to the transport."""

    __slots__ = ("_protocol", "keep_alive", "listener", "paused")

    def __init__(
        self, protocol: "DetachingHttpToolsProtocol", listener: DetachedStream, keep_alive: bool
    ) -> None:
        self._protocol: DetachingHttpToolsProtocol | None = protocol
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
        # this one (servicekit.kafka_uvloop has the same story for Kafka).
        if protocol is not None and not protocol.transport.is_closing():
            protocol.transport.write(framed)

    def end(self, framed: bytes = b"") -> None:
        """Write ``framed`` (chunks, maybe none) and the last chunk; the connection goes
        back to the server. Once ended (or lost), nothing is written again."""
        protocol = self._protocol
        if protocol is None:
            return
        self.write(framed + _LAST_CHUNK if framed else _LAST_CHUNK)
        self._detach()
        protocol.detached_ended(self)

    def _detach(self) -> None:
        # Breaks the cycles protocol ↔ response ↔ listener, so that reference counting
        # alone frees a finished stream (callers may keep it out of the collector).
        self._protocol = None
        self.listener = None


class DetachingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``http.response.detach`` (see the module).

    Everything else is uvicorn's: a request that detaches nothing is served exactly as
    by ``HttpToolsProtocol``."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.detached: DetachedResponse | None = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Per request (servicekit.asgi_extension says why).
        super()._start_asgi_task(cycle, cast(ASGI3Application, _Detaching(self, cycle, app)))

    def _detach(self, cycle: RequestResponseCycle, listener: DetachedStream) -> None:
        if cycle.disconnected:  # the client left before the head (uvicorn wrote nothing)
            listener.lost()
            return
        if not cycle.response_started or cycle.response_complete or not cycle.chunked_encoding:
            raise RuntimeError("http.response.detach needs a started, chunked response")
        # The cycle is done as far as uvicorn's task is concerned (it returns quietly);
        # the protocol forgets it, its scope and headers (pipelined requests behind
        # this one keep their own).
        cycle.response_complete = True
        if self.cycle is cycle:
            self.cycle = None  # type: ignore[assignment]
            self.scope = None  # type: ignore[assignment]
            self.headers = None  # type: ignore[assignment]
            self.url = b""
        response = DetachedResponse(self, listener, cycle.keep_alive)
        if self.transport.is_closing():
            response._detach()
            listener.lost()
            return
        self.detached = response
        response.paused = self.flow.write_paused
        try:
            listener.attached(response)
        except BaseException:
            self.transport.close()  # connection_lost tells the listener
            raise

    def detached_ended(self, response: DetachedResponse) -> None:
        """The detached response wrote its last chunk: as the end of any response."""
        if self.detached is response:
            self.detached = None
        if self.cycle is _UNFINISHED:  # a pipelined upgrade request queued nothing
            self.cycle = None  # type: ignore[assignment]
        if not response.keep_alive:
            self.transport.close()
        self.on_response_complete()

    # A request pipelined behind a detached response waits for its end, as uvicorn
    # makes it wait behind an unfinished cycle.
    def on_headers_complete(self) -> None:
        if self.detached is not None and self.cycle is None:
            self.cycle = _UNFINISHED
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None:  # None: the body of a request answered by a stream
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.cycle is not None:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        response, self.detached = self.detached, None
        if response is not None and response.listener is not None:
            listener = response.listener
            response._detach()
            listener.lost()
        if self.cycle is _UNFINISHED:
            self.cycle = None  # type: ignore[assignment]
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self.detached is not None:
            # As uvicorn does for an unfinished response: the connection closes once
            # it ends (the app's shutdown hook ends it, docs/architecture.md §9).
            self.detached.keep_alive = False
            return
        super().shutdown()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.detached is not None:
            self.detached.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        response = self.detached
        if response is not None and response.paused:
            response.paused = False
            if response.listener is not None:
                response.listener.writable()


class _Detaching(RequestExtension):
    """The app of one request, offered ``http.response.detach`` (not for ``HEAD``)."""

    __slots__ = ("cycle", "protocol")

    name = EXTENSION

    def __init__(
        self,
        protocol: DetachingHttpToolsProtocol,
        cycle: RequestResponseCycle,
        app: ASGI3Application,
    ) -> None:
        super().__init__(app)
        self.protocol = protocol
        self.cycle = cycle

    def offered(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] != "HEAD"

    def extension(self, message: Any) -> None:
        self.protocol._detach(self.cycle, message["stream"])


class _Unfinished:
    """Stands for the detached response where uvicorn looks for the current cycle."""

    response_complete = False


_UNFINISHED = cast(RequestResponseCycle, _Unfinished())
