"""A whole stack of a test's own (Kafka, S3, PostgreSQL, edge, apps) in a run folder of
its own, for tests that kill its processes: nothing another test package uses is touched.

The folder is ``<run>/own/<name>`` (``<run>``: the session's run folder), emptied before
each start and left after it, logs included, for a look at what happened. Not under
pytest's temporary folder: as root, PostgreSQL runs as another user that must be able
to enter every parent folder, and every pytest session that starts on the machine takes
that permission away from ``/tmp/pytest-of-root`` again.

Its ports are the session's (``AUDIOPIPE_PORT_OFFSET``) shifted by a ``shift`` of the
test's own: 200, 300, 400... keep every port of it apart from the session's stack and
from each other (the edge moves by the shift, the apps by the same, never onto each
other), and inside the same thousand as the session's Kafka.
"""

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from devstack import AppSpec, Stack, StackInfo
from devstack import process as devprocess
from devstack.config import default_run_dir

ROOT = Path(__file__).resolve().parents[2]
# Variables that would make the stack use someone else's infrastructure or ports.
GIVEN = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "S3_ENDPOINT_URL",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "DATABASE_URL",
    "ANALYSIS_SERVER_URL",
    "PUBLIC_BASE_URL",
    "EDGE_PORT",
    "AUDIOPIPE_RUN_DIR",
    "KAFKA_BROKERS",
)


def own_environ(shift: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIVEN}
    base = int(os.environ.get("AUDIOPIPE_PORT_OFFSET", "0") or 0)
    env["AUDIOPIPE_PORT_OFFSET"] = str(base + shift)
    env.update(extra or {})
    return env


def own_run_dir(name: str) -> Path:
    return default_run_dir(ROOT) / "own" / name


@contextlib.contextmanager
def own_stack(
    name: str,
    shift: int,
    extra: Mapping[str, str] | None = None,
    *,
    app_specs: Sequence[AppSpec] | None = None,
    timeout: float = 120.0,
) -> Iterator[tuple[Stack, StackInfo]]:
    """Start the stack (up to ``timeout`` s per component) and stop all of it after.

    ``app_specs``: only these apps (take them from ``Settings.from_environ(own_environ(...))``
    so that their ports are shifted too); all of them by default."""
    run_dir = own_run_dir(name)
    leftover = Stack(root=ROOT, run_dir=run_dir, environ=own_environ(shift, extra), apps=app_specs)
    leftover.down()  # a run that was interrupted may have left processes behind
    shutil.rmtree(run_dir, ignore_errors=True)
    stack = Stack(root=ROOT, run_dir=run_dir, environ=own_environ(shift, extra), apps=app_specs)
    try:
        info = stack.up(apps=True, timeout=timeout)
        yield stack, info
    finally:
        # Everything recorded in the run folder, restarted processes included.
        stack.down()


def kill9(stack: Stack, name: str) -> int:
    """SIGKILL to the component's whole process group (PostgreSQL's backends too, as a
    crash of the machine would); waits until it is gone. Its pid."""
    record = devprocess.read_record(stack.paths, name)
    assert record is not None and devprocess.is_running(record), f"{name} is not running"
    os.killpg(record.pid, signal.SIGKILL)
    gone = devprocess.wait_until(lambda: not devprocess.is_running(record), timeout=30)
    assert gone, f"{name} (pid {record.pid}) survived SIGKILL"
    return record.pid


def restart(stack: Stack, timeout: float = 120.0) -> list[str]:
    """What `make run` would do again: start what is not running, wait until every
    component is healthy. The names it started."""
    return stack.up(apps=True, timeout=timeout).started
