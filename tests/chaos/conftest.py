"""The chaos suite's summary table at the end of the run (see report.py)."""

import pytest

from tests.chaos.report import ROWS, table, write


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    path = write(ROWS)
    terminalreporter.section("chaos: kill -9 and recovery")
    terminalreporter.write_line(table(ROWS))
    terminalreporter.write_line(f"(also in {path})")
