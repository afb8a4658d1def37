"""bench.report.write_labelled: a run's figures go under their label beside the other
labels' (a before and an after run apart), and the markdown shows them all."""

import json
from typing import Any

import pytest

from bench import report

pytestmark = pytest.mark.unit


def render(runs: dict[str, Any], meta: dict[str, str]) -> str:
    return f"# {meta['title']}\n" + "".join(f"- {k}: {v['n']}\n" for k, v in runs.items())


def test_a_label_is_added_beside_the_others_and_one_rerun_replaces_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    report.write_labelled("x", "X", "before", {"n": 1}, render, module="x")
    report.write_labelled("x", "X", "after", {"n": 2}, render, module="x")
    md = report.write_labelled("x", "X", "after", {"n": 3}, render, module="x")
    saved = json.loads((tmp_path / "x.json").read_text())
    assert saved["runs"] == {"before": {"n": 1}, "after": {"n": 3}}
    assert saved["command"] == "uv run python -m bench.x --label <label>"
    assert md.read_text() == "# X\n- before: 1\n- after: 3\n"
