"""A TCP proxy in front of the test broker that a test can cut and restore.

A Kafka client bootstraps from the address it is given, then connects to the addresses
the cluster advertises in its Metadata responses. A plain TCP proxy would only carry the
bootstrap connection, so this one rewrites the brokers of every Metadata response
(versions 0–5, what aiokafka speaks; they are not "flexible", so aiokafka's own structs
decode and encode them) to listeners of its own, one per broker. Everything else passes
through untouched. FindCoordinator answers are not rewritten: consumer groups reach
their coordinator directly, so put only producers and admin clients behind it.

Cutting closes every connection and stops listening, so clients see what a dead broker
gives them (connection refused); the other tests keep using the broker itself.
``requests`` counts what passed by API key (``PRODUCE_API_KEY``: produce requests).
"""

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka.protocol import metadata

PRODUCE_API_KEY = 0
METADATA_API_KEY = 3
_RESPONSES = {
    cls.API_VERSION: cls
    for cls in (
        metadata.MetadataResponse_v0,
        metadata.MetadataResponse_v1,
        metadata.MetadataResponse_v2,
        metadata.MetadataResponse_v3,
        metadata.MetadataResponse_v4,
        metadata.MetadataResponse_v5,
    )
}
HOST = "127.0.0.1"


@dataclass
class _Listener:
    upstream: tuple[str, int]
    port: int = 0
    server: asyncio.Server | None = None
    connections: set[asyncio.StreamWriter] = field(default_factory=set)


class KafkaProxy:
    def __init__(self, bootstrap: str) -> None:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        self._bootstrap = (host, int(port))
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._cut = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests: collections.Counter[int] = collections.Counter()

    @property
    def bootstrap(self) -> str:
        """The address clients use instead of the broker's."""
        return f"{HOST}:{self._listeners[self._bootstrap].port}"

    async def start(self) -> str:
        await self._listener(self._bootstrap)
        return self.bootstrap

    async def cut(self) -> None:
        """As if the broker died: connections closed, new ones refused."""
        self._cut = True
        for listener in self._listeners.values():
            await self._stop(listener)

    async def restore(self) -> None:
        """As if the broker came back, on the same addresses."""
        self._cut = False
        for listener in self._listeners.values():
            if listener.server is None:
                await self._serve(listener)

    async def close(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listener(self, upstream: tuple[str, int]) -> _Listener:
        listener = self._listeners.get(upstream)
        if listener is None:
            listener = self._listeners[upstream] = _Listener(upstream)
            if not self._cut:
                await self._serve(listener)
        return listener

    async def _serve(self, listener: _Listener) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._carry(listener, reader, writer)

        listener.server = await asyncio.start_server(
            accepted, HOST, listener.port, reuse_address=True
        )
        listener.port = listener.server.sockets[0].getsockname()[1]

    async def _stop(self, listener: _Listener) -> None:
        if listener.server is not None:
            listener.server.close()
            for writer in list(listener.connections):
                writer.transport.abort()
            await listener.server.wait_closed()
            listener.server = None

    async def _carry(
        self, listener: _Listener, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(*listener.upstream)
        except OSError:
            client_w.transport.abort()
            return
        listener.connections.update((client_w, broker_w))
        metadata_requests: dict[int, int] = {}  # correlation id -> api version
        pumps = [
            asyncio.create_task(self._requests(client_r, broker_w, metadata_requests)),
            asyncio.create_task(self._responses(broker_r, client_w, metadata_requests)),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for writer in (client_w, broker_w):
            listener.connections.discard(writer)
            writer.transport.abort()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes:
        size = await reader.readexactly(4)
        return size + await reader.readexactly(int.from_bytes(size, "big"))

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: dict[int, int]
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                frame = await self._frame(reader)
                api_key = int.from_bytes(frame[4:6], "big")
                self.requests[api_key] += 1
                if api_key == METADATA_API_KEY:
                    version = int.from_bytes(frame[6:8], "big")
                    pending[int.from_bytes(frame[8:12], "big")] = version
                writer.write(frame)
                await writer.drain()

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: dict[int, int]
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                frame = await self._frame(reader)
                version = pending.pop(int.from_bytes(frame[4:8], "big"), None)
                if version is not None:
                    frame = await self._rewritten(frame, version)
                writer.write(frame)
                await writer.drain()

    async def _rewritten(self, frame: bytes, version: int) -> bytes:
        # Every version has brokers, which the response classes do not type.
        response: Any = _RESPONSES[version].decode(frame[8:])
        brokers = []
        for node in response.brokers:
            listener = await self._listener((node[1], node[2]))
            brokers.append((node[0], HOST, listener.port, *node[3:]))
        response.brokers = brokers
        body: bytes = frame[4:8] + response.encode()
        return len(body).to_bytes(4, "big") + body
