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
