import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def edge_url(infra: dict[str, str]) -> Iterator[str]:
    """The public origin of a running stack: edge, four services, reference analyzer.

    Package-scoped: the services stop after the e2e tests, so that they do not react to
    the events that other tests put on the real topics."""
    from devstack import Stack

    os.environ.update(infra)
    stack = Stack(root=ROOT)
    started = stack.up(apps=True)
    try:
        yield stack.edge_url
    finally:
        stack.down(only=started)
