import pytest

from servicekit.http import describe_errors

pytestmark = pytest.mark.unit

ERRORS = [
    {"loc": ("body", "size"), "msg": "Input should be greater than 0"},
    {"loc": ("body", "sha256"), "msg": "Field required"},
    {"loc": (), "msg": "Invalid JSON"},
]


def test_each_problem_is_named_by_where_it_is():
    assert describe_errors(ERRORS) == (
        "body.size: Input should be greater than 0; body.sha256: Field required; body: Invalid JSON"
    )


def test_a_limit_names_the_first_problems_and_counts_the_rest():
    assert (
        describe_errors(ERRORS, limit=1) == "body.size: Input should be greater than 0 (and 2 more)"
    )


def test_a_prefix_starts_every_location():
    errors = [{"loc": ("sample_rate",), "msg": "Input should be a valid integer"}]
    assert describe_errors(errors, prefix="result") == (
        "result.sample_rate: Input should be a valid integer"
    )
