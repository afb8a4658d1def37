"""The five images as containers, run as the manifests say (tests/containers/manifests.py),
in production mode with secrets made for this run, on a stack of the tests' own: Kafka,
S3 and PostgreSQL from devstack, and its edge in front of the containers.

Networking: the containers share the host's network namespace (``--network host``). The
test stack binds 127.0.0.1 and its Kafka advertises ``127.0.0.1:port`` to its clients,
which no container network reaches (a container's 127.0.0.1 is its own); in the host's
namespace every address is the one a process of ``make run`` would use. Each container
therefore listens on 127.0.0.1 at the port the edge routes to (``HTTP_HOST``,
``HTTP_PORT``: the two settings that differ from the manifests). Addressing by service
name across a container network is what the compose and ``podman kube play`` tests
check.
"""

import asyncio
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from deploy.engine import Engine, ImageError, engine
from deploy.images import NAMES, image_name
from devstack import Stack
from servicekit.s3 import s3_client
from servicekit.settings import S3Settings
from tests.containers.engine import (
    Containers,
    random_secret,
    random_signing_secret,
    session_prefix,
)
from tests.containers.manifests import ContainerSettings, container_settings
from tests.support.limits import TEST_UPLOAD_LIMITS
from tests.support.ownstack import own_run_dir, own_stack

SHIFT = 600
"""The stack's ports: the session's shifted by this (chaos uses 200-400)."""
S3_ACCESS_KEY = "audiopipe-containers"
DATABASE = "audiopipe_containers"


@pytest.fixture(scope="package")
def container_engine() -> Engine:
    try:
        found = engine()
    except ImageError as exc:
        pytest.skip(f"no container engine: {exc}")
    missing = [name for name in NAMES if not found.has_image(image_name(name))]
    if missing:
        pytest.fail(f"images missing ({', '.join(missing)}): `make images` builds them")
    return found


@dataclass
class Deployment:
    """The running containers and what they run against."""

    containers: Containers
    stack: Stack
    secrets: dict[str, str]
    ports: dict[str, int]

    @property
    def edge_url(self) -> str:
        return self.stack.edge_url

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def settings(self, service: str) -> ContainerSettings:
        return container_settings(service)

    def wait_ready(self, services: list[str], within: float = 120) -> None:
        """Every /readyz answers 200 (what the readiness probe asks; podman does not)."""
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            list(pool.map(lambda s: self._wait_ready(s, within), services))

    def _wait_ready(self, service: str, within: float) -> None:
        import time

        deadline = time.monotonic() + within
        last = ""
        while time.monotonic() < deadline:
            state = self.containers.state(service)
            if state["status"] not in ("running", "created", "configured"):
                raise AssertionError(
                    f"{service} {state['status']} (exit {state['exit_code']}):\n"
                    + self.containers.logs(service)[-3000:]
                )
            try:
                answer = httpx.get(f"{self.url(service)}/readyz", timeout=2)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise AssertionError(
            f"{service} not ready after {within:.0f} s ({last}):\n"
            + self.containers.logs(service)[-3000:]
        )


async def _database_of_its_own(admin_dsn: str, password: str) -> None:
    """A role with a random password owning a database of its own, as production has;
    the stack's superuser never reaches a container."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        await connection.execute(f"DROP ROLE IF EXISTS {DATABASE}")
        await connection.execute(f"CREATE ROLE {DATABASE} LOGIN PASSWORD '{password}'")
        await connection.execute(f"CREATE DATABASE {DATABASE} OWNER {DATABASE}")
    finally:
        await connection.close()


async def _bucket(settings: S3Settings) -> None:
    """The ConfigMap says S3_CREATE_BUCKET=false: the bucket is the operator's."""
    async with s3_client(settings) as s3:
        await s3.create_bucket(Bucket=settings.s3_bucket)


def container_env(
    settings: ContainerSettings,
    stack: Stack,
    secrets_: dict[str, str],
    ports: dict[str, int],
) -> dict[str, str]:
    """The manifest's ConfigMap and Secret keys, with this stack's addresses."""
    infra = stack.env()
    addresses = {
        "KAFKA_BOOTSTRAP_SERVERS": infra["KAFKA_BOOTSTRAP_SERVERS"],
        "S3_ENDPOINT_URL": infra["S3_ENDPOINT_URL"],
        "S3_PRESIGN_ENDPOINT_URL": infra["S3_ENDPOINT_URL"],
        "ANALYSIS_SERVER_URL": f"http://127.0.0.1:{ports['reference-analyzer']}",
        "PUBLIC_BASE_URL": stack.edge_url,
    }
    env = {k: addresses.get(k, v) for k, v in settings.config.items()}
    env.update({key: secrets_[key] for key in settings.secret_keys})
    env["HTTP_HOST"] = "127.0.0.1"
    env["HTTP_PORT"] = str(ports[settings.name])
    # The edge reaches the containers from 127.0.0.1 (host networking), not from the
    # ConfigMap's pod networks; and every test client is 127.0.0.1 too, so the fair-use
    # limits are raised as for every other test (tests/support/limits.py).
    env["TRUSTED_PROXIES"] = "127.0.0.1/32"
    env.update(TEST_UPLOAD_LIMITS)
    return env


@dataclass
class OwnStack:
    """The tests' stack (Kafka, S3, PostgreSQL, edge; no apps) and the secrets made for
    this run: an S3 identity and a PostgreSQL role of their own, random secrets."""

    stack: Stack
    secrets: dict[str, str]

    @property
    def ports(self) -> dict[str, int]:
        """Where the edge looks for each service."""
        return {name: self.stack.settings.app_port(name) for name in NAMES}


@pytest.fixture(scope="package")
def own_infra(container_engine: Engine) -> Iterator[OwnStack]:
    db_password = secrets.token_hex(24)
    s3_secret = random_secret()
    extra = {"S3_ACCESS_KEY_ID": S3_ACCESS_KEY, "S3_SECRET_ACCESS_KEY": s3_secret}
    with own_stack("containers", SHIFT, extra, app_specs=[]) as (stack, _):
        infra = stack.env()
        host_port = infra["DATABASE_URL"].rsplit("@", 1)[1].split("/", 1)[0]
        values = {
            "JOB_TOKEN_SECRET": random_secret(),
            "WEBHOOK_CAPABILITY_SECRET": random_secret(),
            "WEBHOOK_SIGNING_SECRET": random_signing_secret(),
            "S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": s3_secret,
            "DATABASE_URL": f"postgresql://{DATABASE}:{db_password}@{host_port}/{DATABASE}",
        }
        asyncio.run(_database_of_its_own(infra["DATABASE_URL"], db_password))
        bucket = S3Settings(
            s3_endpoint_url=infra["S3_ENDPOINT_URL"],
            s3_access_key_id=S3_ACCESS_KEY,
            s3_secret_access_key=s3_secret,
        )
        asyncio.run(_bucket(bucket))
        yield OwnStack(stack, values)


def save_logs(containers: Containers, names: list[str]) -> None:
    """Each container's output beside the stack's logs, for a look after a failure."""
    for name in names:
        log = own_run_dir("containers") / "logs" / f"container-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(containers.logs(name))


@pytest.fixture(scope="module")
def deployment(container_engine: Engine, own_infra: OwnStack) -> Iterator[Deployment]:
    """The five containers, started once for a module's checks."""
    env_dir = own_run_dir("containers") / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    containers = Containers(container_engine, session_prefix(), env_dir)
    stack, values, ports = own_infra.stack, own_infra.secrets, own_infra.ports
    deployment = Deployment(containers, stack, values, ports)
    try:
        for name in NAMES:
            settings = container_settings(name)
            containers.run(settings, container_env(settings, stack, values, ports))
        deployment.wait_ready(list(NAMES))
        yield deployment
    finally:
        save_logs(containers, list(containers.started))
        containers.remove_all()


_SPENT: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/containers/" in report.nodeid:
        _SPENT[report.nodeid] = _SPENT.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the container tests add to a run (their fixtures' start and stop included;
    the image build is `make images`, before pytest, and prints its own time)."""
    if _SPENT:
        terminalreporter.write_line(
            f"container tests: {len(_SPENT)} tests in {sum(_SPENT.values()):.0f} s"
        )
