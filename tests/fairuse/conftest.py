from collections.abc import Iterator

import pytest

from gateway.settings import Settings
from tests.support.limits import TEST_UPLOAD_LIMITS
from tests.support.stack import running_stack


def shipped_limits() -> dict[str, str]:
    """The gateway's fair-use limits as `make run` ships them: the settings' defaults,
    in place of the raised ones every other test runs with."""
    fields = Settings.model_fields
    return {name: str(fields[name.lower()].default) for name in TEST_UPLOAD_LIMITS}


@pytest.fixture(scope="package")
def edge_url(infra: dict[str, str]) -> Iterator[str]:
    """The whole stack through the edge, with the limits `make run` has."""
    with running_stack(infra, shipped_limits()) as info:
        assert "gateway" not in info.reused, "a gateway with other limits was already running"
        yield info.edge_url
