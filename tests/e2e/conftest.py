from collections.abc import Iterator

import pytest

from tests.support.stack import running_stack


@pytest.fixture(scope="package")
def edge_url(infra: dict[str, str]) -> Iterator[str]:
    """The public origin of a running stack: edge, four services, reference analyzer.

    Package-scoped: the services stop after the e2e tests, so that they do not react to
    the events that other tests put on the real topics."""
    with running_stack(infra) as info:
        yield info.edge_url
