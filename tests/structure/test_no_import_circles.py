"""No module of ours imports, through others, itself (issue 23 point 3): a circle means two
modules that cannot be understood, tested or replaced one without the other. Every
import counts, those under ``TYPE_CHECKING`` and inside functions too."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = [
    ROOT / "contracts" / "src",
    ROOT / "libs" / "servicekit" / "src",
    *sorted((ROOT / "services").glob("*/src")),
    ROOT / "reference-analyzer" / "src",
    ROOT / "deploy" / "local" / "src",
    ROOT,  # deploy/*.py, as the package `deploy`
]


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in SOURCE_ROOTS:
        files = root.glob("deploy/*.py") if root == ROOT else root.rglob("*.py")
        for path in files:
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # The deepest module of ours the name is in (a package's __init__ counts).
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_modules_of_every_package_form_no_circle() -> None:
    known = modules()
    assert {"servicekit.http", "notifier.streams", "deploy.images"} <= known.keys()
    # A package's own __init__ may name its modules; that is its face, not a circle.
    graph = {
        name: {t for t in imports(name, path, known) if not name.startswith(t + ".")}
        for name, path in known.items()
    }
    assert circles(graph) == []


def test_a_circle_is_found_when_there_is_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
