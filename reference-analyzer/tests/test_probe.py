"""What a file's own bytes say about its completeness (reference_analyzer.probe)."""

import pytest

from reference_analyzer.probe import read_head
from reference_analyzer.testing import MEDIARECORDER_WEBM, encode, sine

pytestmark = pytest.mark.unit


def head_of(tmp_path, data: bytes):
    path = tmp_path / "file"
    path.write_bytes(data)
    return read_head(path)


@pytest.mark.parametrize(
    ("format", "subtype", "options"),
    [
        ("WAV", "PCM_16", None),
        ("AIFF", "PCM_16", None),
        ("OGG", "OPUS", None),
        ("OGG", "VORBIS", None),
        ("WEBM", "OPUS", MEDIARECORDER_WEBM),
        ("WEBM", "VORBIS", None),
        ("MP4", "AAC", None),
        ("MP3", "MP3", None),  # LAME's Info frame states the byte count
    ],
)
def test_whole_files_are_whole_and_100_bytes_less_are_cut_off(tmp_path, format, subtype, options):
    rate = 48_000 if subtype == "OPUS" else 44_100
    data = encode(sine(seconds=1, sample_rate=rate, channels=2), rate, format, subtype,
                  muxer_options=options)  # fmt: skip
    assert head_of(tmp_path, data).cut_off is None
    assert head_of(tmp_path, data[:-100]).cut_off is not None


def test_a_capture_pattern_inside_the_last_ogg_page_is_not_taken_for_a_page(tmp_path):
    data = bytearray(encode(sine(seconds=1, sample_rate=48_000), 48_000, "OGG", "OPUS"))
    # "OggS" and a header with a wrong version, near the end of the last page's data.
    data[-40:-13] = b"OggS\x07" + b"\xff" * 22
    assert head_of(tmp_path, bytes(data)).cut_off is None


def test_a_cluster_id_inside_the_last_webm_block_is_not_taken_for_a_cluster(tmp_path):
    data = bytearray(
        encode(sine(seconds=1, sample_rate=48_000), 48_000, "WEBM", "OPUS",
               muxer_options=MEDIARECORDER_WEBM)
    )  # fmt: skip
    # A Cluster ID with a huge size, in the last block's payload: not followed by a
    # Timestamp, so not a Cluster.
    data[-20:-8] = b"\x1f\x43\xb6\x75\x01\x00\x00\x00\x00\xff\xff\xff"
    assert head_of(tmp_path, bytes(data)).cut_off is None


def test_an_mp3_length_frame_and_a_flac_bit_depth_are_read_from_the_head(tmp_path):
    mp3 = encode(sine(seconds=0.5, sample_rate=44_100), 44_100, "MP3", "MP3")
    assert head_of(tmp_path, mp3).mp3_length
    plain = encode(sine(seconds=0.5, sample_rate=44_100), 44_100, "MP3", "MP3",
                   muxer_options={"write_xing": "0"})  # fmt: skip
    assert not head_of(tmp_path, plain).mp3_length
    flac = encode(sine(seconds=0.5, sample_rate=44_100), 44_100, "FLAC", "PCM_16")
    assert head_of(tmp_path, flac).flac_bits == 16
