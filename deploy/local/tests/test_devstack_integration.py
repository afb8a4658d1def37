"""The real stack, in its own run dir and on shifted ports, so a running dev stack is untouched."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack import AppSpec, Stack, StackError, StackInfo
from devstack.kafka import list_topics

pytestmark = pytest.mark.integration

OFFSET = int(os.environ.get("DEVSTACK_TEST_PORT_OFFSET", "2000"))
FAKE_PORT = 8190 + OFFSET
INFRA = ["kafka", "s3", "postgres", "edge"]
# Variables that would make the stack treat a service as external.
GIVEN = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "S3_ENDPOINT_URL",
    "DATABASE_URL",
    "ANALYSIS_SERVER_URL",
    "PUBLIC_BASE_URL",
    "EDGE_PORT",
)

FAKE_APP = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(dict(os.environ)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["HTTP_PORT"])), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    modules = tmp_path_factory.mktemp("apps")
    (modules / "devstack_fake_app.py").write_text(textwrap.dedent(FAKE_APP))
    env = {k: v for k, v in os.environ.items() if k not in GIVEN}
    env["AUDIOPIPE_PORT_OFFSET"] = str(OFFSET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(modules), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="module")
def stack(environ: dict[str, str], run_dir: Path) -> Iterator[Stack]:
    apps = [AppSpec("fake-app", "devstack_fake_app", FAKE_PORT)]
    stack = Stack(run_dir=run_dir, environ=environ, apps=apps)
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def first(stack: Stack) -> StackInfo:
    return stack.up(apps=False)


def test_first_up_starts_the_infrastructure(first: StackInfo, run_dir: Path) -> None:
    assert sorted(first.started) == sorted(INFRA)
    for name in INFRA:
        assert (run_dir / "pids" / f"{name}.pid").exists()
        assert (run_dir / "logs" / f"{name}.log").exists()
        assert (run_dir / "data" / name).is_dir()


def test_second_up_starts_nothing(stack: Stack, first: StackInfo) -> None:
    again = stack.up(apps=False)
    assert again.started == []
    assert sorted(again.reused) == sorted(INFRA)
    assert {c.name: c.pid for c in again.components} == {c.name: c.pid for c in first.components}


def test_every_piece_answers(stack: Stack, first: StackInfo) -> None:
    env = first.env
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{19092 + OFFSET}"

    async def check() -> None:
        import asyncpg
        from aiobotocore.session import get_session

        assert await list_topics(env["KAFKA_BOOTSTRAP_SERVERS"], 5.0) is not None
        conn = await asyncpg.connect(env["DATABASE_URL"])
        try:
            assert await conn.fetchval("select current_database()") == "audiopipe"
        finally:
            await conn.close()
        async with get_session().create_client(
            "s3",
            endpoint_url=env["S3_ENDPOINT_URL"],
            aws_access_key_id=env["S3_ACCESS_KEY_ID"],
            aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
            region_name=env["S3_REGION"],
        ) as s3:
            assert (await s3.list_buckets())["Buckets"] == []

    asyncio.run(check())
    response = httpx.get(stack.edge_url + "/", timeout=5)
    assert response.status_code == 200
    # Nothing listens behind the upload route in this test: the edge says so itself.
    upload = httpx.post(stack.edge_url + "/tokens/t1/upload-audio", timeout=5)
    assert upload.status_code == 502
    assert {s.name: s.state for s in stack.status()}["kafka"] == "healthy"


def test_apps_start_after_infra_and_stop_alone(stack: Stack, first: StackInfo) -> None:
    info = stack.up(apps=True)
    assert info.started == ["fake-app"]
    seen = httpx.get(f"http://127.0.0.1:{FAKE_PORT}/env", timeout=5).json()
    assert seen["HTTP_PORT"] == str(FAKE_PORT)
    assert seen["KAFKA_BOOTSTRAP_SERVERS"] == first.env["KAFKA_BOOTSTRAP_SERVERS"]
    assert seen["PUBLIC_BASE_URL"] == stack.edge_url

    assert stack.down(only=info) == ["fake-app"]
    states = {s.name: s.state for s in stack.status()}
    assert states["fake-app"] == "stopped"
    assert all(states[name] == "healthy" for name in INFRA)


def test_a_broken_app_is_named_and_stopped_again(
    environ: dict[str, str], run_dir: Path, first: StackInfo
) -> None:
    broken = Stack(
        run_dir=run_dir,
        environ=environ,
        apps=[AppSpec("broken-app", "devstack_no_such_module", FAKE_PORT + 1)],
    )
    with pytest.raises(StackError) as caught:
        broken.up(apps=True, timeout=20)
    message = str(caught.value)
    assert message.startswith("broken-app:")
    assert "No module named devstack_no_such_module" in message
    assert not (run_dir / "pids" / "broken-app.pid").exists()


def test_down_stops_exactly_what_was_started(stack: Stack, first: StackInfo) -> None:
    stopped = stack.down(only=first)
    assert sorted(stopped) == sorted(INFRA)
    for component in first.components:
        assert component.pid is not None
        assert not Path(f"/proc/{component.pid}").exists() or _zombie(component.pid)
    assert all(s.state == "stopped" for s in stack.status())


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
