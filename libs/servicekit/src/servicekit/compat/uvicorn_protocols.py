"""uvicorn's httptools protocol with an ASGI extension: the two subclasses that offer
``http.response.detach`` (:mod:`servicekit.detached`) and
``http.response.informational`` (:mod:`servicekit.informational`). Checked against
uvicorn 0.54.0.

Neither extension can be had through what uvicorn promises (its options, ASGI), so
both are subclasses of ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``, and
each line here leans on how that class keeps a request:

- private ``_start_asgi_task(cycle, app)``: where each request's app starts; both wrap
  the app there, per request (:mod:`servicekit.asgi_extension` says why not once);
- the protocol's per-request state, ``cycle``, ``scope``, ``headers``, ``url``, which
  a detached response clears so that the open stream keeps none of it, and which
  uvicorn reads in ``on_headers_complete``, ``on_body``, ``on_message_complete``,
  ``connection_lost`` and ``shutdown`` to queue, feed and end requests;
- ``RequestResponseCycle``'s ``disconnected``, ``response_started``,
  ``response_complete``, ``chunked_encoding`` and ``keep_alive``;
- ``flow.write_paused``, ``on_response_complete()`` (what starts the next pipelined
  request), and the constructor's ``(config, server_state, app_state, _loop)``.

On an upgrade of uvicorn, re-read ``HttpToolsProtocol`` and ``RequestResponseCycle`` in
``uvicorn/protocols/http/httptools_impl.py`` against this module, then run
``libs/servicekit/tests/test_compat_upgrade.py``, ``test_informational.py`` and
``services/notifier/tests/test_detached_streams.py``.
"""

import asyncio
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from servicekit.asgi_extension import RequestExtension
from servicekit.compat.uvicorn import ASGI3Application, Scope
from servicekit.detached import EXTENSION as DETACH
from servicekit.detached import DetachedResponse, DetachedStream
from servicekit.informational import EXTENSION as INFORMATIONAL
from servicekit.informational import informational_head

__all__ = ["DetachingHttpToolsProtocol", "InformationalHttpToolsProtocol"]


class DetachingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``http.response.detach`` (:mod:`servicekit.detached`).

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
            response.release()
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
            response.release()
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

    name = DETACH

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


class InformationalHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``http.response.informational`` for HTTP/1.1
    (:mod:`servicekit.informational`).

    Each request's app is wrapped so that it writes 1xx heads to this connection's
    transport; everything else is uvicorn's."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Per request (servicekit.asgi_extension says why).
        super()._start_asgi_task(cycle, cast(ASGI3Application, _Informational(self.transport, app)))


class _Informational(RequestExtension):
    """The app of one request, offered ``http.response.informational`` on HTTP/1.1."""

    __slots__ = ("final_started", "transport")

    name = INFORMATIONAL

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
