"""Fixtures shared by every test in the workspace.

Real-service tests get their Kafka, S3 and PostgreSQL from, in this order:
1. environment variables (``KAFKA_BOOTSTRAP_SERVERS``, ``S3_ENDPOINT_URL`` with
   ``S3_ACCESS_KEY_ID``/``S3_SECRET_ACCESS_KEY``, ``DATABASE_URL``) naming running ones;
2. testcontainers, when a Docker engine answers;
3. the local stack in ``deploy/local`` (no Docker), started for the session and stopped
   after it, unless it was already running (then it is reused and left running).

The tests' local stack is their own: its run folder is ``.run/test`` and its ports are
those of ``make run`` shifted by ``TEST_PORT_OFFSET``, so ``make test`` neither reuses
nor disturbs a stack that ``make run`` started. The shift is added to an exported
``AUDIOPIPE_PORT_OFFSET`` too: a developer who runs their stack at offset 1000 gets
tests at 1500, not on their stack's ports (``AUDIOPIPE_RUN_DIR`` still chooses another
run folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.limits import TEST_UPLOAD_LIMITS

ROOT = Path(__file__).resolve().parent
INFRA_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "S3_ENDPOINT_URL", "DATABASE_URL")
INFRA_PREFIXES = ("KAFKA_", "S3_", "DATABASE_")
TEST_PORT_OFFSET = 500
SHIFTED_MARKER = "AUDIOPIPE_TEST_PORTS_SHIFTED"


def pytest_configure(config: pytest.Config) -> None:
    # Set before any fixture builds a Stack, and inherited by every process the tests
    # start, so that all of them agree on the tests' own ports and run folder.
    os.environ.setdefault("AUDIOPIPE_RUN_DIR", str(ROOT / ".run" / "test"))
    # Shifted once per test session: processes the tests start inherit the shifted value
    # and the marker, so a nested pytest does not shift again.
    for name, value in TEST_UPLOAD_LIMITS.items():
        os.environ.setdefault(name, value)
    if os.environ.get(SHIFTED_MARKER) != "1":
        base = int(os.environ.get("AUDIOPIPE_PORT_OFFSET") or 0)
        os.environ["AUDIOPIPE_PORT_OFFSET"] = str(base + TEST_PORT_OFFSET)
        os.environ[SHIFTED_MARKER] = "1"


def _infra_only(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(INFRA_PREFIXES)}


def _docker_answers() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    import docker  # type: ignore[import-untyped]

    try:
        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def infra() -> Iterator[dict[str, str]]:
    """Environment variables naming a running Kafka, S3 and PostgreSQL."""
    if all(os.environ.get(v) for v in INFRA_VARS):
        yield _infra_only(dict(os.environ))
        return
    if os.environ.get("AUDIOPIPE_TESTCONTAINERS", "auto") != "off" and _docker_answers():
        from tests.support.containers import containers_env

        with containers_env() as env:
            yield env
        return
    from devstack import Stack

    stack = Stack(root=ROOT)
    started = stack.up(apps=False)
    try:
        yield _infra_only(stack.env())
    finally:
        stack.down(only=started)
