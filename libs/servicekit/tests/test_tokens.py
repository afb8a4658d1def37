"""Bearer-header parsing, shared by every service that reads ``Authorization``."""

import pytest

from servicekit.tokens import bearer_token

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def", "abc.def"), ("bearer abc", "abc"), ("BEARER  abc ", "abc")],
)
def test_the_token_of_a_bearer_header(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "abc"])
def test_no_bearer_token_is_none(header: str | None) -> None:
    assert bearer_token(header) is None
