"""Recognise audio by its first bytes; the client's Content-Type is only a claim.

Signatures: WAV (RIFF/RF64 + WAVE), AIFF (FORM + AIFF/AIFC), FLAC (``fLaC``), MP3 (ID3v2
tag or an MPEG audio frame sync), AAC (ADTS sync), OGG (``OggS``; Opus when the first
packet is ``OpusHead``), M4A/MP4 audio (``ftyp`` box), WebM/Matroska (EBML magic).

:func:`header_bytes` says how long a file of the detected format must at least be to
hold its header, so that a body that plainly cannot be audio is refused at the door.
"""

SNIFF_BYTES = 64
"""How many leading bytes :func:`sniff_audio` wants (fewer only at end of file)."""

_M4A_BRANDS = (
    b"M4A ",
    b"M4B ",
    b"mp42",
    b"mp41",
    b"isom",
    b"iso2",
    b"iso4",
    b"iso5",
    b"iso6",
    b"dash",
    b"3gp4",
    b"3gp5",
    b"3gp6",
)

# The smallest header of each format, in bytes, where it does not depend on the file.
_FIXED_HEADER = {
    "audio/wav": 12 + 8 + 16 + 8,  # RIFF/WAVE, `fmt ` with PCM's 16 bytes, `data` header
    "audio/aiff": 12 + 8 + 18 + 8 + 8,  # FORM/AIFF, COMM's 18 bytes, SSND and its offsets
    "audio/flac": 4 + 4 + 34,  # fLaC, then the STREAMINFO block (RFC 9639 §8.2)
    "audio/ogg; codecs=opus": 27 + 1 + 19,  # one page header and segment, OpusHead
    "audio/ogg": 27 + 1 + 30,  # one page header and segment, Vorbis' identification
    "audio/aac": 7,  # an ADTS header
    "audio/mpeg": 4,  # an MPEG audio frame header
}


def sniff_audio(head: bytes) -> str | None:
    """The media type of the audio that starts with ``head``, or None if it is not audio."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "audio/wav"
    if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg; codecs=opus" if b"OpusHead" in head[:SNIFF_BYTES] else "audio/ogg"
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _M4A_BRANDS:
        return "audio/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio/webm"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 0b11
        if layer == 0b00 and head[1] & 0xF6 == 0xF0:
            return "audio/aac"  # ADTS: 12-bit sync, layer bits always 00
        if layer != 0b00 and len(head) >= 3 and head[2] >> 4 != 0xF:
            return "audio/mpeg"  # MPEG-1/2 layer I–III; bitrate index 15 is invalid
    return None


def header_bytes(media_type: str, head: bytes) -> int:
    """The least number of bytes a file of ``media_type`` starting with ``head`` needs to
    hold its header; a shorter file cannot be audio of that type."""
    if media_type == "audio/mpeg" and head.startswith(b"ID3") and len(head) >= 10:
        # ID3v2: 10-byte header, a syncsafe body size, an optional 10-byte footer, then
        # at least one frame header (ID3v2.4 §3.1).
        body = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        return 10 + body + (10 if head[5] & 0x10 else 0) + 4
    if media_type == "audio/mp4" and len(head) >= 8:
        # The whole `ftyp` box, then at least the header of the next box.
        return max(int.from_bytes(head[:4], "big"), 8) + 8
    if media_type == "audio/webm":
        # The whole EBML header element (its size is a variable-length integer,
        # RFC 8794 §4), then at least the Segment's 4-byte ID and a size byte.
        size = _ebml_size(head, 4)
        return 5 + 5 if size is None else size[0] + size[1] + 5
    return _FIXED_HEADER.get(media_type, 1)


def _ebml_size(head: bytes, at: int) -> tuple[int, int] | None:
    """(end of the size field, the size) of the EBML variable-length integer at ``at``."""
    if len(head) <= at or head[at] == 0:
        return None
    length = 8 - head[at].bit_length() + 1
    if len(head) < at + length:
        return None
    value = int.from_bytes(head[at : at + length], "big") & ((1 << (7 * length)) - 1)
    return at + length, value
