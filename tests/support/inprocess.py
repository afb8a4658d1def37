"""Services as uvicorn servers inside the test process (for in-memory telemetry)."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


def bound_socket(listen: bool = True) -> socket.socket:
    """A socket on a free port: its URL is known before the app exists. Listening,
    connections made before the server starts wait in the backlog; not listening, they
    are refused until :func:`serving` starts on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    if listen:
        sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serving(app: Any, sock: socket.socket, **options: Any) -> AsyncIterator[str]:
    """``app`` served on ``sock`` until the block ends; ``options`` are uvicorn's (the
    notifier's streams need ``http=DetachingHttpToolsProtocol``, from
    ``servicekit.compat.uvicorn_protocols``)."""
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # raises the start-up error
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.02)
        yield url_of(sock)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            # Also when the server failed to start (its task raises again here).
            sock.close()
