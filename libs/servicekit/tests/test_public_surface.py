"""servicekit's public surface (issue 23 point 4): every module says what it offers in
``__all__``, and every name the rest of the repository takes from a servicekit module is
in it. A name used elsewhere but missing from ``__all__`` (say, added on a branch that
did not list it) fails here; the module's ``__all__`` is where to add it."""

import ast
import importlib
import pkgutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import servicekit

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SKIPPED = {".venv", ".git", ".cache", ".run", ".mypy_cache", ".ruff_cache", "node_modules"}


def modules() -> list[str]:
    found = pkgutil.walk_packages(servicekit.__path__, "servicekit.")
    return ["servicekit", *sorted(module.name for module in found)]


def is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def sources() -> Iterator[Path]:
    for path in ROOT.rglob("*.py"):
        if SKIPPED.isdisjoint(path.relative_to(ROOT).parts):
            yield path


def taken() -> dict[str, set[tuple[str, str]]]:
    """Each servicekit module: the names other files take from it, with the file."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in sources():
        where = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(), where)
        aliases: dict[str, str] = {}  # a local name bound to a servicekit module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if node.module.startswith("servicekit") and is_module(full):
                        aliases[alias.asname or alias.name] = full
                    elif node.module.startswith("servicekit."):
                        found[node.module].add((alias.name, where))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("servicekit.") and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                module = aliases.get(node.value.id)
                if module is not None and not is_module(f"{module}.{node.attr}"):
                    found[module].add((node.attr, where))
    return found


@pytest.mark.parametrize("name", modules())
def test_each_module_says_what_it_offers(name: str) -> None:
    assert isinstance(getattr(importlib.import_module(name), "__all__", None), list), (
        f"{name} has no __all__"
    )


def test_every_name_taken_from_a_module_is_in_its_all() -> None:
    missing = sorted(
        f"{module}.{name} (taken by {where})"
        for module, uses in taken().items()
        for name, where in uses
        if name not in getattr(importlib.import_module(module), "__all__", ())
    )
    assert not missing, "not in their module's __all__:\n" + "\n".join(missing)
