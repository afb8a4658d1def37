"""A client that sends the head and part of a request body and then nothing, or only a
trickle: raw HTTP/1.1 on a socket, since httpx reads no answer before it has sent its
whole body."""

import asyncio
import json
from typing import Any


class SlowRequest:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def send(
        cls, url: str, method: str, path: str, headers: dict[str, str], first: bytes
    ) -> "SlowRequest":
        """Open a connection to ``url`` (``http://host:port``) and send the request's head
        (its ``Content-Length`` among ``headers``) and ``first`` bytes of its body."""
        host, _, port = url.removeprefix("http://").partition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        fields = {"Host": "audiopipe", **headers}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        writer.write(head.encode() + b"\r\n" + first)
        await writer.drain()
        return cls(reader, writer)

    async def trickle(self, piece: bytes, every: float) -> None:
        """Send ``piece`` every ``every`` seconds until the server stops reading."""
        try:
            while True:
                await asyncio.sleep(every)
                self.writer.write(piece)
                await self.writer.drain()
        except (ConnectionError, OSError):
            return

    async def answer(self, within: float = 120.0) -> tuple[int, dict[str, str], dict[str, Any]]:
        """The status, headers and JSON body of the answer."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        status_line, *lines = raw.decode().split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
        body = await asyncio.wait_for(
            self.reader.readexactly(int(fields["content-length"])), within
        )
        return int(status_line.split()[1]), fields, json.loads(body)

    async def closed_by_server(self, within: float = 30.0) -> bool:
        """Whether the server closed the connection after its answer."""
        try:
            return await asyncio.wait_for(self.reader.read(1), within) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.transport.abort()
