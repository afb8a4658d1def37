"""A take-over ends an append only once its body goes quiet (docs/architecture.md §12):
the bytes already on their way are still read, a silent connection is let go, and a
sender that never stops is let go after the drain's limit."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.requests import ClientDisconnect

from gateway.resumable.uploads import TakenOver, until_taken_over

pytestmark = pytest.mark.unit


async def read(
    body: AsyncIterator[bytes], stop: asyncio.Event, **limits: float
) -> tuple[list[bytes], type[Exception] | None]:
    """The pieces read, and how the reading ended (None: the body ended)."""
    got: list[bytes] = []
    try:
        async for piece in until_taken_over(body, stop, **limits):
            got.append(piece)
    except (TakenOver, ClientDisconnect) as exc:
        return got, type(exc)
    return got, None


async def test_pieces_already_buffered_are_read_after_the_take_over_then_silence_ends_it() -> None:
    stop = asyncio.Event()
    never = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        stop.set()  # a HEAD arrived; what the edge still holds follows at once
        for piece in (b"b", b"c", b"d"):
            yield piece
        await never.wait()  # then the cut connection is silent
        yield b"never"

    assert await read(body(), stop, quiet=0.05) == ([b"a", b"b", b"c", b"d"], TakenOver)


async def test_a_cut_connection_that_delivers_its_bytes_then_closes_ends_as_a_disconnect() -> None:
    stop = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        stop.set()
        yield b"b"
        raise ClientDisconnect()

    assert await read(body(), stop) == ([b"a", b"b"], ClientDisconnect)


async def test_a_sender_that_never_goes_quiet_is_let_go_after_the_limit() -> None:
    stop = asyncio.Event()
    stop.set()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0)
            yield b"x"

    got, ended = await read(endless(), stop, quiet=10.0, most=0.05)
    assert ended is TakenOver
    assert got and set(got) == {b"x"}


async def test_without_a_take_over_the_body_is_read_to_its_end() -> None:
    async def body() -> AsyncIterator[bytes]:
        for piece in (b"a", b"b"):
            yield piece

    assert await read(body(), asyncio.Event()) == ([b"a", b"b"], None)
