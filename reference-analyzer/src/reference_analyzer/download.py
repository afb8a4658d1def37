"""Downloading the audio from its presigned URL into a spool file, streaming.

Never the whole file in memory: chunks go to disk as they arrive, hashed on the way.
Size and sha256 are checked against the request before anything is decoded.
"""

import asyncio
import hashlib
import hmac
from typing import IO, Protocol

import httpx

from contracts import AnalysisRequest, ErrorCode
from reference_analyzer.errors import AnalysisError
from reference_analyzer.logs import JobLogger, url_host
from reference_analyzer.threads import in_thread
from servicekit.retry import backoff_delay, parse_retry_after


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _absorb(dest: IO[bytes], digest: _Digest, chunk: bytes) -> None:
    digest.update(chunk)
    dest.write(chunk)


def _rewind(dest: IO[bytes]) -> None:
    dest.seek(0)
    dest.truncate()


class Downloader:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        attempts: int,
        timeout_seconds: float,
        chunk_bytes: int,
        backoff_seconds: float,
        max_delay_seconds: float,
    ) -> None:
        self._client = client
        self._attempts = attempts
        self._timeout = httpx.Timeout(timeout_seconds)
        self._chunk_bytes = chunk_bytes
        self._backoff = backoff_seconds
        self._max_delay = max_delay_seconds

    async def fetch(self, request: AnalysisRequest, dest: IO[bytes], log: JobLogger) -> None:
        """Download ``request.audio_url`` into ``dest`` and verify size and sha256;
        transport errors and 5xx answers are retried."""
        host = url_host(request.audio_url)
        for attempt in range(1, self._attempts + 1):
            try:
                await self._fetch_once(request, dest)
                log.info("downloaded %d bytes from %s", request.size, host)
                return
            except _Retryable as exc:
                if attempt == self._attempts:
                    raise AnalysisError(
                        ErrorCode.ANALYSIS_FAILED,
                        f"could not download the audio from {host}: {exc.reason}",
                    ) from None
                delay = backoff_delay(attempt, self._backoff, self._max_delay, exc.retry_after)
                log.warning("download from %s failed (%s); retrying in %.2fs", host, exc, delay)
                await asyncio.sleep(delay)
                await in_thread(_rewind, dest)

    async def _fetch_once(self, request: AnalysisRequest, dest: IO[bytes]) -> None:
        digest = hashlib.sha256()
        received = 0
        try:
            async with self._client.stream(
                "GET", request.audio_url, timeout=self._timeout
            ) as response:
                status = response.status_code
                if status >= 500 or status == 429:
                    cap = self._max_delay
                    raise _Retryable(
                        f"HTTP {status}",
                        parse_retry_after(response.headers.get("retry-after"), cap=cap),
                    )
                if status != 200:
                    raise AnalysisError(
                        ErrorCode.ANALYSIS_FAILED,
                        f"could not download the audio from {url_host(request.audio_url)}: "
                        f"HTTP {status}",
                    )
                async for chunk in response.aiter_bytes(self._chunk_bytes):
                    received += len(chunk)
                    if received > request.size:  # stop early: never spool more than declared
                        raise AnalysisError(
                            ErrorCode.CHECKSUM_MISMATCH,
                            f"the audio is larger than the declared {request.size} bytes",
                        )
                    await in_thread(_absorb, dest, digest, chunk)
        except httpx.TransportError as exc:
            # The exception's text may quote the URL; its type is enough.
            raise _Retryable(type(exc).__name__) from None
        await in_thread(dest.flush)
        if received != request.size:
            raise AnalysisError(
                ErrorCode.CHECKSUM_MISMATCH,
                f"the audio is {received} bytes, the request declared {request.size}",
            )
        if not hmac.compare_digest(digest.hexdigest(), request.sha256.strip().lower()):
            raise AnalysisError(
                ErrorCode.CHECKSUM_MISMATCH, "the audio's sha256 differs from the request's"
            )
