"""The shared start path: its shutdown hook runs before uvicorn waits for responses."""

import asyncio

import pytest

from servicekit.serve import server
from servicekit.service import Service
from servicekit.settings import ServiceSettings
from tests.support.processes import free_port

pytestmark = pytest.mark.unit


async def test_the_shutdown_hook_runs_once_when_the_server_stops() -> None:
    calls: list[bool] = []
    settings = ServiceSettings(http_host="127.0.0.1", http_port=free_port())
    svc = Service(settings, name="probe", description="a service under test")
    svc.on_shutdown(lambda: calls.append(True))
    running = server(svc.app(title="probe"), settings, lifespan="off")
    task = asyncio.create_task(running.serve())
    while not running.started:
        assert not task.done(), "the server stopped during start"
        await asyncio.sleep(0.01)
    assert calls == []
    running.should_exit = True
    await task
    assert calls == [True]
