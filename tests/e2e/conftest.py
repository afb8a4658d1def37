from collections.abc import Iterator

import pytest

from devstack import StackInfo
from tests.support.stack import running_stack

QUIET_SECONDS = 3


@pytest.fixture(scope="package")
def stack(infra: dict[str, str]) -> Iterator[StackInfo]:
    """A running stack: edge, four services, reference analyzer.

    Package-scoped: the services stop after the e2e tests, so that they do not react to
    the events that other tests put on the real topics. A request body that goes quiet
    is cut after 3 s instead of 30 (test_quiet_bodies.py)."""
    with running_stack(infra, {"UPLOAD_BODY_IDLE_SECONDS": str(QUIET_SECONDS)}) as info:
        yield info


@pytest.fixture(scope="package")
def edge_url(stack: StackInfo) -> str:
    """The public origin of the running stack."""
    return stack.edge_url


@pytest.fixture(scope="package")
def service_urls(stack: StackInfo) -> dict[str, str]:
    """Each service's own address, behind the edge (for /metrics)."""
    return {c.name: f"http://{c.address}" for c in stack.components if c.address}
