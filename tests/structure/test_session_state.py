"""A pooled connection that takes session state says so (servicekit.postgres): pools
release connections without asyncpg's reset query (issue 21), so a function that takes
a session advisory lock, LISTENs or runs a plain SET on a connection it acquired from a
pool must call ``takes_session_state`` on it, and its release resets it in full."""

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "libs" / "servicekit" / "src", *sorted((ROOT / "services").glob("*/src"))]
SESSION_SQL = re.compile(r"pg_(try_)?advisory_lock(_shared)?\(|^\s*SET (?!LOCAL)|LISTEN ", re.I)


def _calls(node: ast.AST, name: str) -> bool:
    return any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr == name)
            or (isinstance(n.func, ast.Name) and n.func.id == name)
        )
        for n in ast.walk(node)
    )


def unmarked_in(source: str, where: str) -> list[str]:
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        takes = _calls(fn, "add_listener") or any(
            isinstance(n, ast.Constant) and isinstance(n.value, str) and SESSION_SQL.search(n.value)
            for n in ast.walk(fn)
        )
        if takes and _calls(fn, "acquire") and not _calls(fn, "takes_session_state"):
            found.append(f"{where}:{fn.lineno} {fn.name}")
    return found


def test_pooled_connections_that_take_session_state_say_so() -> None:
    found = [
        problem
        for root in SOURCES
        for path in root.rglob("*.py")
        for problem in unmarked_in(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


@pytest.mark.parametrize(
    ("statement", "flagged"),
    [
        ("await conn.fetchval('SELECT pg_try_advisory_lock(1)')", True),
        ("await conn.execute('SET statement_timeout = 0')", True),
        ("await conn.add_listener('channel', print)", True),
        ("await conn.execute('SET LOCAL lock_timeout = 1')", False),
        ("await conn.fetchval('SELECT pg_advisory_xact_lock(1)')", False),
        ("takes_session_state(conn); await conn.fetchval('SELECT pg_advisory_lock(1)')", False),
    ],
)
def test_the_check_tells_session_state_from_the_rest(statement: str, flagged: bool) -> None:
    source = f"async def held(pool):\n    async with pool.acquire() as conn:\n        {statement}\n"
    assert bool(unmarked_in(source, "probe")) is flagged
