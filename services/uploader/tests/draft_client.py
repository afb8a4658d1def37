"""A small client written to draft-ietf-httpbis-resumable-upload-11 (interop version 8),
for the tests: careful creation, append, offset retrieval, completion."""

import base64
import hashlib
from collections.abc import AsyncIterator

import httpx

INTEROP = {"Upload-Draft-Interop-Version": "8"}


def repr_digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


class DraftClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=120)

    async def create(self, data: bytes, filename: str = "a.wav") -> httpx.Response:
        """Careful creation: an empty request that only makes the upload resource."""
        async with self.client() as client:
            return await client.post(
                "/tokens/t1/upload-audio",
                content=b"",
                headers={
                    **INTEROP,
                    "Upload-Complete": "?0",
                    "Upload-Length": str(len(data)),
                    "Repr-Digest": repr_digest(data),
                    "Content-Disposition": f'inline; filename="{filename}"',
                },
            )

    async def offset(self, location: str) -> httpx.Response:
        async with self.client() as client:
            return await client.head(location, headers=INTEROP)

    async def append(
        self, location: str, offset: int, body: bytes | AsyncIterator[bytes], complete: bool
    ) -> httpx.Response:
        async with self.client() as client:
            return await client.patch(
                location,
                content=body,
                headers={
                    **INTEROP,
                    "Content-Type": "application/partial-upload",
                    "Upload-Offset": str(offset),
                    "Upload-Complete": "?1" if complete else "?0",
                },
            )


class Cut(Exception):
    """Raised inside a request body to drop the connection mid-stream."""


async def cut_after(data: bytes, at: int, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``data`` in pieces, the connection dropped after ``at`` bytes (mid-chunk)."""
    sent = 0
    while sent < at:
        end = min(sent + piece, at)
        yield data[sent:end]
        sent = end
    raise Cut()
