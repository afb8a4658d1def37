"""Whether the broker answers now, known before a request needs it (issue 11).

An upload that starts while Kafka is down would read its body and then wait for a
broker that does not answer. Instead, a background task asks the broker every
``interval`` seconds, and a request reads the last answer: with the broker known down,
the upload is refused at once, before its body is read, and the waits of uploads in
progress end at once. A failed publish marks the broker down too; only a successful
probe marks it up again, so the gateway recovers by itself when the broker returns.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]
T = TypeVar("T")


class KafkaUnreachable(KafkaConnectionError):
    """The broker was seen down while this wait was on."""


class Reachability:
    def __init__(self, probe: Probe, interval_seconds: float) -> None:
        self._probe = probe
        self._interval = interval_seconds
        # The service starts only once the broker answered (servicekit.service).
        self._up = True
        self._went_down: asyncio.Future[None] | None = None
        self._running = False

    @property
    def up(self) -> bool:
        return self._up

    def mark_down(self, why: object) -> None:
        if self._up:
            log.warning("Kafka is unreachable (%s); refusing uploads until it answers", why)
        self._up = False
        if self._went_down is not None and not self._went_down.done():
            self._went_down.set_result(None)

    async def check(self) -> bool:
        """One probe; a probe that raises counts as down."""
        try:
            answered = await self._probe()
        except Exception as exc:
            answered = False
            why: object = exc
        else:
            why = "no answer to the probe"
        if answered and not self._up:
            log.info("Kafka answers again; accepting uploads")
        if answered:
            self._up = True
        else:
            self.mark_down(why)
        return answered

    async def run(self) -> None:
        """Probe until :meth:`stop` (a background task of the service, which stops,
        cancels and awaits it; the flag ends the loop even if a probe's library swallowed
        the cancellation)."""
        self._running = True
        while self._running:
            await self.check()
            await asyncio.sleep(self._interval)

    def stop(self) -> None:
        self._running = False

    async def kafka_connected(self) -> bool:
        """The readiness check: the same answer uploads get, without a round trip."""
        return self._up

    async def unless_down(self, waiting: Awaitable[T], timeout: float) -> T:  # noqa: ASYNC109
        """``waiting``'s result, unless the broker is seen down first (KafkaUnreachable)
        or ``timeout`` passes (KafkaTimeoutError); ``waiting`` is cancelled then."""
        task = asyncio.ensure_future(waiting)
        if not self._up:
            task.cancel()
            raise KafkaUnreachable()
        went_down = self._signal()
        racing: set[asyncio.Future[Any]] = {task, went_down}
        try:
            done, _ = await asyncio.wait(
                racing, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        raise KafkaUnreachable() if went_down in done else KafkaTimeoutError()

    def _signal(self) -> asyncio.Future[None]:
        if self._went_down is None or self._went_down.done():
            self._went_down = asyncio.get_running_loop().create_future()
        return self._went_down
