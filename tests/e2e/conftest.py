import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def edge_url(infra: dict[str, str]) -> Iterator[str]:
    """The public origin of a running stack: edge, four services, reference analyzer."""
    from devstack import Stack

    os.environ.update(infra)
    stack = Stack(root=ROOT)
    started = stack.up(apps=True)
    try:
        yield stack.edge_url
    finally:
        stack.down(only=started)
