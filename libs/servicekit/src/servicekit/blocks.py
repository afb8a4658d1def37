"""Bytes that arrive in pieces, cut into blocks of one size, each byte copied once.

The gateway cuts a request body into Kafka chunks, the uploader cuts chunks into S3
parts. Growing a ``bytearray`` and slicing a block off it copies every byte three times
(append, slice, ``bytes()``); here the pieces are held as views and joined once, when a
block is full (issue 14: the ingest path is bound by CPU).
"""

from typing import Generic, TypeVar

__all__ = ["Blocks", "Bytes"]

Bytes = bytes | bytearray | memoryview
B = TypeVar("B", bytes, bytearray)


class Blocks(Generic[B]):
    """Feed pieces with :meth:`add` and get back the whole blocks they complete, as
    ``kind`` (``bytes``, or ``bytearray`` for a consumer that sends a mutable buffer
    without copying it, such as aiohttp); what is left over (less than one block) is
    :meth:`rest`.

    A piece is held by reference until its bytes are in a block: a ``bytearray`` or a
    writable view must not change after it was added."""

    def __init__(self, size: int, kind: type[B]) -> None:
        if size <= 0:
            raise ValueError("a block holds at least one byte")
        self.size = size
        self._empty: B = kind()
        self._pieces: list[Bytes] = []
        self._held = 0
        self._joined: B | None = None

    def __len__(self) -> int:
        """Bytes held that are not in a block yet."""
        return self._held

    def add(self, data: Bytes) -> list[B]:
        view = memoryview(data).cast("B")
        if view:
            self._joined = None
        blocks = []
        while len(view) >= self.size - self._held:
            need = self.size - self._held
            self._pieces.append(view[:need])
            view = view[need:]
            blocks.append(self._empty.join(self._pieces))
            self._pieces.clear()
            self._held = 0
        if view:
            self._pieces.append(view)
            self._held += len(view)
        return blocks

    def rest(self) -> B:
        """The bytes held, as one block of ``kind``; they stay held (a second call copies
        nothing)."""
        if self._joined is None:
            self._joined = self._empty.join(self._pieces)
            self._pieces = [self._joined] if self._joined else []
        return self._joined

    def clear(self) -> None:
        self._pieces.clear()
        self._held = 0
        self._joined = None
