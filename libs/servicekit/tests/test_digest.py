import hashlib
import os

import pytest

from servicekit.digest import STATE_BYTES, Sha256

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


def test_a_bytearray_is_hashed_like_the_same_bytes() -> None:
    data = os.urandom(100_001)
    digest = Sha256()
    digest.update(bytearray(data[:5]))
    digest.update(b"")
    digest.update(bytearray())
    digest.update(data[5:])
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
