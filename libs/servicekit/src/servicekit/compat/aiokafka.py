"""What servicekit uses of aiokafka that aiokafka does not promise (checked against 0.14.0).

**A write on a connection the broker dropped, on uvloop** (:func:`install_closed_transport_guard`;
private: ``AIOKafkaConnection.send`` and ``_send_sasl_token`` replaced, ``conn._writer``
read, ``conn.close(reason=CloseReason.CONNECTION_BROKEN, exc=...)`` called).
Every service runs on uvloop (uvicorn picks it when it is installed). When the broker
goes away, uvloop closes the socket's handle at once, and aiokafka may still write a
request on it before its reader has seen the hang-up. asyncio's transport ignores such a
write; uvloop's raises ``RuntimeError: unable to perform operation on <TCPTransport
closed=True ...>; the handler is closed``. aiokafka 0.14 turns only ``OSError`` into
``KafkaConnectionError`` (aio-libs/aiokafka#1038, open), so the ``RuntimeError`` escapes
into whatever task was sending: the consumer's fetch routine, for one, which then ends
for good while the consumer object lives on. That is how the chaos suite's broker kill
left an uploader that had stopped consuming, without a word in its log, and every
upload after the restart unfinished (tests/chaos/test_kill_and_recover.py). The guard
makes such a write what the same write is on asyncio's loop, a broken connection:
aiokafka closes it, fails its waiting requests with ``KafkaConnectionError`` and
connects anew, as after any other connection loss. Drop it once aiokafka turns the
``RuntimeError`` into a connection error itself.

**A consumer's fetch task** (:func:`fetch_task`; private: ``consumer._fetcher`` and its
``error_future``, the task of aiokafka's fetch routine). aiokafka offers no way to learn
that this task ended; ``servicekit.kafka.stop_if_fetching_ends`` needs it.

**A metadata refresh** (:func:`refresh_metadata`; private: ``consumer._client``), for
the benchmarks, which assign partitions of topics they create themselves.

``libs/servicekit/tests/test_compat_upgrade.py`` checks that each name still exists.
"""

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

__all__ = ["WRITES", "fetch_task", "install_closed_transport_guard", "refresh_metadata"]

_GUARDED = "_audiopipe_closed_transport_guard"

WRITES = ("send", "_send_sasl_token")
"""The connection's two write paths, which the guard wraps."""


def _broken_on_closed_transport(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def guarded(conn: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
        try:
            return write(conn, *args, **kwargs)
        except RuntimeError as err:
            writer = conn._writer
            if writer is None or not writer.transport.is_closing():
                raise
            conn.close(reason=CloseReason.CONNECTION_BROKEN, exc=err)
            raise KafkaConnectionError(
                f"Connection at {conn.host}:{conn.port} broken: {err}"
            ) from err

    setattr(guarded, _GUARDED, True)
    return guarded


def install_closed_transport_guard() -> None:
    """Guard the connection's write paths for the whole process (see the module);
    idempotent. ``servicekit.kafka`` calls it before it makes a Kafka client."""
    for name in WRITES:
        write = getattr(AIOKafkaConnection, name)
        if not getattr(write, _GUARDED, False):
            setattr(AIOKafkaConnection, name, _broken_on_closed_transport(write))


def fetch_task(consumer: AIOKafkaConsumer) -> "asyncio.Future[None] | None":
    """The task of ``consumer``'s fetch routine: done when it ended, with its error if
    one ended it; None before the consumer started."""
    fetcher = consumer._fetcher
    if fetcher is None:
        return None
    task: asyncio.Future[None] = fetcher.error_future
    return task


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Have ``consumer`` fetch the cluster's metadata now (topics just created)."""
    await consumer._client.force_metadata_update()
