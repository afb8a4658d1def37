"""The chaos suite's summary: one row per target, printed at the end of the run and
written to the run folder (``<run>/chaos/summary.md`` and ``summary.json``)."""

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from devstack.config import default_run_dir
from tests.support.ownstack import ROOT

COLUMNS = (
    "target",
    "jobs",
    "completed",
    "lost",
    "duplicated",
    "seconds to recover",
    "refused (503)",
)


@dataclass(frozen=True)
class Row:
    target: str
    jobs: int
    completed: int
    lost: int
    duplicated: int
    # From the kill until every accepted job was final again (the restart included).
    seconds_to_recover: float
    # Uploads answered 503 during the outage (no job; the client sent them again).
    refused: int = 0
    # Final-status records delivered again with the ce_id of one already there (the same
    # event, dropped by every consumer); a second *distinct* final event is `duplicated`.
    redelivered: int = 0

    def cells(self) -> tuple[str, ...]:
        recover = f"{self.seconds_to_recover:.1f}" if self.lost == 0 else "—"
        return (
            self.target,
            str(self.jobs),
            str(self.completed),
            str(self.lost),
            str(self.duplicated),
            recover,
            str(self.refused),
        )


ROWS: list[Row] = []


def table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(" --- " for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def summary_dir() -> Path:
    return default_run_dir(ROOT) / "chaos"


def write(rows: list[Row]) -> Path:
    """Markdown and JSON, with the machine and the date, as the benchmarks do."""
    folder = summary_dir()
    folder.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)"
    markdown = folder / "summary.md"
    markdown.write_text(
        f"# Chaos suite\n\n{when} on {machine}; `uv run pytest tests/chaos -m chaos`\n\n"
        "Each target is killed with SIGKILL while its jobs run, then restarted as `make run` "
        "would; seconds to recover: from the kill until every accepted job was final.\n\n"
        f"{table(rows)}\n"
    )
    (folder / "summary.json").write_text(
        json.dumps({"date": when, "machine": machine, "rows": [asdict(r) for r in rows]}, indent=1)
        + "\n"
    )
    return markdown
