"""On uvloop, as the notifier runs, a detached response written after its client is gone
(uvloop has closed the socket, connection_lost has not run yet) writes nothing and
raises nothing: the fan-out of an event goes on to the streams after it."""

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
import uvloop

from servicekit.detached import DetachedResponse, chunk

pytestmark = pytest.mark.unit


class Listener:
    def attached(self, response: DetachedResponse) -> None: ...

    def writable(self) -> None: ...

    def lost(self) -> None: ...


def _after_a_hangup(act: Any) -> BaseException | None:
    """Open a loopback connection on uvloop, let its socket close under it and, one turn
    of the loop later (before connection_lost), call ``act(transport)``: what it raised."""

    async def main() -> BaseException | None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        try:
            transport.abort()
            await asyncio.sleep(0)
            try:
                act(transport)
            except Exception as exc:
                return exc
            return None
        finally:
            server.close()
            await server.wait_closed()

    return uvloop.run(main())


def _response(transport: Any, keep_alive: bool) -> DetachedResponse:
    ended: list[DetachedResponse] = []

    def detached_ended(response: DetachedResponse) -> None:
        ended.append(response)
        if not response.keep_alive:
            transport.close()

    protocol = SimpleNamespace(transport=transport, detached_ended=detached_ended)
    return DetachedResponse(cast(Any, protocol), Listener(), keep_alive)


def test_uvloop_raises_on_such_a_write() -> None:
    # What the guard is for: this fails should uvloop stop raising it.
    raised = _after_a_hangup(lambda transport: transport.write(b"x"))
    assert isinstance(raised, RuntimeError) and "handler is closed" in str(raised), raised


@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_write_and_the_end_after_the_client_left_raise_nothing(keep_alive: bool) -> None:
    def write_then_end(transport: Any) -> None:
        response = _response(transport, keep_alive)
        response.write(chunk(b"data: 1\n\n"))
        response.end(chunk(b"data: 2\n\n"))
        assert response.listener is None  # ended: the cycles to it are broken

    assert _after_a_hangup(write_then_end) is None
