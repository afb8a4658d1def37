"""What a file's own bytes say about its completeness, where FFmpeg does not tell.

FFmpeg decodes what is there and stops quietly at a cut: a WAV whose data chunk runs
past the end of the file gets its length from the file size, and an Ogg stream simply
ends early. Formats that state their extent are checked here against the file:

- WAV and AIFF: the RIFF/FORM chunk size;
- MP3: the byte count of a Xing/Info frame, where it has one;
- Ogg: the end-of-stream flag that the last page of a stream carries (RFC 3533 §6);
- MP4/M4A: a sequence of boxes that each state their size (ISO/IEC 14496-12 §4.2);
- Matroska/WebM: as MediaRecorder writes it, it states no length at all, but each
  element states its own size (RFC 8794 §4): from the last Cluster on, every element
  must fit in the file.

The head also tells whether an MP3 announces its exact length (a Xing, Info or VBRI
frame), whether a Matroska file is WebM, and a FLAC file's bit depth.
"""

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

HEAD_BYTES: Final = 4096
_OGG_MAX_PAGE: Final = 27 + 255 + 255 * 255
# Some writers count the 8-byte chunk header in the RIFF size; allow for it.
_RIFF_SLACK: Final = 8
_RIFF_UNKNOWN: Final = (0, 0xFFFFFFFF)  # streaming writers, RF64
_EBML_MAGIC: Final = b"\x1a\x45\xdf\xa3"
_CLUSTER_ID: Final = b"\x1f\x43\xb6\x75"
_MATROSKA_TAIL: Final = 4 * 1024 * 1024  # more than an audio cluster holds
_TIMESTAMP_ID: Final = b"\xe7"
_MAX_CANDIDATES: Final = 16  # capture patterns tried from the end before giving up
# What may follow a Cluster's start up to the end of the file (Matroska's element IDs):
# Cluster children (Timestamp, SimpleBlock, BlockGroup, Position, PrevSize,
# SilentTracks, EncryptedBlock, Void, CRC-32) and the top-level elements after Clusters.
_CLUSTER_LEVEL: Final = frozenset(
    {
        _CLUSTER_ID,
        *(bytes([b]) for b in (0xE7, 0xA3, 0xA0, 0xA7, 0xAB, 0xAF, 0xEC, 0xBF)),
        b"\x58\x54",
        b"\x1c\x53\xbb\x6b",  # Cues
        b"\x12\x54\xc3\x67",  # Tags
        b"\x10\x43\xa7\x70",  # Chapters
        b"\x19\x41\xa4\x69",  # Attachments
        b"\x11\x4d\x9b\x74",  # SeekHead
    }
)


@dataclass(frozen=True)
class FileHead:
    size: int
    webm: bool
    """A Matroska file whose EBML DocType is ``webm``."""
    mp3_length: bool
    """An MP3 whose first frame is a Xing/Info/VBRI frame, i.e. whose length is exact."""
    cut_off: str | None
    """Why the file is evidently incomplete, or None."""
    flac_bits: int | None = None
    """Bits per sample of a FLAC file (its STREAMINFO block), e.g. 16 or 24."""
    riff: bool = False
    """A RIFF (WAV) or IFF (AIFF) file: its header chunk describes the stream entirely."""


def read_head(path: Path) -> FileHead:
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
        cut_off = _riff_cut_off(head, size)
        mp3_length = False
        if head.startswith(b"OggS"):
            file.seek(max(0, size - _OGG_MAX_PAGE))
            cut_off = _ogg_cut_off(file.read())
        elif head[4:8] == b"ftyp":
            cut_off = _mp4_cut_off(file, size)
        elif head.startswith(_EBML_MAGIC):
            start = max(0, size - _MATROSKA_TAIL)
            file.seek(start)
            cut_off = _matroska_cut_off(file.read(), start, size)
        else:
            file.seek(_id3_size(head))
            frame = file.read(256)
            mp3_length = _has_length_frame(frame)
            cut_off = cut_off or _xing_cut_off(frame, size)
    webm = head.startswith(_EBML_MAGIC) and b"webm" in head[:64]
    return FileHead(
        size=size,
        webm=webm,
        mp3_length=mp3_length,
        cut_off=cut_off,
        flac_bits=_flac_bits(head),
        riff=head[:4] in (b"RIFF", b"FORM"),
    )


def _riff_cut_off(head: bytes, size: int) -> str | None:
    if len(head) < 12 or head[:4] not in (b"RIFF", b"FORM"):
        return None
    (declared,) = struct.unpack("<I" if head[:4] == b"RIFF" else ">I", head[4:8])
    if declared in _RIFF_UNKNOWN or declared + 8 <= size + _RIFF_SLACK:
        return None
    return f"its header announces {declared + 8} bytes, the file holds {size}"


def _ogg_cut_off(tail: bytes) -> str | None:
    """Judge the last page: the last capture pattern whose header is plausible (version
    0, known flags), so that "OggS" inside packet data does not pass for a page."""
    page = len(tail)
    for _ in range(_MAX_CANDIDATES):
        page = tail.rfind(b"OggS", 0, page)
        if page < 0:
            return None
        header = tail[page : page + 27]
        if len(header) < 27:
            return "its last Ogg page is incomplete"
        if header[4] != 0 or header[5] & 0xF8:
            continue
        segments = header[26]
        lacing = tail[page + 27 : page + 27 + segments]
        if len(lacing) < segments or page + 27 + segments + sum(lacing) > len(tail):
            return "its last Ogg page is incomplete"
        if not header[5] & 0x04:
            return "the Ogg stream has no end-of-stream page"
        return None
    return None


def _id3_size(head: bytes) -> int:
    """Where the audio starts: after an ID3v2 tag (syncsafe size, optional footer)."""
    if len(head) < 10 or not head.startswith(b"ID3"):
        return 0
    body = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + body + (10 if head[5] & 0x10 else 0)


def _has_length_frame(frame: bytes) -> bool:
    # The tag sits after the side information (offset 4 + 9..32), VBRI at offset 36.
    return frame[:1] == b"\xff" and any(tag in frame[:64] for tag in (b"Xing", b"Info", b"VBRI"))


def _xing_cut_off(frame: bytes, size: int) -> str | None:
    """A Xing/Info frame may state the stream's byte count (flag 2, after the frame
    count of flag 1): an MP3 holding fewer bytes was cut, which is known at once.
    Encoders differ on whether the count includes the ID3 tag, so it is held against
    the whole file: never refuse a whole file."""
    if frame[:1] != b"\xff":
        return None
    at = max(frame.find(b"Xing", 0, 64), frame.find(b"Info", 0, 64))
    if at < 0 or len(frame) < at + 16:
        return None
    flags = int.from_bytes(frame[at + 4 : at + 8], "big")
    if not flags & 0x02:
        return None
    field = at + 8 + (4 if flags & 0x01 else 0)
    declared = int.from_bytes(frame[field : field + 4], "big")
    if declared <= size + _RIFF_SLACK:
        return None
    return f"its Xing header announces {declared} bytes of audio, the file holds {size}"


def _flac_bits(head: bytes) -> int | None:
    # STREAMINFO follows "fLaC" and its block header; its 5-bit "bits per sample - 1"
    # straddles bytes 20 and 21 of the file (RFC 9639 §8.2).
    if len(head) < 22 or not head.startswith(b"fLaC") or head[4] & 0x7F != 0:
        return None
    return (((head[20] & 0x01) << 4) | (head[21] >> 4)) + 1


def _matroska_cut_off(tail: bytes, offset: int, size: int) -> str | None:
    """Walk the elements from the last Cluster to the end of the file: entering Clusters
    (their size may be unknown, as in a live recording), skipping everything else by its
    size. One that runs past the end means the file was cut. The walk must meet only
    element IDs that belong there, starting with the Cluster's Timestamp, or the Cluster
    ID was a coincidence in block data and an earlier one is tried; when none passes,
    nothing can be told."""
    start = len(tail)
    for _ in range(_MAX_CANDIDATES):
        start = tail.rfind(_CLUSTER_ID, 0, start)
        if start < 0:
            return None
        try:
            return _walk_clusters(tail, start, offset, size)
        except _NotElements:
            continue
    return None


class _NotElements(Exception):
    """The bytes walked are not Matroska elements after all."""


def _walk_clusters(tail: bytes, at: int, offset: int, size: int) -> str | None:
    """None when every element fits in the file, else why not."""
    while at < len(tail):
        element = _ebml_element(tail, at)
        if element is None or element[0] not in _CLUSTER_LEVEL:
            raise _NotElements
        element_id, data_start, length = element
        if element_id == _CLUSTER_ID and data_start < len(tail):
            child = _ebml_element(tail, data_start)  # a Cluster starts with its Timestamp
            if child is None or child[0] != _TIMESTAMP_ID:
                raise _NotElements
        end = None if length is None else data_start + length
        if end is not None and offset + end > size:
            return "its last Matroska element is incomplete"
        at = data_start if element_id == _CLUSTER_ID or end is None else end
    return None


def _ebml_element(data: bytes, at: int) -> tuple[bytes, int, int | None] | None:
    """(its ID, where its data starts, its size or None if unknown), or None when the
    bytes at ``at`` are no element header (or are cut off)."""
    id_length = _vint_length(data, at)
    if id_length is None or id_length > 4 or at + id_length >= len(data):
        return None
    size_at = at + id_length
    size_length = _vint_length(data, size_at)
    if size_length is None or size_at + size_length > len(data):
        return None
    raw = int.from_bytes(data[size_at : size_at + size_length], "big")
    value = raw & ((1 << (7 * size_length)) - 1)
    unknown = value == (1 << (7 * size_length)) - 1  # all ones: size unknown
    return data[at : at + id_length], size_at + size_length, None if unknown else value


def _vint_length(data: bytes, at: int) -> int | None:
    if at >= len(data) or data[at] == 0:
        return None
    return 9 - data[at].bit_length()


def _mp4_cut_off(file: BinaryIO, size: int) -> str | None:
    """Step over the top-level boxes (ftyp, mdat, moov, ...): one that runs past the end
    of the file means it was cut (an M4A cut in half usually loses its moov index)."""
    at = 0
    while at + 8 <= size:
        file.seek(at)
        header = file.read(16)
        length = int.from_bytes(header[:4], "big")
        if length == 1 and len(header) == 16:  # a 64-bit size follows the type
            length = int.from_bytes(header[8:16], "big")
        elif length == 0:  # the box extends to the end of the file
            return None
        if length < 8 or not header[4:8].isascii() or not header[4:8].strip(b" ").isalnum():
            return None  # not boxes after all: nothing to tell
        at += length
    if at > size:
        return "its last MP4 box is incomplete"
    return None
