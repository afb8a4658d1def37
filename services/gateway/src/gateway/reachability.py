"""Whether the broker answers now, known before a request needs it (issue 11).

An upload that starts while Kafka is down would read its body and then wait for a
broker that does not answer. Instead, a background task asks the broker every
``interval`` seconds, and a request reads the last answer: with the broker known down,
the upload is refused at once, before its body is read. A failed publish marks the
broker down at once too; only a successful probe marks it up again, so the gateway
recovers by itself when the broker returns.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]


class Reachability:
    def __init__(self, probe: Probe, interval_seconds: float) -> None:
        self._probe = probe
        self._interval = interval_seconds
        # The service starts only once the broker answered (wait_for_kafka).
        self._up = True

    @property
    def up(self) -> bool:
        return self._up

    def mark_down(self, why: object) -> None:
        if self._up:
            log.warning("Kafka is unreachable (%s); refusing uploads until it answers", why)
        self._up = False

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
        """Probe forever (a task the app's lifespan starts and cancels)."""
        while True:
            await self.check()
            await asyncio.sleep(self._interval)

    async def kafka_connected(self) -> bool:
        """The readiness check: the same answer uploads get, without a round trip."""
        return self._up
