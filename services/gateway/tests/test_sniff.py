import io
import wave

import pytest

from gateway.sniff import SNIFF_BYTES, header_bytes, sniff_audio
from tests.support.audio import CLIPS

pytestmark = pytest.mark.unit


def _wav_bytes() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 100)
    return out.getvalue()


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_wav_bytes()[:64], "audio/wav"),
        (b"fLaC\x00\x00\x00\x22" + b"\0" * 56, "audio/flac"),
        (b"ID3\x04\x00\x00" + b"\0" * 58, "audio/mpeg"),
        (b"\xff\xfb\x90\x64" + b"\0" * 60, "audio/mpeg"),
        (b"\xff\xf1\x50\x80" + b"\0" * 60, "audio/aac"),
        (b"OggS\x00\x02" + b"\0" * 22 + b"OpusHead" + b"\0" * 28, "audio/ogg; codecs=opus"),
        (b"OggS\x00\x02" + b"\0" * 22 + b"\x01vorbis" + b"\0" * 29, "audio/ogg"),
        (b"\0\0\0\x20ftypM4A \0\0\0\0" + b"\0" * 48, "audio/mp4"),
        (b"\x1a\x45\xdf\xa3" + b"\0" * 60, "audio/webm"),
        (b"FORM\x00\x01\x00\x00AIFFCOMM" + b"\0" * 48, "audio/aiff"),
        (b"FORM\x00\x01\x00\x00AIFCFVER" + b"\0" * 48, "audio/aiff"),
        (b"\0\0\0\x18ftypiso5\0\0\0\0" + b"\0" * 48, "audio/mp4"),
    ],
)
def test_recognises_audio_by_its_magic_bytes(head: bytes, expected: str) -> None:
    assert sniff_audio(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"%PDF-1.7\n" + b"\0" * 55,
        b"\x89PNG\r\n\x1a\n" + b"\0" * 56,
        b"RIFF\0\0\0\0AVI LIST" + b"\0" * 48,
        b"\0\0\0\x20ftypqt  " + b"\0" * 52,
        b"\xff\xfb\xf0\x00",  # MPEG sync with the invalid bitrate index 15
        b"hello, this is text pretending to be audio",
        b"",
    ],
)
def test_rejects_what_is_not_audio(head: bytes) -> None:
    assert sniff_audio(head) is None


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_every_format_the_analyzer_decodes_is_recognised(name: str) -> None:
    clip = CLIPS[name]
    data = clip.tone(seconds=0.2)
    media_type = sniff_audio(data[:SNIFF_BYTES])
    assert media_type == clip.media_type
    assert len(data) >= header_bytes(media_type, data[:SNIFF_BYTES])


@pytest.mark.parametrize(
    ("media_type", "head", "needed"),
    [
        ("audio/wav", b"RIFF\x04\x00\x00\x00WAVE", 44),
        ("audio/mpeg", b"ID3\x04\x00\x00\x00\x00\x07\x68", 10 + 1000 + 4),
        ("audio/mp4", b"\x00\x00\x00\x20ftypM4A ", 0x20 + 8),
        ("audio/webm", b"\x1a\x45\xdf\xa3\x9f" + b"\0" * 8, 5 + 31 + 5),
    ],
)
def test_header_bytes_reads_the_sizes_a_header_announces(media_type, head, needed) -> None:
    assert header_bytes(media_type, head) == needed
