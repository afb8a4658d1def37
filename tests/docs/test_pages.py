"""The hand-written pages: one per topic, every relative link resolves, every Python
example at least compiles (the FastStream ones also run up to their decorators)."""

import ast
import re
from pathlib import Path

import pytest

from contracts import topics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
PYTHON = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_every_topic_has_a_page_linked_from_the_index():
    index = (DOCS / "README.md").read_text()
    for topic in topics.ALL:
        page = DOCS / "topics" / f"{topic}.md"
        assert page.is_file(), page
        assert f"(topics/{topic}.md)" in index
        text = page.read_text()
        for part in ("producer", "consumer", "key", "Ordering", "Delivery", "Subscribing"):
            assert part in text, f"{page.name} does not say {part}"
        assert f"`{topics.dead_letter(topic)}`" in text
        assert "contracts/schemas/" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path = target.split("#", 1)[0]
        if path:
            assert (page.parent / path).exists(), f"{page.name}: {target}"


def test_root_readme_links_the_docs():
    assert "(docs/README.md)" in (ROOT / "README.md").read_text()


EXAMPLES = [
    (page, i, code) for page in PAGES for i, code in enumerate(PYTHON.findall(page.read_text()))
]


@pytest.mark.parametrize(
    ("page", "index", "code"), EXAMPLES, ids=lambda v: v.name if isinstance(v, Path) else ""
)
def test_python_example_compiles_and_faststream_ones_declare_their_subscriber(page, index, code):
    # aiokafka examples use top-level await (as in an asyncio REPL); compile only those.
    compile(code, f"{page.name}[{index}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if "KafkaBroker(" in code:
        namespace: dict[str, object] = {}
        exec(compile(code, f"{page.name}[{index}]", "exec"), namespace)
        assert namespace["broker"].subscribers  # type: ignore[attr-defined]
