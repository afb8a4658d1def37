"""aiokafka on uvloop: a write on a connection the broker dropped is a broken connection.

Every service runs on uvloop (uvicorn picks it when it is installed). When the broker
goes away, uvloop closes the socket's handle at once, and aiokafka may still write a
request on it before its reader has seen the hang-up. asyncio's transport ignores such a
write; uvloop's raises ``RuntimeError: unable to perform operation on <TCPTransport
closed=True ...>; the handler is closed``. aiokafka 0.14 turns only ``OSError`` into
``KafkaConnectionError`` (aio-libs/aiokafka#1038, open), so the ``RuntimeError`` escapes
into whatever task was sending: the consumer's fetch routine, for one, which then ends
for good while the consumer object lives on. That is how the chaos suite's broker kill
left an uploader that had stopped consuming, without a word in its log, and every
upload after the restart unfinished (tests/chaos/test_kill_and_recover.py).

:func:`install` makes such a write what the same write is on asyncio's loop, a broken
connection: aiokafka closes it, fails its waiting requests with
``KafkaConnectionError`` and connects anew, as after any other connection loss.
:mod:`servicekit.kafka` installs it, so every process that talks to Kafka has it.
"""

import functools
from collections.abc import Callable
from typing import Any

from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

_GUARDED = "_audiopipe_closed_transport_guard"


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


def install() -> None:
    """Guard the connection's two write paths; idempotent."""
    for name in ("send", "_send_sasl_token"):
        write = getattr(AIOKafkaConnection, name)
        if not getattr(write, _GUARDED, False):
            setattr(AIOKafkaConnection, name, _broken_on_closed_transport(write))
