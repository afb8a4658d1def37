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


def test_idle_connections_are_kept_as_long_as_the_settings_say() -> None:
    # Longer than the proxy in front keeps them (tests/deploy: the edge's keepalive).
    settings = ServiceSettings(http_keep_alive_seconds=42.0)
    svc = Service(settings, name="probe", description="a service under test")
    assert server(svc.app(title="probe"), settings).config.timeout_keep_alive == 42.0
    assert ServiceSettings().http_keep_alive_seconds > 60
