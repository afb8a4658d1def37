"""What servicekit uses of uvicorn that uvicorn does not promise (checked against 0.54.0),
apart from the protocol subclasses (:mod:`servicekit.compat.uvicorn_protocols`).

- **ASGI types** (private module ``uvicorn._types``): the types uvicorn's protocol is
  written in, which the subclasses and their per-request wrappers must match.
- **Header checks** (undocumented: ``HEADER_RE``, ``HEADER_VALUE_RE`` of
  ``uvicorn.protocols.http.httptools_impl``): a 1xx response head the app writes itself
  (``servicekit.informational``) is held to the rules uvicorn holds a final head to.
- **A hook at the start of the shutdown** (:class:`Server`; undocumented:
  ``uvicorn.Server.shutdown(sockets)`` is what ``serve`` awaits first once it is told to
  exit, and it closes the listening sockets before it waits for the open responses).
  A response that never ends by itself, such as an SSE stream, would hold that wait and
  then be cut; the notifier's drain ends its streams first (docs/architecture.md §9).
- **A failed start** (:func:`started`, :data:`STARTUP_FAILURE`; undocumented:
  ``Server.started`` and ``uvicorn.config.STARTUP_FAILURE``): ``uvicorn.run`` exits with
  that code when the server did not start (e.g. the lifespan raised), and so does
  ``servicekit.serve``.

``libs/servicekit/tests/test_compat_upgrade.py`` checks that each name still exists.
"""

import socket
from collections.abc import Callable

import uvicorn
from uvicorn._types import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPScope,
    Scope,
)
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

__all__ = [
    "HEADER_RE",
    "HEADER_VALUE_RE",
    "STARTUP_FAILURE",
    "ASGI3Application",
    "ASGIReceiveCallable",
    "ASGISendCallable",
    "HTTPScope",
    "Scope",
    "Server",
    "ShutdownHook",
    "started",
]

ShutdownHook = Callable[[], None]
"""Runs when the server begins to shut down, before it stops accepting connections and
waits for the open responses to finish."""


class Server(uvicorn.Server):
    """uvicorn, with an optional hook at the start of its shutdown (see the module)."""

    def __init__(self, config: uvicorn.Config, on_shutdown: ShutdownHook | None = None) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._on_shutdown is not None:
            # Synchronous up to uvicorn closing its listening sockets: no request slips
            # in between the hook and the close.
            self._on_shutdown()
        await super().shutdown(sockets)


def started(server: uvicorn.Server) -> bool:
    """Whether ``server`` finished its start-up (sockets bound, lifespan started)."""
    done: bool = server.started
    return done
