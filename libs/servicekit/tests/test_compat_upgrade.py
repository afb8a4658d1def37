"""The compatibility layer's upgrade test (``servicekit.compat``, issue 23): every private
name and undocumented behaviour servicekit leans on still exists, in the shape it uses.

On an upgrade of uvicorn, Starlette, FastAPI, FastStream, fast-depends or aiokafka this
file fails first, in one place, and each failure says what to re-read. Once the module
it names is re-read against the new release (and its behaviour tests pass), raise
``servicekit.compat.CHECKED`` and the upper bounds in the ``pyproject.toml`` files.
What each name is used for, and why, is in the docstring of its compat module.
"""

import asyncio
import inspect
import re
import threading
import typing
from importlib.metadata import version
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from faststream import Context
from faststream.kafka import KafkaBroker, TestKafkaBroker

from servicekit.compat import CHECKED, aiokafka, faststream, openssl, starlette, uvicorn

pytestmark = pytest.mark.unit


def reread(library: str, module: str, what: str) -> str:
    """The failure message: which release, what changed, where to look."""
    dist = "fast-depends" if library == "fast_depends" else library
    return (
        f"{library} {version(dist)} (servicekit.compat was checked against "
        f"{CHECKED[dist]}.x): {what}. Re-read servicekit/compat/{module}.py against "
        f"{library}'s source; the module's docstring says what each name is used for."
    )


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize("dist", sorted(CHECKED))
def test_each_library_is_the_release_the_layer_was_checked_against(dist: str) -> None:
    installed = version(dist)
    line = ".".join(installed.split(".")[:2])
    assert line == CHECKED[dist], (
        f"{dist} {installed} is installed; servicekit.compat was checked against "
        f"{CHECKED[dist]}.x. Run this file, re-read what fails (and the modules of "
        f"servicekit.compat that name {dist}), then raise servicekit.compat.CHECKED and the "
        f"upper bound on {dist} in every pyproject.toml."
    )


# --- uvicorn (servicekit/compat/uvicorn.py, uvicorn_protocols.py) --------------------


def test_uvicorn_header_checks_reject_what_a_head_must_not_carry() -> None:
    for pattern in (uvicorn.HEADER_RE, uvicorn.HEADER_VALUE_RE):
        assert isinstance(pattern, re.Pattern), reread("uvicorn", "uvicorn", "HEADER_RE changed")
    assert uvicorn.HEADER_RE.search(b"bad name"), reread("uvicorn", "uvicorn", "HEADER_RE")
    assert not uvicorn.HEADER_RE.search(b"upload-limit"), reread("uvicorn", "uvicorn", "HEADER_RE")
    assert uvicorn.HEADER_VALUE_RE.search(b"a\r\nb"), reread(
        "uvicorn", "uvicorn", "HEADER_VALUE_RE"
    )
    assert not uvicorn.HEADER_VALUE_RE.search(b"max-size=1"), reread(
        "uvicorn", "uvicorn", "HEADER_VALUE_RE"
    )


def test_uvicorn_server_has_the_shutdown_and_start_up_state_used() -> None:
    import uvicorn as upstream

    assert parameters(upstream.Server.shutdown) == ["self", "sockets"], reread(
        "uvicorn", "uvicorn", "Server.shutdown(sockets) changed its signature"
    )
    assert inspect.iscoroutinefunction(upstream.Server.shutdown)
    server = uvicorn.Server(upstream.Config(_app), on_shutdown=None)
    assert uvicorn.started(server) is False, reread("uvicorn", "uvicorn", "Server.started")
    assert isinstance(uvicorn.STARTUP_FAILURE, int), reread("uvicorn", "uvicorn", "STARTUP_FAILURE")


def test_uvicorn_httptools_protocol_has_the_hooks_the_subclasses_override() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    expected = {
        "__init__": ["self", "config", "server_state", "app_state", "_loop"],
        "_start_asgi_task": ["self", "cycle", "app"],
        "on_headers_complete": ["self"],
        "on_body": ["self", "body"],
        "on_message_complete": ["self"],
        "on_response_complete": ["self"],
        "connection_lost": ["self", "exc"],
        "shutdown": ["self"],
        "pause_writing": ["self"],
        "resume_writing": ["self"],
    }
    for name, params in expected.items():
        method = getattr(HttpToolsProtocol, name, None)
        assert method is not None and parameters(method) == params, reread(
            "uvicorn", "uvicorn_protocols", f"HttpToolsProtocol.{name}{tuple(params[1:])} changed"
        )


def test_uvicorn_protocol_and_cycle_keep_the_state_the_subclasses_read() -> None:
    import uvicorn as upstream
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    from uvicorn.server import ServerState

    loop = asyncio.new_event_loop()
    try:
        protocol = HttpToolsProtocol(upstream.Config(_app), ServerState(), {}, loop)
        protocol.on_message_begin()  # what the parser calls first for each request
        for name in ("cycle", "scope", "headers", "url", "transport", "flow", "pipeline"):
            assert hasattr(protocol, name), reread(
                "uvicorn", "uvicorn_protocols", f"HttpToolsProtocol no longer keeps .{name}"
            )
        flow = FlowControl(SimpleNamespace())  # type: ignore[arg-type]
        assert flow.write_paused is False, reread(
            "uvicorn", "uvicorn_protocols", "flow.write_paused"
        )
        unused: dict[str, Any] = dict.fromkeys(parameters(RequestResponseCycle.__init__)[1:])
        cycle = RequestResponseCycle(**unused)
        for name in (
            "disconnected",
            "response_started",
            "response_complete",
            "chunked_encoding",
            "keep_alive",
        ):
            assert hasattr(cycle, name), reread(
                "uvicorn", "uvicorn_protocols", f"RequestResponseCycle no longer keeps .{name}"
            )
    finally:
        loop.close()


async def _app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


# --- Starlette and FastAPI (servicekit/compat/starlette.py) --------------------------


def test_starlette_builds_the_middleware_stack_through_the_method_replaced() -> None:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.testclient import TestClient
    from starlette.responses import PlainTextResponse

    app = FastAPI()
    app.add_middleware(CORSMiddleware, allow_origins=["https://a.example"])
    built: list[object] = []

    def front(stack: Any) -> Any:
        built.append(stack)
        return PlainTextResponse("front")

    starlette.in_front_of_middleware(app, front)
    answer = TestClient(app).get("/anything")  # no lifespan: only this request
    assert built and answer.text == "front", reread(
        "starlette",
        "starlette",
        "Starlette no longer builds its stack with build_middleware_stack()",
    )
    assert starlette.middleware_options(app, CORSMiddleware) == [
        {"allow_origins": ["https://a.example"]}
    ], reread("starlette", "starlette", "user_middleware entries no longer carry .cls and .kwargs")


def test_starlette_request_keeps_its_asgi_send() -> None:
    from starlette.requests import Request

    async def send(message: Any) -> None: ...

    request = Request({"type": "http", "headers": []}, send=send)
    assert starlette.asgi_send(request) is send, reread("starlette", "starlette", "Request._send")


def test_fastapi_puts_the_matched_route_in_the_scope() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    seen: list[str] = []

    @app.get("/jobs/{job_id}")
    async def job(job_id: str) -> str:
        return job_id

    inner = app.build_middleware_stack

    def build() -> Any:
        stack = inner()

        async def measured(scope: Any, receive: Any, send: Any) -> None:
            await stack(scope, receive, send)
            if scope["type"] == "http":
                seen.append(starlette.route_path(scope, "unmatched"))

        return measured

    app.build_middleware_stack = build  # type: ignore[method-assign]
    with TestClient(app) as client:
        client.get("/jobs/42")
        client.get("/nowhere")
    assert seen == ["/jobs/{job_id}", "unmatched"], reread(
        "fastapi", "starlette", 'FastAPI no longer puts the matched route in scope["route"]'
    )


# --- FastStream and fast-depends (servicekit/compat/faststream.py) -------------------


def test_faststream_context_class_is_the_one_its_annotations_use() -> None:
    from faststream.kafka.annotations import Consumer
    from faststream.kafka.annotations import KafkaMessage as MessageAnnotation

    ContextField = faststream.ContextField
    assert issubclass(faststream.InlineContext, ContextField)
    assert type(Context()) is ContextField, reread(
        "faststream", "faststream", "faststream.Context() no longer makes _internal.context.Context"
    )
    consumer_field = typing.get_args(Consumer)[1]
    assert consumer_field.name == faststream.CONSUMER, reread(
        "faststream", "faststream", f"the consumer's context key is now {consumer_field.name!r}"
    )
    assert typing.get_args(MessageAnnotation)[1].name == "message"
    assert not inspect.iscoroutinefunction(ContextField.use), reread(
        "faststream",
        "faststream",
        "Context.use is a coroutine function now: InlineContext may no longer be needed",
    )


class _Probe:
    """A context value whose attribute says which thread looked it up."""

    @property
    def thread(self) -> int:
        return threading.get_ident()


async def test_inline_context_resolves_on_the_event_loop_and_faststreams_in_a_thread() -> None:
    broker = KafkaBroker()
    seen: dict[str, int] = {}

    @broker.subscriber("compat-probe")
    async def handle(
        body: bytes,
        inline: Annotated[int, faststream.InlineContext("probe.thread")],
        plain: Annotated[int, Context("probe.thread")],
    ) -> None:
        seen.update(inline=inline, plain=plain)

    async with TestKafkaBroker(broker) as test:
        test.context.set_global("probe", _Probe())
        await test.publish(b"x", "compat-probe")
    loop_thread = threading.get_ident()
    assert seen["inline"] == loop_thread, reread(
        "fast_depends",
        "faststream",
        "InlineContext is resolved in a worker thread: fast_depends no longer awaits a "
        "custom field's coroutine use() (fast_depends.utils.run_async)",
    )
    # What InlineContext is for: should this fail, FastStream resolves its own inline.
    assert seen["plain"] != loop_thread, reread(
        "faststream", "faststream", "Context() is resolved on the loop now: InlineContext may go"
    )


async def test_faststream_kafka_subscriber_and_broker_keep_what_the_layer_reads() -> None:
    from faststream.exceptions import IncorrectState
    from faststream.kafka.subscriber.usecase import LogicSubscriber

    broker = KafkaBroker()
    subscriber = broker.subscriber("compat-topic", group_id="compat-group")
    assert isinstance(subscriber, LogicSubscriber), reread(
        "faststream", "faststream", "Kafka subscribers are no longer LogicSubscribers"
    )
    assert subscriber.consumer is None and subscriber.group_id == "compat-group", reread(
        "faststream", "faststream", "LogicSubscriber.consumer / .group_id changed"
    )
    assert subscriber.topic_names_for_subscribe == ["compat-topic"], reread(
        "faststream", "faststream", "LogicSubscriber.topic_names_for_subscribe changed"
    )
    assert list(faststream.kafka_consumers(broker)) == []  # not started: no consumer yet
    with pytest.raises(IncorrectState):  # not AttributeError: the name is still there
        faststream.admin_client(broker)


class _Consumer:
    """An aiokafka consumer's ``getmany`` that answers from a list and notes each call."""

    def __init__(self, *answers: dict[str, list[int]]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    async def getmany(self, **kwargs: Any) -> dict[str, list[int]]:
        self.calls.append(kwargs)
        return self.answers.pop(0)


def fake(*answers: dict[str, list[int]]) -> Any:
    """A :class:`_Consumer`, typed as the aiokafka consumer it stands in for."""
    return _Consumer(*answers)


async def test_faststream_batch_subscriber_polls_as_the_prompt_one_replaces(monkeypatch) -> None:
    from faststream.kafka.subscriber import usecase

    broker = KafkaBroker()
    batch = broker.subscriber("compat-batch", batch=True, batch_timeout_ms=321, max_records=7)
    single: Any = broker.subscriber("compat-single")
    assert type(batch) is usecase.BatchSubscriber, reread(
        "faststream", "faststream", "batch=True no longer makes a BatchSubscriber"
    )
    assert (batch.batch_timeout_ms, batch.max_records) == (321, 7), reread(
        "faststream", "faststream", "BatchSubscriber.batch_timeout_ms / .max_records changed"
    )
    # FastStream's own: getmany with the subscriber's timeout, then a sleep when empty.
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("anyio.sleep", sleep)  # what usecase calls as anyio.sleep
    assert await batch.get_msg(fake({})) == ()
    assert slept == [0.321], reread(
        "faststream",
        "faststream",
        "BatchSubscriber.get_msg no longer sleeps after an empty poll: prompt_batches may go",
    )
    assert faststream.prompt_batches(broker) == 1 and type(single) is not type(batch)
    consumer = fake({}, {"tp-0": [1, 2], "tp-1": [3]})
    assert await batch.get_msg(consumer) == ()  # empty: straight back, no sleep
    flattened: tuple[Any, ...] = await batch.get_msg(consumer)
    assert flattened == (1, 2, 3)  # the batches, in one tuple
    assert slept == [0.321]
    assert consumer.calls == [{"timeout_ms": 321, "max_records": 7}] * 2


# --- aiokafka (servicekit/compat/aiokafka.py) -----------------------------------------


async def test_aiokafka_connection_has_the_write_paths_and_state_the_guard_uses() -> None:
    from aiokafka.conn import AIOKafkaConnection, CloseReason

    aiokafka.install_closed_transport_guard()
    written = {"send": "request", "_send_sasl_token": "payload"}
    assert set(aiokafka.WRITES) == set(written)
    for name, what in written.items():
        write = getattr(getattr(AIOKafkaConnection, name, None), "__wrapped__", None)
        assert write is not None and parameters(write)[:2] == ["self", what], reread(
            "aiokafka", "aiokafka", f"AIOKafkaConnection.{name}(self, {what}, ...) changed"
        )
    conn = AIOKafkaConnection("127.0.0.1", 9)
    assert conn._writer is None and (conn.host, conn.port) == ("127.0.0.1", 9), reread(
        "aiokafka", "aiokafka", "AIOKafkaConnection no longer keeps ._writer, .host, .port"
    )
    assert {"reason", "exc"} <= set(parameters(conn.close)), reread(
        "aiokafka", "aiokafka", "AIOKafkaConnection.close(reason=, exc=) changed"
    )
    assert hasattr(CloseReason, "CONNECTION_BROKEN"), reread("aiokafka", "aiokafka", "CloseReason")


async def test_aiokafka_consumer_keeps_its_fetcher_and_client() -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.fetcher import Fetcher

    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    try:
        assert aiokafka.fetch_task(consumer) is None, reread(
            "aiokafka", "aiokafka", "AIOKafkaConsumer._fetcher is no longer None before start"
        )
        assert isinstance(consumer._client, AIOKafkaClient), reread(
            "aiokafka", "aiokafka", "AIOKafkaConsumer._client is gone"
        )
    finally:
        await consumer.stop()
    assert isinstance(inspect.getattr_static(Fetcher, "error_future"), property), reread(
        "aiokafka", "aiokafka", "Fetcher.error_future (the fetch task) is gone"
    )
    assert parameters(AIOKafkaClient.force_metadata_update) == ["self"], reread(
        "aiokafka", "aiokafka", "AIOKafkaClient.force_metadata_update() changed"
    )


# --- OpenSSL (servicekit/compat/openssl.py) --------------------------------------------

# FIPS 180-4 §5.3.3: SHA-256's initial hash value.
SHA256_IV = [
    0x6A09E667,
    0xBB67AE85,
    0x3C6EF372,
    0xA54FF53A,
    0x510E527F,
    0x9B05688C,
    0x1F83D9AB,
    0x5BE0CD19,
]


def test_openssl_sha256_ctx_has_the_layout_laid_out_by_hand() -> None:
    import ctypes
    import hashlib

    message = f"{openssl.version()}: re-read servicekit/compat/openssl.py against openssl/sha.h"
    ctx = openssl.Sha256Ctx()
    openssl.libcrypto.SHA256_Init(ctypes.byref(ctx))
    assert openssl.STATE_BYTES == 112, message
    assert list(ctx.h) == SHA256_IV and ctx.md_len == 32, message
    openssl.libcrypto.SHA256_Update(ctypes.byref(ctx), b"abc", 3)
    assert (ctx.nl, ctx.nh, ctx.num) == (24, 0, 3), message
    out = ctypes.create_string_buffer(32)
    openssl.libcrypto.SHA256_Final(out, ctypes.byref(ctx))
    assert out.raw == hashlib.sha256(b"abc").digest(), message
