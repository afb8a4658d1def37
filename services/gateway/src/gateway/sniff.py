"""Recognise audio by its first bytes; the client's Content-Type is only a claim.

Signatures: WAV (RIFF/RF64 + WAVE), FLAC (``fLaC``), MP3 (ID3v2 tag or an MPEG audio
frame sync), AAC (ADTS sync), OGG (``OggS``; Opus when the first packet is
``OpusHead``), M4A/MP4 audio (``ftyp`` box), WebM/Matroska (EBML magic).
"""

SNIFF_BYTES = 64
"""How many leading bytes :func:`sniff_audio` wants (fewer only at end of file)."""

_M4A_BRANDS = (b"M4A ", b"M4B ", b"mp42", b"isom", b"iso2", b"mp41", b"dash", b"3gp4", b"3gp5")


def sniff_audio(head: bytes) -> str | None:
    """The media type of the audio that starts with ``head``, or None if it is not audio."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "audio/wav"
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
