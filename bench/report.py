"""Benchmark results as a markdown table and JSON, naming the machine, date, command and
the definition of their percentiles (docs/architecture.md §13). Every benchmark writes
through :func:`write`."""

import json
import os
import platform
import shlex
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PERCENTILES

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    python = platform.python_version()
    return f"{platform.node()} ({platform.machine()}, {cpus} cores{mem}, Python {python})"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, to say how busy the machine was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write(
    name: str,
    title: str,
    rows: list[dict[str, Any]],
    notes: list[str] | None = None,
    *,
    module: str | None = None,
) -> Path:
    """Write ``results/<name>.md`` and ``results/<name>.json``; return the markdown path.
    ``module`` names the command's ``bench.<module>`` when one benchmark writes several
    results (default: ``name``)."""
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "title": title,
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            shlex.quote(a)
            for a in ["uv", "run", "python", "-m", f"bench.{module or name}", *sys.argv[1:]]
        ),
        "percentiles": PERCENTILES,
    }
    (RESULTS / f"{name}.json").write_text(
        json.dumps({**meta, "rows": rows, "notes": notes or []}, indent=2) + "\n"
    )
    columns = list(rows[0]) if rows else []
    lines = [
        *header(meta),
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
        *("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows),
    ]
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path


def header(meta: dict[str, Any], percentiles_note: str = "") -> list[str]:
    """A result's first lines: its title, machine, date, command and percentiles
    (``percentiles_note`` says when a result uses none)."""
    return [
        f"# {meta['title']}",
        "",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- percentiles: {meta['percentiles']}{percentiles_note}",
        "",
    ]


def write_labelled(
    name: str,
    title: str,
    label: str,
    figures: dict[str, Any],
    render: Callable[[dict[str, Any], dict[str, str]], str],
    *,
    module: str,
) -> Path:
    """Add ``figures`` under ``label`` to ``results/<name>.json``, keeping the other
    labels (a before and an after, run apart), and rewrite ``results/<name>.md`` with
    every label through ``render(runs, meta)``; return the markdown path."""
    path = RESULTS / f"{name}.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    runs = saved.get("runs", {}) | {label: figures}
    meta = {
        "title": title,
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"uv run python -m bench.{module} --label <label>",
        "percentiles": PERCENTILES,
    }
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({**meta, "runs": runs}, indent=2, ensure_ascii=False) + "\n")
    markdown = render(runs, meta)
    out = RESULTS / f"{name}.md"
    out.write_text(markdown)
    print(markdown)
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)
