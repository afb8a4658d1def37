"""The builder every service is wired with (servicekit.service), in memory: Kafka is
FastStream's TestKafkaBroker and the topics' preparation a stand-in, the resources
fakes. The same start against the real stack, with PostgreSQL or Kafka down and then
back, is services/notifier/tests/test_database_outage.py and
services/gateway/tests/test_kafka_outage.py (a service started while it is down)."""

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from faststream.kafka import TestKafkaBroker

from servicekit import service as service_module
from servicekit.service import Provided, Service, provided, service_of
from servicekit.settings import ServiceSettings
from tests.support.waiting import eventually

pytestmark = pytest.mark.unit


class Port:
    """What a handler or route needs (a port; the object provided is of its type)."""

    def __init__(self, name: str) -> None:
        self.name = name


PortDep = Annotated[Port, Depends(provided(Port))]


class Journal:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


class Pool:
    """A resource: entered at start, left at stop; fails ``failures`` times first."""

    def __init__(self, name: str, journal: Journal, failures: int = 0) -> None:
        self.name, self.journal, self.failures = name, journal, failures
        self.attempts = 0

    async def __aenter__(self) -> "Pool":
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionRefusedError(111, "Connect call failed")
        self.journal(f"enter {self.name}")
        return self

    async def __aexit__(self, *_: object) -> None:
        self.journal(f"leave {self.name}")


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The topics' preparation is the real broker's business (integration tests); the
    first pause after a failure is short."""

    async def prepared(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(service_module, "prepare_kafka", prepared)
    monkeypatch.setattr(service_module, "FIRST_RETRY_SECONDS", 0.05)


def build(*, consume_in_background: bool = False) -> Service:
    return Service(
        ServiceSettings(start_retry_max_seconds=0.2),
        name="probe",
        description="a service under test",
        consume_in_background=consume_in_background,
    )


def app_of(svc: Service) -> FastAPI:
    app = svc.app(title="probe")

    @app.get("/port")
    async def port(value: PortDep) -> dict[str, str]:
        return {"name": value.name}

    return app


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan, as uvicorn runs it, over Kafka in memory."""
    async with (
        TestKafkaBroker(service_of(app).broker, connect_only=True),
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://probe") as http,
    ):
        yield http


async def test_the_start_goes_in_order_and_the_stop_in_reverse_awaiting_every_task():
    journal = Journal()
    svc = build()
    svc.resource(Pool("postgresql", journal), "PostgreSQL")
    svc.on_stop(lambda: _note(journal, "cleanup"))
    svc.resource(Pool("s3", journal), "S3")

    def task(name: str):
        async def work() -> None:
            journal(f"run {name}")
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)  # cancelled, it still finishes before the next step
                journal(f"stopped {name}")

        return work

    svc.background(task("listener"), name="listener", before_broker=True)
    svc.background(task("sweeper"), name="sweeper")
    svc.on_started(lambda: journal("started"))
    app = app_of(svc)
    async with running(app) as http:
        await eventually(lambda: "run sweeper" in journal.lines, what="the sweeper to run")
        assert (await http.get("/readyz")).json() == {"status": "ready"}
    ran = [line for line in journal.lines if line.startswith("run ")]
    assert sorted(ran) == ["run listener", "run sweeper"]
    assert [line for line in journal.lines if line not in ran] == [
        "enter postgresql",
        "enter s3",
        "started",
        "stopped sweeper",
        "stopped listener",
        "leave s3",
        "cleanup",
        "leave postgresql",
    ]


async def _note(journal: Journal, line: str) -> None:
    journal(line)


async def test_a_dependency_down_at_start_is_waited_for_while_the_app_serves_not_ready(caplog):
    journal = Journal()
    svc = build()
    pool = Pool("postgresql", journal, failures=3)
    svc.resource(pool, "PostgreSQL")
    svc.provide(Port, Port("the pool's"))
    app = app_of(svc)
    async with running(app) as http:
        # The lifespan returned after the first failure: the app serves meanwhile.
        assert pool.attempts == 1
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        message = ready.json()["error"]["message"]
        assert message.startswith("waiting for PostgreSQL: ConnectionRefusedError: ")
        assert "(attempt 1, next in " in message
        refused = await http.get("/port")
        assert refused.status_code == 503
        assert refused.json() == {
            "error": {"code": "unavailable", "message": "PostgreSQL is unavailable; retry later"}
        }
        assert int(refused.headers["retry-after"]) >= 1

        async def ready_now() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready_now, within=10, what="the start to end once PostgreSQL answers")
        assert pool.attempts == 4
        assert (await http.get("/port")).json() == {"name": "the pool's"}
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]
    assert [w.split("(attempt ")[1][:1] for w in waits] == ["1", "2", "3"], waits
    assert journal.lines == ["enter postgresql", "leave postgresql"]


async def test_a_stop_during_the_start_cancels_it_and_leaves_what_was_entered():
    journal = Journal()
    svc = build()
    svc.resource(Pool("postgresql", journal), "PostgreSQL")
    down = Pool("s3", journal, failures=1_000_000)
    svc.resource(down, "S3")
    app = app_of(svc)
    async with running(app) as http:
        await eventually(lambda: down.attempts >= 2, what="a second attempt at S3")
        assert (await http.get("/readyz")).json()["error"]["message"].startswith("waiting for S3: ")
    assert journal.lines == ["enter postgresql", "leave postgresql"]


async def test_a_background_task_that_fails_is_logged_and_the_service_is_neither_ready_nor_alive(
    caplog,
):
    svc = build()

    async def broken() -> None:
        raise RuntimeError("a bug")

    svc.background(broken, name="retention")
    app = app_of(svc)
    async with running(app) as http:

        async def not_ready() -> str | None:
            answer = await http.get("/readyz")
            return answer.json()["error"]["message"] if answer.status_code == 503 else None

        assert await eventually(not_ready) == "background tasks ended: retention"
        # Nor alive: it is not restarted in the process, so the process must be.
        dead = await http.get("/healthz")
        assert dead.status_code == 503
        assert dead.json()["error"] == {
            "code": "not_alive",
            "message": "background tasks ended: retention",
        }
    (failed,) = [r for r in caplog.records if "background task retention failed" in r.message]
    assert failed.exc_info is not None and "a bug" in str(failed.exc_info[1])


async def test_without_a_lifespan_routes_get_what_was_provided_and_readyz_says_not_started():
    svc = build()
    svc.provide(Port, Port("fake"))
    app = app_of(svc)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
        assert (await http.get("/port")).json() == {"name": "fake"}
        ready = await http.get("/readyz")
    assert ready.json()["error"]["message"] == "not started"


async def test_kafka_handlers_get_what_was_provided_by_its_type_on_the_event_loop():
    svc = build()
    svc.provide(Port, Port("for handlers"))
    seen: list[tuple[str, int]] = []

    @svc.broker.subscriber("probe-topic")
    async def handle(body: bytes, port: Annotated[Port, Provided(Port)]) -> None:
        seen.append((port.name, threading.get_ident()))

    async with TestKafkaBroker(svc.broker) as broker:
        await broker.publish(b"x", "probe-topic")
    assert seen == [("for handlers", threading.get_ident())]


def test_one_type_is_provided_once_and_asking_for_another_says_so():
    svc = build()
    svc.provide(Port, Port("one"))
    with pytest.raises(ValueError, match="Port is provided already"):
        svc.provide(Port, Port("two"))
    with pytest.raises(LookupError, match="probe was given no Journal"):
        svc.get(Journal)
