import hashlib
import os

import pytest

from gateway.resumable.digest import STATE_BYTES, Sha256
from gateway.resumable.fields import repr_sha256, sf_boolean, sf_integer, sha256_field

pytestmark = pytest.mark.unit


def test_a_saved_state_continues_to_the_same_digest_as_hashlib() -> None:
    data = os.urandom(1_000_003)
    first = Sha256()
    first.update(data[:777])
    state = first.state()
    assert len(state) == STATE_BYTES
    resumed = Sha256.restore(state)
    resumed.update(data[777:])
    assert resumed.hexdigest() == hashlib.sha256(data).hexdigest()
    assert first.hexdigest() == hashlib.sha256(data[:777]).hexdigest()


def test_a_state_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="bytes"):
        Sha256.restore(b"short")


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
