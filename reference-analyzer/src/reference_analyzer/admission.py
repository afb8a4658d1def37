"""Who may ask for an analysis: ``POST /analyze`` signed by the bridge, its body
bounded (docs/architecture.md §7).

The analyzer-bridge signs each request as Standard Webhooks says (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``: HMAC-SHA256 over ``id.timestamp.body``),
with the secret this server signs its webhooks with; :mod:`servicekit.webhooks` checks
it. :meth:`RequestGuard.admit` checks each thing as soon as what decides it is known:
a call its headers condemn (unsigned, stale, a ``Content-Length`` over the limit) is
refused before its body is read, a longer body as soon as it passes the limit, and
only then the signature over the body. Without a secret (development only: the
settings refuse that in production) any signature, or none, is let through.

A request that started an analysis is remembered by its ``webhook-id`` for as long as
its signature stays acceptable: a replay of it, or the bridge's retry of the same
message after a lost answer (a retry keeps the id), is answered like the first and
starts nothing.
"""

import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Callable, Mapping

from servicekit import webhooks

__all__ = ["BodyTooLarge", "RequestGuard", "Unauthorized"]

Unauthorized = webhooks.WebhookVerificationError
"""Missing, forged or stale: answer 401."""


class BodyTooLarge(Exception):
    """Over the limit; what was read of it is dropped. Answer 413."""


_MAX_REMEMBERED = 10_000


class RequestGuard:
    def __init__(
        self,
        secret: str | None,
        tolerance_seconds: int = webhooks.TOLERANCE_SECONDS,
        *,
        max_body_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.time,
        max_remembered: int = _MAX_REMEMBERED,
    ) -> None:
        self._secret = secret
        self._tolerance = tolerance_seconds
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._max = max_remembered
        self._started: OrderedDict[str, float] = OrderedDict()  # webhook-id -> until

    @property
    def required(self) -> bool:
        return self._secret is not None

    async def admit(self, headers: Mapping[str, str], chunks: AsyncIterable[bytes]) -> bytes:
        """The body of a request that may be served; :class:`Unauthorized` or
        :class:`BodyTooLarge`, each as early as it is known, otherwise."""
        self.check_headers(headers)
        limit = self.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise BodyTooLarge(f"the request body is {length} bytes, over {limit}")
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge(f"the request body is over {limit} bytes")
        self.check(headers, bytes(body))
        return bytes(body)

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """Refuse what the headers alone decide: no signature, a stale timestamp."""
        if self._secret is not None:
            webhooks.check_headers(headers, self._clock(), self._tolerance)

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        """Refuse a body not signed under the secret."""
        if self._secret is not None:
            webhooks.verify(self._secret, headers, body, self._clock(), self._tolerance)

    def already_started(self, headers: Mapping[str, str]) -> bool:
        """Whether this message (by its ``webhook-id``) has started an analysis lately."""
        msg_id = headers.get(webhooks.ID_HEADER)
        self._forget_expired()
        return msg_id is not None and self._started.get(msg_id, 0.0) > self._clock()

    def started(self, headers: Mapping[str, str]) -> None:
        """Remember that this message started an analysis, while a replay of it could
        still pass the timestamp check."""
        msg_id = headers.get(webhooks.ID_HEADER)
        if msg_id is None:
            return
        now = self._clock()
        try:
            stamped = float(headers.get(webhooks.TIMESTAMP_HEADER, now))
        except ValueError:
            stamped = now
        self._started[msg_id] = max(now, stamped) + self._tolerance
        self._started.move_to_end(msg_id)
        while len(self._started) > self._max:
            self._started.popitem(last=False)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._started:
            msg_id, until = next(iter(self._started.items()))
            if until > now:
                return
            del self._started[msg_id]
