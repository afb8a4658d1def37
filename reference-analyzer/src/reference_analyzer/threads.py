"""Blocking work off the event loop, safe to cancel."""

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``asyncio.to_thread``, except that a cancelled caller waits for the thread to
    end: a thread cannot be interrupted, and the caller would otherwise close a file
    that the thread is still reading."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # mark it retrieved; the cancellation is what matters now
        raise
