"""On uvloop, as the services run, a request written on a connection the broker has just
dropped is a broken connection aiokafka recovers from, not a RuntimeError that ends the
task which sent it (servicekit.compat.aiokafka; aio-libs/aiokafka#1038)."""

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest
import uvloop
from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from servicekit.compat.aiokafka import install_closed_transport_guard
from servicekit.kafka import bootstrap_list

pytestmark = pytest.mark.integration


def _write_after_a_hangup(bootstrap: str, send: Callable[..., Any]) -> tuple[Exception, bool]:
    """Connect to the real broker on uvloop, let the socket close under the connection
    (as when the broker dies: uvloop closes the handle before aiokafka's reader has run)
    and at once write a request on it with ``send``. What that raised, and whether the
    connection still counted as connected after it."""
    host, port = bootstrap_list(bootstrap)[0].rsplit(":", 1)

    async def main() -> tuple[Exception, bool]:
        conn = await create_conn(host, int(port))
        assert conn._writer is not None and conn.connected()
        conn._writer.transport.abort()
        # One turn of the loop: uvloop has closed the handle, aiokafka's reader has not
        # yet seen the connection go (a turn or two later it has, and writes see no
        # connection at all).
        await asyncio.sleep(0)
        try:
            send(conn, MetadataRequest([]))
        except Exception as exc:
            return exc, conn.connected()
        finally:
            conn.close()
        raise AssertionError("a write on a closed transport raised nothing")

    return uvloop.run(main())


def test_a_write_on_a_dropped_connection_is_a_broken_connection(infra: dict[str, str]) -> None:
    install_closed_transport_guard()  # as every service's broker does
    raised, connected = _write_after_a_hangup(
        infra["KAFKA_BOOTSTRAP_SERVERS"], AIOKafkaConnection.send
    )
    assert isinstance(raised, KafkaConnectionError), repr(raised)
    assert "broken" in str(raised)
    # Closed, so that aiokafka's client connects anew for the next request.
    assert not connected


def test_without_the_guard_uvloop_raises_what_ended_the_consumer(infra: dict[str, str]) -> None:
    # What the guard is for: this fails should uvloop or aiokafka stop raising it.
    install_closed_transport_guard()
    unguarded = cast(Any, AIOKafkaConnection.send).__wrapped__
    raised, _ = _write_after_a_hangup(infra["KAFKA_BOOTSTRAP_SERVERS"], unguarded)
    assert isinstance(raised, RuntimeError), repr(raised)
    assert "handler is closed" in str(raised)
