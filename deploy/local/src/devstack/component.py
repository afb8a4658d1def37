"""What every managed process has in common: how to start it and how to tell it is healthy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devstack.config import HOST, Settings
from devstack.process import RunAs, RunPaths

T = TypeVar("T")


GO_MAX_PROCS = "1"
"""``GOMAXPROCS`` of the edge (Caddy), unless the environment sets it. On a small machine
shared with everything else, Go's scheduler keeps idle threads spinning for work between
bursts of requests: with one, the edge's CPU per job fell by about a quarter (3.25-3.5
against 4.0-5.0 ms in interleaved runs of ``bench.time_to_result``), jobs per second
unchanged; at the ingest benchmark's rate it uses a twentieth of a core. Its blocking
system calls still run beside it. S3 (SeaweedFS) would save as much, but it is the
baseline of the ingest comparison (``bench.upload``: direct PutObject uses more than
one core), so it keeps Go's default. A production edge is its operator's to tune."""


def go_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for the edge's process: :data:`GO_MAX_PROCS` unless given."""
    env.setdefault("GOMAXPROCS", GO_MAX_PROCS)
    return env


class NotReady(Exception):
    """A single health probe failed; the message says why."""


@dataclass(frozen=True)
class Context:
    root: Path
    paths: RunPaths
    settings: Settings
    # The stack's variables for the services (see config.resolve_env).
    env: dict[str, str]
    # The environment the stack was created with; processes inherit it.
    environ: dict[str, str]


class Component(ABC):
    name: str
    # The signal that asks for a clean, quick shutdown.
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    @abstractmethod
    def port(self) -> int:
        """The port whose availability decides whether we can start."""

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time set-up before the first start (configs, data dirs); idempotent."""

    @abstractmethod
    def command(self) -> list[str]: ...

    def process_env(self) -> dict[str, str]:
        return dict(self.ctx.environ)

    def cwd(self) -> Path | None:
        return None

    def run_as(self) -> RunAs | None:
        return None

    @abstractmethod
    def probe(self, timeout: float) -> None:
        """One health check; raises NotReady (or any error) while not healthy."""

    def after_healthy(self) -> None:  # noqa: B027 - optional hook
        """Runs whenever `up` finds or makes the component healthy (e.g. create a database)."""

    @property
    def data_dir(self) -> Path:
        return self.ctx.paths.data_dir(self.name)

    @property
    def conf_dir(self) -> Path:
        return self.ctx.paths.conf_dir(self.name)


def tcp_connect(host: str, port: int, timeout: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise NotReady(f"no TCP connection to {host}:{port}: {exc}") from exc


def port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when a loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
