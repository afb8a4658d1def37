"""Decoding audio files block by block with PyAV (FFmpeg's demuxers and decoders, bundled
in the ``av`` wheel): WAV, AIFF, FLAC, MP3, OGG (Vorbis, Opus), WebM/Matroska (Opus,
Vorbis), MP4/M4A (AAC, ALAC) and raw AAC. Blocking: call it from a worker thread.

Nothing is resampled or remixed: the samples keep the stream's own rate and channels,
scaled to floats where 1.0 is full scale. The length reported is what was decoded; the
container's own figure is only a hint (Chrome's MediaRecorder writes WebM without any).

A file that is damaged or cut off fails with ``invalid_audio`` and a sentence saying so.
FFmpeg repairs quietly what it can, so besides its errors the decoder compares what it
decoded with what the file announces (:mod:`reference_analyzer.probe`).

Audio longer than ``max_seconds`` fails with ``audio_too_long``: at once when the
container states an exact length over it, else as soon as the decoded samples pass it,
without decoding the rest (an estimate from the bit rate decides nothing).
"""

# PyAV's stubs make Packet generic, the class itself is not: annotations stay unevaluated.
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.packet import Packet

from contracts import ErrorCode
from reference_analyzer.errors import AnalysisError
from reference_analyzer.features import FeatureAccumulator
from reference_analyzer.probe import read_head

# FFmpeg demuxer name -> the container name reported in the features.
_CONTAINERS: Final = {
    "wav": "WAV",
    "aiff": "AIFF",
    "flac": "FLAC",
    "mp3": "MP3",
    "ogg": "OGG",
    "matroska,webm": "MATROSKA",
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4",
    "aac": "AAC",
}
_READABLE: Final = "WAV, AIFF, FLAC, MP3, OGG, WebM, MP4/M4A or AAC"
# Demuxers FFmpeg may pick (anything else, e.g. a playlist or an image, is refused before
# it reads a byte beyond its probe), and only local files: a crafted file cannot make
# FFmpeg open another URL (FFmpeg's `format_whitelist`/`protocol_whitelist` options).
_OPEN_OPTIONS: Final = {
    "format_whitelist": "wav,aiff,flac,mp3,ogg,matroska,mov,aac",
    "protocol_whitelist": "file",
}
_HEADER_PROBE: Final = {"probesize": "32768"}
"""For WAV and AIFF, whose header chunks say everything FFmpeg's probe would find: it
otherwise reads up to 5 MB of packets first, 17 ms of CPU for a 3 s WAV against 2.5 ms
(issue 21, bench/results/profile-jobs.md)."""
# Containers whose announced length is exact (a header field, a sample table, the last
# Ogg granule position); elsewhere it is an estimate from the bit rate. MP3 is exact only
# with a Xing/Info/VBRI frame, decided from the file's head.
_EXACT_LENGTH: Final = frozenset({"WAV", "AIFF", "FLAC", "OGG", "MATROSKA", "WEBM", "MP4"})
# Decoded may fall this far short of announced before the file counts as cut off: codecs
# pad and prime by a frame or two, and WebM's duration is rounded to the millisecond.
_LENGTH_SLACK_SHARE: Final = 0.01
_LENGTH_SLACK_FRAMES: Final = 8192
# Undecodable packets tolerated (FFmpeg skips them): a glitch in a long file is not worth
# refusing it; more than this share of the packets is a damaged file.
_DAMAGE_SHARE: Final = 0.01
_DAMAGE_EARLY: Final = 16  # fail at once beyond this many, when also over the share

_SCALE: Final = {"s16": 2.0**-15, "s32": 2.0**-31, "s64": 2.0**-63, "u8": 2.0**-7}


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    """As announced by the container, 0 when unknown; a hint, never the result."""
    format: str
    subtype: str


def _invalid(message: str) -> AnalysisError:
    return AnalysisError(ErrorCode.INVALID_AUDIO, message)


def _open_problem(exc: av.error.FFmpegError) -> str:
    # Never `str(exc)`: FFmpeg's message ends with the (temporary) file's path.
    if isinstance(exc, av.error.EOFError):
        return "the file ends before its header is complete"
    if isinstance(exc, av.error.InvalidDataError):
        return f"the file is not {_READABLE} audio, or its header is damaged"
    if isinstance(exc, av.error.ArgumentError):  # e.g. a demuxer off the whitelist
        return f"the file is not in a format this server reads ({_READABLE})"
    if isinstance(exc, av.error.OSError):  # EIO: the header parser ran out of data
        return "the file's header is damaged or incomplete"
    return f"the file could not be read as audio ({exc.strerror})"


def _seconds(frames: int, rate: int) -> str:
    return f"{frames / rate:.2f} s"


class AudioDecoder:
    """An open audio file that feeds a :class:`FeatureAccumulator` in bounded blocks."""

    def __init__(
        self, path: Path, *, block_frames: int = 65536, max_seconds: float | None = None
    ) -> None:
        self._head = read_head(path)
        if self._head.size == 0:
            raise _invalid("the file is empty")
        if self._head.cut_off:  # known before decoding anything: say so at once
            raise _invalid(f"the file is cut off: {self._head.cut_off}")
        try:
            options = _OPEN_OPTIONS | (_HEADER_PROBE if self._head.riff else {})
            self._container: InputContainer = av.open(str(path), options=options)
        except av.error.FFmpegError as exc:
            raise _invalid(_open_problem(exc)) from None
        try:
            self._stream: AudioStream = self._open_stream()
        except BaseException:
            self.close()
            raise
        codec = self._stream.codec_context
        self._rate = int(codec.sample_rate)
        self._channels = int(codec.channels)
        container = _CONTAINERS.get(self._container.format.name, self._container.format.name)
        if container == "MATROSKA" and self._head.webm:
            container = "WEBM"
        announced = self._announced_frames()
        exact = container in _EXACT_LENGTH or (container == "MP3" and self._head.mp3_length)
        self._expected = announced if exact else 0
        self._max_seconds = max_seconds
        # No limit: more frames than any file holds.
        self._max_frames = (
            sys.maxsize if max_seconds is None else math.floor(max_seconds * self._rate)
        )
        if self._expected > self._max_frames:
            self.close()
            raise self._too_long(f"its container announces {_seconds(self._expected, self._rate)}")
        self.info = AudioInfo(
            sample_rate=self._rate,
            channels=self._channels,
            frames=announced,
            format=container,
            subtype=_subtype(str(codec.name), self._head.flac_bits),
        )
        self._packets = self._container.demux(self._stream)
        # One reusable block: memory stays at one block whatever the file's length.
        self._buffer = np.empty((block_frames, self._channels), dtype=np.float32)
        self._filled = 0
        self._decoded = 0
        self._packets_seen = 0
        self._damaged = 0
        self._last_cut = False
        self._ended = False

    def _open_stream(self) -> AudioStream:
        streams = self._container.streams.audio
        if not streams:
            raise _invalid("the file holds no audio stream")
        stream = streams[0]
        codec = stream.codec_context
        if not codec.sample_rate or not codec.channels:
            raise _invalid("the audio stream has no sample rate or no channels")
        return stream

    def _announced_frames(self) -> int:
        stream, container = self._stream, self._container
        if stream.duration and stream.time_base:
            length = _without_start(stream.duration, stream.start_time)
            return max(round(length * stream.time_base * self._rate), 0)
        if container.duration:
            length = _without_start(container.duration, container.start_time)
            return max(round(length * self._rate / av.time_base), 0)
        return self._scan_length()

    def _scan_length(self) -> int:
        """The end of the last packet's timestamp, found by reading the packets without
        decoding them (cheap): for files that announce no length, such as MediaRecorder's
        WebM. Only a hint for the envelope and the progress; 0 if the packets do not say."""
        end = 0
        try:
            with av.open(self._container.name, options=_OPEN_OPTIONS) as scan:
                stream = scan.streams.audio[0]
                for packet in scan.demux(stream):
                    if packet.pts is not None and packet.duration is not None:
                        end = max(end, packet.pts + packet.duration)
                time_base = stream.time_base
        except (av.error.FFmpegError, IndexError):
            return 0
        return max(round(end * time_base * self._rate), 0) if time_base else 0

    def new_accumulator(self) -> FeatureAccumulator:
        return FeatureAccumulator(self._rate, self._channels, frames_hint=self.info.frames)

    def decode_into(self, accumulator: FeatureAccumulator, max_frames: int) -> int:
        """Decode about ``max_frames`` more frames into ``accumulator`` (whole blocks, and
        the rest at the end); returns how many it added, 0 once the audio has ended."""
        added = 0
        while added < max_frames and not self._ended:
            packet = self._next_packet()
            if packet is None:
                self._ended = True
                self._check_complete()
                break
            for frame in self._decode(packet):
                added += self._absorb(frame, accumulator)
        if self._ended and self._filled:
            added += self._hand_over(accumulator)
        return added

    def _hand_over(self, accumulator: FeatureAccumulator) -> int:
        block = self._buffer[: self._filled]
        # Float PCM can hold NaN or infinity (a damaged float WAV does); no level means
        # anything then.
        if not np.isfinite(block).all():
            raise _invalid("the audio holds samples that are not numbers (NaN or infinity)")
        accumulator.add(block)
        self._filled = 0
        return len(block)

    def _next_packet(self) -> Packet[AudioStream] | None:
        try:
            return next(self._packets)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            raise _invalid(
                f"the file could not be read after {_seconds(self._decoded, self._rate)} "
                f"of audio ({exc.strerror})"
            ) from None

    def _decode(self, packet: Packet[AudioStream]) -> list[AudioFrame]:
        # PyAV ends the demuxing with an empty packet that flushes the decoder.
        if packet.size:
            self._packets_seen += 1
            self._last_cut = bool(packet.is_corrupt)
            if packet.is_corrupt:
                self._damaged += 1
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            self._damaged += 1
            frames = []
        if self._damaged > _DAMAGE_EARLY and self._too_damaged():
            raise self._damage_error()
        return frames

    def _too_damaged(self) -> bool:
        return self._damaged > _DAMAGE_SHARE * self._packets_seen

    def _damage_error(self) -> AnalysisError:
        return _invalid(
            f"the audio data is damaged: {self._damaged} of its first {self._packets_seen} "
            "packets could not be decoded"
        )

    def _absorb(self, frame: AudioFrame, accumulator: FeatureAccumulator) -> int:
        """Copy one decoded frame into the block; hand over each full block."""
        if frame.sample_rate != self._rate or frame.layout.nb_channels != self._channels:
            raise _invalid(
                f"the audio changes from {self._rate} Hz x {self._channels} channels to "
                f"{frame.sample_rate} Hz x {frame.layout.nb_channels} mid-stream"
            )
        samples = _as_float_frames(frame, self._channels)
        added = 0
        start = 0
        while start < len(samples):
            room = len(self._buffer) - self._filled
            part = samples[start : start + room]
            self._buffer[self._filled : self._filled + len(part)] = part
            self._filled += len(part)
            start += len(part)
            if self._filled == len(self._buffer):
                added += self._hand_over(accumulator)
        self._decoded += len(samples)
        if self._decoded > self._max_frames:
            raise self._too_long("found while decoding")
        return added

    def _too_long(self, why: str) -> AnalysisError:
        return AnalysisError(
            ErrorCode.AUDIO_TOO_LONG,
            f"the audio is longer than the {self._max_seconds:g} s this server analyses ({why})",
        )

    def _check_complete(self) -> None:
        """At the end: refuse a file that is cut off or too damaged to trust."""
        if self._decoded == 0:
            raise _invalid("the file holds no decodable audio")
        if self._last_cut:
            raise _invalid("the file is cut off: its last audio packet is incomplete")
        expected = self._expected
        if expected and self._decoded < expected * (1 - _LENGTH_SLACK_SHARE) - (
            _LENGTH_SLACK_FRAMES
        ):
            raise _invalid(
                f"the file is damaged or cut off: it holds "
                f"{_seconds(self._decoded, self._rate)} of audio, its container announces "
                f"{_seconds(expected, self._rate)}"
            )
        if self._damaged and self._too_damaged():
            raise self._damage_error()

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _without_start(duration: int, start: int | None) -> int:
    """A stream that starts later than 0 (a capture begun mid-stream): some demuxers
    (Ogg/Opus, Matroska) then announce its end, others its length. Taking the shorter
    reading never mistakes a whole file for a cut one."""
    if start and 0 < start < duration:
        return duration - start
    return duration


def _as_float_frames(frame: AudioFrame, channels: int) -> npt.NDArray[np.floating]:
    """A decoded frame as (samples, channels), 1.0 = full scale (a view when it can)."""
    array: npt.NDArray[Any] = frame.to_ndarray()
    name = frame.format.name.removesuffix("p")
    array = array.T if frame.format.is_planar else array.reshape(-1, channels)
    if name in ("flt", "dbl"):
        return array
    if name == "u8":
        return (array.astype(np.float32) - 128) * _SCALE["u8"]
    return array * np.float32(_SCALE[name])


def _subtype(codec: str, flac_bits: int | None) -> str:
    """``pcm_s16le`` -> ``PCM_16`` (libsndfile's names, which the demo page shows),
    ``pcm_f32le`` -> ``FLOAT``, FLAC by its bit depth; other codecs by their name
    (``OPUS``, ``AAC``, …)."""
    if codec == "flac" and flac_bits:
        return f"PCM_{flac_bits}"
    if codec.startswith("pcm_"):
        kind = codec[4:].removesuffix("le").removesuffix("be")
        if kind.startswith("f"):
            return {"f32": "FLOAT", "f64": "DOUBLE"}.get(kind, kind.upper())
        if kind[:1] in "su" and kind[1:].isdigit():
            return f"PCM_{kind[1:]}" if kind[0] == "s" and kind != "s8" else f"PCM_{kind.upper()}"
        return kind.upper()
    return {"mp3float": "MP3", "aac_fixed": "AAC"}.get(codec, codec.upper())
