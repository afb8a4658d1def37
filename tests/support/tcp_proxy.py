"""A TCP proxy a test owns, to take a dependency away from one service and give it back
without touching the server other tests share (the session's PostgreSQL, say)."""

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support.processes import free_port


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``.

    :meth:`cut` is the server going down as clients see it: open connections are
    closed and new ones refused. :meth:`black_hole` is a network that drops packets:
    connections are accepted (or stay open) and nothing comes back. :meth:`restore`
    serves again on the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        """Connections accepted so far."""

    async def restore(self) -> None:
        self._close_connections()
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def cut(self) -> None:
        self._flowing.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        self._close_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def black_hole(self) -> None:
        self._flowing.clear()

    def _close_connections(self) -> None:
        for writer in list(self._connections):
            with contextlib.suppress(OSError):
                # RST, as a crashed server's kernel would answer; no goodbye message.
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
        self._connections.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._connections.add(client_w)
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            self._connections.discard(client_w)
            return
        self._connections.add(upstream_w)
        pumps = [
            asyncio.create_task(self._pump(reader, writer))
            for reader, writer in ((client_r, upstream_w), (upstream_r, client_w))
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            self._connections.discard(writer)

    async def close(self) -> None:
        await self.cut()


@asynccontextmanager
async def tcp_proxy(target_host: str, target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port)
    await proxy.restore()
    try:
        yield proxy
    finally:
        await proxy.close()
