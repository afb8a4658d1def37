"""What a service sends goes through the publishers it declared on its broker (issue 23
point 2), so that its AsyncAPI document (``make docs``) is what is sent: no source of a
service, nor servicekit, publishes through the broker itself (``broker.publish``), which
sends to any topic without declaring it."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "libs" / "servicekit" / "src", *sorted((ROOT / "services").glob("*/src"))]


def _names(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_names(node.value)}.{node.attr}"
    return ""


def broker_publishes() -> list[str]:
    found = []
    for root in SOURCES:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("publish", "publish_batch")
                    and "broker" in _names(node.func.value).lower()
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_services_send_only_through_declared_publishers() -> None:
    assert broker_publishes() == [], "publish through a publisher declared on the broker"
