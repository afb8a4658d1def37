"""Every secret in the repository's example files is refused in production (issue 19
point 6): the examples are published, so their values are known to everyone."""

import re
from pathlib import Path

import pytest

from servicekit.settings import production_problem

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"SECRET|PASSWORD|DATABASE_URL|_JWT_KEY")


def example_secrets() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted({*ROOT.glob("deploy/**/*.example"), ROOT / "deploy" / ".env.example"}):
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#") and SECRET_NAME.search(name) and value:
                found.append((str(path.relative_to(ROOT)), name.strip(), value.strip()))
    return found


def test_the_examples_have_secrets_to_check() -> None:
    files = {path for path, _, _ in example_secrets()}
    assert {"deploy/.env.example", "deploy/k8s/overlays/example/secrets.env.example"} <= files


@pytest.mark.parametrize(("path", "name", "value"), example_secrets())
def test_an_example_secret_is_refused_in_production(path: str, name: str, value: str) -> None:
    assert production_problem(name.lower(), value) is not None, (path, name)
