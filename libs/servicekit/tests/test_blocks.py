import os
import random

import pytest

from servicekit.blocks import Blocks

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [1, 7, 4096, 65_536])
def test_pieces_of_any_size_come_back_as_the_same_bytes_in_whole_blocks(size: int) -> None:
    data = os.urandom(300_001)
    cuts = sorted(random.Random(size).sample(range(1, len(data)), 40))
    blocks = Blocks(size, bytes)
    out: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        out += blocks.add(data[start:end])
    assert all(len(b) == size and type(b) is bytes for b in out)
    assert len(blocks) == len(data) % size
    assert b"".join(out) + blocks.rest() == data


def test_rest_keeps_the_bytes_held_and_clear_drops_them() -> None:
    blocks = Blocks(10, bytes)
    assert blocks.add(b"abc") == []
    assert blocks.add(bytearray(b"def")) == []
    assert blocks.rest() == b"abcdef"
    assert blocks.rest() is blocks.rest()
    assert len(blocks) == 6
    assert blocks.add(memoryview(b"ghijklmnopq")) == [b"abcdefghij"]
    assert blocks.rest() == b"klmnopq"
    blocks.clear()
    assert len(blocks) == 0
    assert not blocks
    assert blocks.rest() == b""


def test_one_piece_may_complete_several_blocks() -> None:
    blocks = Blocks(4, bytes)
    assert blocks.add(b"x") == []
    assert blocks.add(b"0123456789") == [b"x012", b"3456"]
    assert blocks.rest() == b"789"


def test_a_block_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        Blocks(0, bytes)


def test_blocks_of_bytearray_for_senders_that_take_a_mutable_buffer() -> None:
    blocks = Blocks(3, bytearray)
    out = blocks.add(b"abcd")
    assert out == [bytearray(b"abc")]
    assert type(out[0]) is bytearray
    assert type(blocks.rest()) is bytearray
    assert blocks.rest() == bytearray(b"d")
