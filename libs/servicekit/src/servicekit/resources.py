"""Adapters that hold a client (a pool, an S3 or HTTP client) open while they are
entered: the composition root builds them first, its lifespan enters them."""

from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

__all__ = ["Resource"]


class Resource:
    """Base of such an adapter: :meth:`open` opens what it needs and registers each
    cleanup on the stack; leaving (or a failure while opening) runs them in reverse."""

    def __init__(self) -> None:
        self._exit = AsyncExitStack()

    async def open(self, stack: AsyncExitStack) -> None:
        """Open what the adapter needs; register every cleanup on ``stack``."""

    async def __aenter__(self) -> Self:
        try:
            await self.open(self._exit)
        except BaseException:
            await self._exit.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit.aclose()
