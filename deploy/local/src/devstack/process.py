"""Spawning, identifying and stopping the stack's processes.

Each process gets `<run_dir>/logs/<name>.log`, `<run_dir>/pids/<name>.pid` (the bare pid, so
`kill $(cat …)` works) and `<run_dir>/pids/<name>.json` (argv and kernel start time). A pid is
only ever signalled when its start time and command line still match what we recorded, so a
recycled pid never gets hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import ComponentError

# Popen objects of children we spawned, kept so that they can be reaped and so that their
# __del__ never warns about a child that is meant to outlive the Popen object.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_EXIT_CODES: dict[int, int] = {}
_CHILDREN_LOCK = threading.Lock()


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def meta_file(self, name: str) -> Path:
        return self.pids / f"{name}.json"

    def data_dir(self, name: str) -> Path:
        return self.data / name

    def conf_dir(self, name: str) -> Path:
        return self.conf / name

    def ensure(self) -> None:
        for d in (self.logs, self.pids, self.data, self.conf):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_time: int
    argv: tuple[str, ...]


@dataclass(frozen=True)
class RunAs:
    """A user to drop to when we run as root (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int
    name: str


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a pid, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _proc_cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _reap(pid: int, wait: float = 0.0) -> None:
    with _CHILDREN_LOCK:
        child = _CHILDREN.get(pid)
        if child is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(wait)
        if child.returncode is not None:
            _EXIT_CODES[pid] = child.returncode
            del _CHILDREN[pid]


def is_running(record: ProcessRecord) -> bool:
    """True when the recorded process is alive (not a zombie) and is still our command."""
    _reap(record.pid)
    stat = _proc_stat(record.pid)
    if stat is None:
        return False
    state, start_time = stat
    if state in ("Z", "X") or start_time != record.start_time:
        return False
    cmdline = _proc_cmdline(record.pid)
    if cmdline is None:
        return False
    # Empty while the process is between two execs (the java launcher re-executes
    # itself): the start time already matched, so it is ours, and alive.
    if not cmdline:
        return True
    # Some programs rewrite their argv (PostgreSQL may); the executable must still match.
    return cmdline[0] == record.argv[0]


def exit_code(record: ProcessRecord) -> int | None:
    """The exit status of a child we spawned in this interpreter, if it has exited."""
    _reap(record.pid)
    with _CHILDREN_LOCK:
        return _EXIT_CODES.get(record.pid)


def read_record(paths: RunPaths, name: str) -> ProcessRecord | None:
    try:
        pid = int(paths.pid_file(name).read_text().strip())
        meta = json.loads(paths.meta_file(name).read_text())
        return ProcessRecord(
            name=name,
            pid=pid,
            start_time=int(meta["start_time"]),
            argv=tuple(str(a) for a in meta["argv"]),
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def forget(paths: RunPaths, name: str) -> None:
    paths.pid_file(name).unlink(missing_ok=True)
    paths.meta_file(name).unlink(missing_ok=True)


def spawn(
    paths: RunPaths,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    run_as: RunAs | None = None,
) -> ProcessRecord:
    paths.ensure()
    log_path = paths.log(name)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        log.flush()
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else [],
        )
    with _CHILDREN_LOCK:
        _CHILDREN[child.pid] = child
    stat = _proc_stat(child.pid)
    record = ProcessRecord(
        name=name,
        pid=child.pid,
        start_time=stat[1] if stat is not None else -1,
        argv=tuple(argv),
    )
    meta = {"argv": list(record.argv), "start_time": record.start_time, "started": time.time()}
    paths.meta_file(name).write_text(json.dumps(meta, indent=1) + "\n")
    paths.pid_file(name).write_text(f"{record.pid}\n")
    return record


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _wait_group_gone(pgid: int, deadline: float) -> bool:
    while True:
        _reap(pgid)
        if not _group_members(pgid):
            # The leader may have turned into a zombie after the first look; collect it
            # so that no Popen is left to warn about a "running" child at exit.
            _reap(pgid, wait=1.0)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(
    paths: RunPaths,
    name: str,
    *,
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = 15.0,
) -> bool:
    """Stop the process group we started as `name`. True when something of ours was running."""
    record = read_record(paths, name)
    if record is None or not is_running(record):
        forget(paths, name)
        return False
    pgid = record.pid  # start_new_session=True made the process its group's leader
    if os.getpgid(record.pid) != pgid:
        raise ComponentError(name, f"pid {record.pid} is no longer a process group leader")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    if not _wait_group_gone(pgid, time.monotonic() + timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        _wait_group_gone(pgid, time.monotonic() + 5.0)
    forget(paths, name)
    return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except FileNotFoundError:
        return f"(no log file at {path})"
    text = data.decode(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll `check` until it is true, the deadline passes, or `alive` says the process died."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if alive is not None and not alive():
            # One last look: it may have become healthy and then exited on purpose.
            return check()
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock so that two `up`/`down` calls on one run dir do not race."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
