"""1xx responses on HTTP/1.1 through the shared start path (servicekit.informational):
seen on the wire before the final response, only where the app sends one, never to an
HTTP/1.0 client, and uvicorn's own behaviour unchanged for everything else."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI, Request, Response

from servicekit.compat.starlette import asgi_send
from servicekit.informational import EXTENSION, informational_head
from servicekit.serve import server
from servicekit.settings import ServiceSettings

pytestmark = pytest.mark.unit


def app() -> FastAPI:
    api = FastAPI()

    @api.post("/hint")
    async def hint(request: Request) -> Response:
        offered = EXTENSION in request.scope.get("extensions", {})
        if offered:
            await asgi_send(request)(
                {"type": EXTENSION, "status": 104, "headers": [(b"location", b"/u/1")]}
            )
        body = await request.body()
        return Response(f"{offered} {len(body)}", headers={"location": "/u/1"})

    return api


@asynccontextmanager
async def running(informational: bool) -> AsyncIterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    settings = ServiceSettings(http_host="127.0.0.1", http_port=port)
    served = server(app(), settings, informational=informational, lifespan="off")
    task = asyncio.create_task(served.serve())
    while not served.started:
        assert not task.done(), "the server stopped during start"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        served.should_exit = True
        await task


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()  # Connection: close ends it
    writer.close()
    await writer.wait_closed()
    return answer


def post(version: bytes) -> bytes:
    return (
        b"POST /hint HTTP/" + version + b"\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Connection: close\r\n\r\nhello"
    )


async def test_a_104_comes_before_the_final_response_on_http_1_1() -> None:
    async with running(informational=True) as port:
        answer = await exchange(port, post(b"1.1"))
    interim, _, final = answer.partition(b"\r\n\r\n")
    assert interim.split(b"\r\n") == [
        b"HTTP/1.1 104 Upload Resumption Supported",
        b"location: /u/1",
    ]
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert final.endswith(b"True 5")


async def test_an_http_1_0_client_is_not_offered_the_extension() -> None:
    async with running(informational=True) as port:
        answer = await exchange(port, post(b"1.0"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b" 104 " not in answer
    assert answer.endswith(b"False 5")


async def test_without_the_option_uvicorn_offers_no_extension() -> None:
    async with running(informational=False) as port:
        answer = await exchange(port, post(b"1.1"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"False 5")


def test_only_informational_statuses_with_valid_headers_can_be_sent() -> None:
    assert informational_head(103, [(b"Link", b"</a>")]) == (
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
    )
    for status in (101, 200, 99):
        with pytest.raises(ValueError, match="not an informational status"):
            informational_head(status, [])
    with pytest.raises(ValueError, match="invalid header"):
        informational_head(104, [(b"location", b"/a\r\nx: y")])
