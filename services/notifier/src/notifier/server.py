"""The notifier's HTTP server: uvicorn, but shutdown first ends the open SSE streams.

uvicorn's graceful shutdown stops accepting connections and then waits (up to its
timeout) for every response to finish; an SSE response never finishes by itself, so
the streams would hold the shutdown and then be cut. Ending them first lets each client
reconnect at once, to another replica, and resume by Last-Event-ID (issue 5).
"""

import socket
from collections.abc import Callable

import uvicorn

from notifier.app import SERVICE, create_app
from notifier.settings import Settings
from servicekit import logs


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Synchronous up to uvicorn closing its listening sockets: no request slips in.
        self._drain()
        await super().shutdown(sockets)


def build(settings: Settings, **config: object) -> DrainingServer:
    """The server of a notifier app; ``config`` overrides uvicorn options."""
    app = create_app(settings)
    options: dict[str, object] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        **config,
    }
    return DrainingServer(uvicorn.Config(app, **options), app.state.services.drain)  # type: ignore[arg-type]


def serve(settings: Settings) -> None:
    logs.configure(SERVICE, settings.log_level)
    build(settings).run()
