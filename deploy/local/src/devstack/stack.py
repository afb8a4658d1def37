"""The local stack: start what is missing, reuse what runs, stop only what we started."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from devstack import process
from devstack.apps import App
from devstack.component import Component, Context, port_in_use
from devstack.config import HOST, AppSpec, Settings, default_run_dir, resolve_env
from devstack.edge import Edge
from devstack.errors import ComponentError, StackError
from devstack.kafka import nodes as kafka_nodes
from devstack.postgres import Postgres
from devstack.process import RunPaths
from devstack.s3 import S3
from devstack.signing import signing_env

INFRA: tuple[Callable[[Context], Component], ...] = (S3, Postgres, Edge)
INFRA_NAMES: tuple[str, ...] = ("kafka", "s3", "postgres", "edge")


def is_infra(name: str) -> bool:
    """Infrastructure stops after the apps; ``kafka-2``... are nodes of a Kafka cluster."""
    return name in INFRA_NAMES or name.startswith("kafka-")


PORT_RELEASE_SECONDS = 10.0

Action = Literal["started", "reused", "external"]
State = Literal["healthy", "unhealthy", "stopped", "external"]


def repo_root() -> Path:
    """The checkout this package lives in (deploy/local/src/devstack/stack.py)."""
    return Path(__file__).resolve().parents[4]


@dataclass(frozen=True)
class ComponentResult:
    name: str
    action: Action
    address: str
    pid: int | None
    seconds: float


@dataclass(frozen=True)
class StackInfo:
    env: dict[str, str]
    components: list[ComponentResult]
    seconds: float
    edge_url: str

    @property
    def started(self) -> list[str]:
        return [c.name for c in self.components if c.action == "started"]

    @property
    def reused(self) -> list[str]:
        return [c.name for c in self.components if c.action == "reused"]

    @property
    def external(self) -> list[str]:
        return [c.name for c in self.components if c.action == "external"]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: State
    address: str
    pid: int | None = None
    detail: str = ""


@dataclass
class _Progress:
    """What one `up` call has spawned so far (shared by its worker threads)."""

    spawned: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str) -> None:
        with self.lock:
            self.spawned.append(name)


class Stack:
    def __init__(
        self,
        root: Path | None = None,
        run_dir: Path | None = None,
        *,
        settings: Settings | None = None,
        apps: Sequence[AppSpec] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.root = (root or repo_root()).resolve()
        self._environ = dict(os.environ if environ is None else environ)
        self.run_dir = (run_dir or default_run_dir(self.root, self._environ)).resolve()
        settings = settings or Settings.from_environ(self._environ)
        if apps is not None:
            settings = dataclasses.replace(settings, apps=tuple(apps))
        self.settings = settings
        self.paths = RunPaths(self.run_dir)

    # -- what the services get -------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The variables the services need to reach the stack (and each other)."""
        values = dict(resolve_env(self.settings, self._environ).values)
        values.update(signing_env(self.run_dir, self._environ))
        return values

    @property
    def edge_url(self) -> str:
        return self.settings.edge_url

    @property
    def external(self) -> frozenset[str]:
        return resolve_env(self.settings, self._environ).external

    def _context(self) -> Context:
        return Context(
            root=self.root,
            paths=self.paths,
            settings=self.settings,
            env=self.env(),
            environ=dict(self._environ),
        )

    def infra(self) -> list[Component]:
        ctx = self._context()
        return [*kafka_nodes(ctx), *(make(ctx) for make in INFRA)]

    def apps(self) -> list[Component]:
        ctx = self._context()
        return [App(ctx, spec) for spec in self.settings.apps]

    def component(self, name: str) -> Component | None:
        for comp in [*self.infra(), *self.apps()]:
            if comp.name == name:
                return comp
        return None

    # -- up ------------------------------------------------------------------------------

    def up(
        self, apps: bool = True, *, timeout: float = 60.0, stop_on_failure: bool = True
    ) -> StackInfo:
        """Start what is not running (infra in parallel, then the apps in parallel).

        Components already running from this run dir are reused when healthy. On failure,
        what this call started is stopped again (unless stop_on_failure is false) and a
        StackError names each failed component with the tail of its log.
        """
        t0 = time.monotonic()
        self.paths.ensure()
        external = self.external
        progress = _Progress()
        results: list[ComponentResult] = []
        with process.file_lock(self.run_dir / "stack.lock"):
            waves = [self.infra()]
            if apps:
                waves.append(self.apps())
            try:
                for wave in waves:
                    results += self._ensure_all(wave, external, progress, timeout)
            except StackError as exc:
                if stop_on_failure and progress.spawned:
                    self._stop_names(progress.spawned, timeout=15.0)
                    exc.add_note(f"stopped again: {', '.join(progress.spawned)}")
                raise
        return StackInfo(
            env=self.env(),
            components=results,
            seconds=time.monotonic() - t0,
            edge_url=self.edge_url,
        )

    def _ensure_all(
        self,
        comps: list[Component],
        external: frozenset[str],
        progress: _Progress,
        timeout: float,
    ) -> list[ComponentResult]:
        results: list[ComponentResult] = []
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=len(comps) or 1) as pool:
            futures = [
                pool.submit(self._ensure, comp, comp.name in external, progress, timeout)
                for comp in comps
            ]
            for future in futures:
                try:
                    results.append(future.result())
                except BaseException as exc:
                    errors.append(exc)
        if errors:
            if len(errors) == 1 and isinstance(errors[0], StackError):
                raise errors[0]
            raise StackError("\n".join(str(e) for e in errors))
        return results

    def _ensure(
        self, comp: Component, is_external: bool, progress: _Progress, timeout: float
    ) -> ComponentResult:
        try:
            return self._ensure_one(comp, is_external, progress, timeout)
        except StackError:
            raise
        except Exception as exc:
            raise ComponentError(comp.name, f"could not be started: {exc!r}") from exc

    def _ensure_one(
        self, comp: Component, is_external: bool, progress: _Progress, timeout: float
    ) -> ComponentResult:
        t0 = time.monotonic()
        if is_external:
            return ComponentResult(comp.name, "external", "(external)", None, 0.0)
        record = process.read_record(self.paths, comp.name)
        if record is not None and process.is_running(record):
            self._wait_healthy(comp, record, timeout)
            comp.after_healthy()
            return ComponentResult(
                comp.name, "reused", comp.address, record.pid, time.monotonic() - t0
            )
        process.forget(self.paths, comp.name)
        # A process of ours that was just killed may still hold its port for a moment:
        # its leader is a zombie already, its other threads are still closing the
        # sockets. Give that a few seconds before calling the port someone else's.
        if port_in_use(HOST, comp.port) and not process.wait_until(
            lambda: not port_in_use(HOST, comp.port), timeout=PORT_RELEASE_SECONDS, interval=0.1
        ):
            raise ComponentError(
                comp.name,
                f"port {comp.port} is in use by a process this stack did not start "
                f"(no live pid file in {self.paths.pids}); stop it or free the port",
            )
        comp.prepare()
        record = process.spawn(
            self.paths,
            comp.name,
            comp.command(),
            env=comp.process_env(),
            cwd=comp.cwd(),
            run_as=comp.run_as(),
        )
        progress.add(comp.name)
        self._wait_healthy(comp, record, timeout)
        comp.after_healthy()
        return ComponentResult(
            comp.name, "started", comp.address, record.pid, time.monotonic() - t0
        )

    def _wait_healthy(self, comp: Component, record: process.ProcessRecord, timeout: float) -> None:
        last = "no health check ran"

        def check() -> bool:
            nonlocal last
            try:
                comp.probe(timeout=2.0)
            except Exception as exc:
                last = str(exc) or repr(exc)
                return False
            return True

        healthy = process.wait_until(
            check, timeout=timeout, interval=0.2, alive=lambda: process.is_running(record)
        )
        if healthy:
            return
        log = self.paths.log(comp.name)
        if not process.is_running(record):
            code = process.exit_code(record)
            how = f"exited (status {code})" if code is not None else "exited"
            message = f"{how} before it became healthy; last check: {last}"
        else:
            message = f"not healthy after {timeout:.0f} s (pid {record.pid}); last check: {last}"
        raise ComponentError(comp.name, f"{message}\n  log: {log}", process.tail(log))

    # -- down ----------------------------------------------------------------------------

    def down(
        self, only: StackInfo | Iterable[str] | None = None, *, timeout: float = 15.0
    ) -> list[str]:
        """Stop the stack's processes (all recorded ones, or just `only`); apps go first.

        `only` may be the StackInfo an `up` returned: then exactly what that call started is
        stopped. Returns the names of the components that were running and are now stopped.
        """
        if isinstance(only, StackInfo):
            only = only.started
        with process.file_lock(self.run_dir / "stack.lock"):
            names = list(only) if only is not None else self._recorded_names()
            return self._stop_names(names, timeout=timeout)

    def _recorded_names(self) -> list[str]:
        known = [
            *self.settings.kafka_node_names(),
            *(n for n in INFRA_NAMES if n != "kafka"),
            *(spec.name for spec in self.settings.apps),
        ]
        if self.paths.pids.is_dir():
            for pid_file in sorted(self.paths.pids.glob("*.pid")):
                if pid_file.stem not in known:
                    known.append(pid_file.stem)
        return known

    def _stop_names(self, names: Sequence[str], *, timeout: float) -> list[str]:
        first = [n for n in names if not is_infra(n)]
        then = [n for n in names if is_infra(n)]
        stopped: list[str] = []
        for wave in (first, then):
            if not wave:
                continue
            with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                done = pool.map(lambda n: (n, self._stop_one(n, timeout)), wave)
                stopped += [name for name, was_running in done if was_running]
        return stopped

    def _stop_one(self, name: str, timeout: float) -> bool:
        comp = self.component(name)
        sig = comp.stop_signal if comp is not None else signal.SIGTERM
        return process.stop(self.paths, name, sig=sig, timeout=timeout)

    # -- status --------------------------------------------------------------------------

    def status(self, *, probe_timeout: float = 2.0) -> list[ComponentStatus]:
        external = self.external
        comps = [*self.infra(), *self.apps()]

        def one(comp: Component) -> ComponentStatus:
            if comp.name in external:
                return ComponentStatus(comp.name, "external", "(external)")
            record = process.read_record(self.paths, comp.name)
            if record is None or not process.is_running(record):
                return ComponentStatus(comp.name, "stopped", comp.address)
            try:
                comp.probe(timeout=probe_timeout)
            except Exception as exc:
                return ComponentStatus(
                    comp.name, "unhealthy", comp.address, record.pid, str(exc) or repr(exc)
                )
            return ComponentStatus(comp.name, "healthy", comp.address, record.pid)

        with ThreadPoolExecutor(max_workers=len(comps)) as pool:
            return list(pool.map(one, comps))
