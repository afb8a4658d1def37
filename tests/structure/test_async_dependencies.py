"""Route dependencies are coroutine functions: FastAPI runs a plain function in a worker
thread, one thread hop per dependency per request, which cost the gateway's upload
route five hops for its five dependencies (issue 21)."""

import ast
import inspect
from pathlib import Path

import pytest

from servicekit.service import provided

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "libs" / "servicekit" / "src",
    ROOT / "reference-analyzer" / "src",
    *sorted((ROOT / "services").glob("*/src")),
]


def plain_dependencies() -> list[str]:
    found = []
    for root in SOURCES:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text())
            plain = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Depends"
                    and node.args
                    and isinstance(node.args[0], ast.Name)
                    and node.args[0].id in plain
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.args[0].id}")
    return found


def test_route_dependencies_are_coroutine_functions() -> None:
    assert plain_dependencies() == []


def test_provided_makes_a_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(provided(object))
