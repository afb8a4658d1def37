"""`python -m devstack up|down|status|env`."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack.errors import StackError
from devstack.stack import Stack


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _up(stack: Stack, args: argparse.Namespace) -> int:
    info = stack.up(
        apps=not args.infra_only, timeout=args.timeout, stop_on_failure=not args.keep_on_failure
    )
    rows = [("component", "action", "address", "pid", "seconds")]
    for c in info.components:
        pid = str(c.pid) if c.pid is not None else "-"
        rows.append((c.name, c.action, c.address, pid, f"{c.seconds:.1f}"))
    print(_table(rows))
    print(f"ready in {info.seconds:.1f} s; logs in {stack.paths.logs}")
    print(f"demo: {info.edge_url}/")
    return 0


def _down(stack: Stack, args: argparse.Namespace) -> int:
    stopped = stack.down(only=args.only or None)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(stack: Stack, args: argparse.Namespace) -> int:
    statuses = stack.status()
    rows = [("component", "state", "address", "pid", "detail")]
    for s in statuses:
        rows.append((s.name, s.state, s.address, str(s.pid or "-"), s.detail[:100]))
    print(_table(rows))
    return 1 if any(s.state == "unhealthy" for s in statuses) else 0


def _env(stack: Stack, args: argparse.Namespace) -> int:
    for key, value in stack.env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description="The local stack: Kafka, S3, PostgreSQL, edge, apps."
    )
    parser.add_argument("--root", type=Path, help="repository root (default: this checkout)")
    parser.add_argument(
        "--run-dir", type=Path, help="run folder (default: $AUDIOPIPE_RUN_DIR or <root>/.run)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start what is not running and wait until healthy")
    up.add_argument("--infra-only", action="store_true", help="Kafka, S3, PostgreSQL, edge only")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds per component")
    up.add_argument(
        "--keep-on-failure", action="store_true", help="leave started components running"
    )
    up.set_defaults(run=_up)
    down = sub.add_parser("down", help="stop what this run folder started")
    down.add_argument("only", nargs="*", help="component names (default: all)")
    down.set_defaults(run=_down)
    sub.add_parser("status", help="what runs and whether it is healthy").set_defaults(run=_status)
    sub.add_parser("env", help="shell export lines for the services").set_defaults(run=_env)
    args = parser.parse_args(argv)
    try:
        stack = Stack(root=args.root, run_dir=args.run_dir)
        code: int = args.run(stack, args)
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(f"devstack: {note}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
