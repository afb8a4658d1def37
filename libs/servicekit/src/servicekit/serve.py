"""The one way a service process starts: logs and tracing configured, then uvicorn."""

import contextlib
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from servicekit import logs
from servicekit.compat.uvicorn import STARTUP_FAILURE, Server, started
from servicekit.compat.uvicorn_protocols import (
    DetachingHttpToolsProtocol,
    InformationalHttpToolsProtocol,
)
from servicekit.service import shutdown_hook
from servicekit.settings import ServiceSettings
from servicekit.telemetry import configure_tracing

__all__ = ["serve", "server"]


def server(
    app: FastAPI,
    settings: ServiceSettings,
    *,
    informational: bool = False,
    detached: bool = False,
    **config: Any,
) -> Server:
    """The server :func:`serve` runs, for running it in-process (tests); ``config``
    overrides uvicorn options. ``informational`` lets the app send 1xx responses on
    HTTP/1.1 (:mod:`servicekit.informational`); the gateway's resumable uploads need it.
    ``detached`` lets it hand a response's body over to the protocol
    (:mod:`servicekit.detached`); the notifier's streams need it. When the server starts
    shutting down it first calls what the app's service asked for
    (``servicekit.service.Service.on_shutdown``)."""
    if informational and detached:
        raise ValueError("one protocol extension per server: informational or detached")
    protocol = InformationalHttpToolsProtocol if informational else DetachingHttpToolsProtocol
    options: dict[str, Any] = {
        **({"http": protocol} if informational or detached else {}),
        "host": settings.http_host,
        "port": settings.http_port,
        "log_config": None,
        "access_log": False,
        # The client's address and scheme as a trusted proxy saw them (X-Forwarded-*).
        "proxy_headers": True,
        "forwarded_allow_ips": settings.trusted_proxies,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        **config,
    }
    return Server(uvicorn.Config(app, **options), shutdown_hook(app))


def serve(
    app: FastAPI,
    settings: ServiceSettings,
    service: str,
    *,
    informational: bool = False,
    detached: bool = False,
) -> None:
    logs.configure(service, settings.log_level)
    configure_tracing(service)
    running = server(app, settings, informational=informational, detached=detached)
    with contextlib.suppress(KeyboardInterrupt):
        running.run()
    if not started(running):
        # As uvicorn.run: a failed start (e.g. the lifespan raised) is a failed process.
        sys.exit(STARTUP_FAILURE)
