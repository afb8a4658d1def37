import hashlib

import pytest

from gateway.resumable.fields import repr_sha256, sf_boolean, sf_integer, sha256_field

pytestmark = pytest.mark.unit


def test_structured_fields() -> None:
    assert sf_integer("12") == 12
    assert sf_integer("-1") is None
    assert sf_integer("1.5") is None
    assert sf_boolean("?1") is True
    assert sf_boolean("?0") is False
    assert sf_boolean("1") is None
    digest = hashlib.sha256(b"abc").hexdigest()
    assert repr_sha256(sha256_field(digest)) == digest
    assert repr_sha256("md5=:AAAA:, " + sha256_field(digest)) == digest
    assert repr_sha256("sha-256=:nope:") is None
