"""Generated test audio: known duration, rate and channels, no fixtures on disk.

``sine_wav``/``plucked_wav`` write 16-bit WAV with the standard library; :data:`CLIPS`
holds every other format clients send, encoded with PyAV (``reference_analyzer.testing``).
"""

import io
import math
import struct
import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reference_analyzer.testing import MEDIARECORDER_WEBM, encode, sine

WAV_HEAD = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 52
"""A RIFF/WAVE header that the gateway's sniffer takes for audio."""


def wav_form(size: int, boundary: str) -> bytes:
    """A multipart body whose ``file`` field is ``size`` bytes of "audio" (a WAVE
    header, then filler), for uploads whose content does not matter."""
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return part + WAV_HEAD + b"\1" * (size - len(WAV_HEAD)) + f"\r\n--{boundary}--\r\n".encode()


def sine_wav(
    seconds: float,
    sample_rate: int = 22050,
    channels: int = 2,
    frequency: float = 440.0,
    amplitude: float = 0.5,
) -> bytes:
    frames = int(seconds * sample_rate)
    peak = int(amplitude * 32767)
    one = [
        int(peak * math.sin(2 * math.pi * frequency * n / sample_rate)) for n in range(sample_rate)
    ]
    samples = (one[n % sample_rate] for n in range(frames) for _ in range(channels))
    return _wav(samples, channels, sample_rate)


def plucked_wav(
    seconds: float, sample_rate: int = 22050, channels: int = 2, notes_per_second: float = 2.0
) -> bytes:
    """Decaying notes, the last second silent: a level envelope worth drawing, a known
    duration and rate, and a silence ratio above zero."""
    frames = int(seconds * sample_rate)
    sounding = max(0, frames - sample_rate)
    note = int(sample_rate / notes_per_second)
    samples = []
    for n in range(frames):
        if n >= sounding:
            value = 0
        else:
            t = (n % note) / sample_rate
            pitch = 220.0 * (1 + (n // note) % 4 / 4)
            value = int(0.8 * 32767 * math.exp(-4 * t) * math.sin(2 * math.pi * pitch * t))
        samples.extend([value] * channels)
    return _wav(samples, channels, sample_rate)


def _wav(samples: "Iterable[int]", channels: int, sample_rate: int) -> bytes:
    """16-bit PCM WAV of interleaved ``samples``."""
    values = list(samples)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(struct.pack(f"<{len(values)}h", *values))
    return out.getvalue()


@dataclass(frozen=True)
class Clip:
    """One audio format as clients send it, generated with PyAV's encoders."""

    format: str
    subtype: str
    sample_rate: int
    extension: str
    media_type: str
    """What the gateway's sniffing must call it."""
    codec_frame: int = 0
    """Samples per codec frame, for lossy codecs that may keep up to one of padding."""
    muxer_options: Mapping[str, str] | None = None

    def tone(self, seconds: float, channels: int = 2) -> bytes:
        samples = sine(seconds=seconds, sample_rate=self.sample_rate, channels=channels)
        return encode(
            samples, self.sample_rate, self.format, self.subtype, muxer_options=self.muxer_options
        )


# Every format the reference analyzer decodes. WebM is written as MediaRecorder writes it
# (no duration); Opus always decodes at 48 kHz, so that is its rate here.
CLIPS: dict[str, Clip] = {
    "wav-pcm16": Clip("WAV", "PCM_16", 44_100, "wav", "audio/wav"),
    "wav-pcm24": Clip("WAV", "PCM_24", 48_000, "wav", "audio/wav"),
    "wav-pcm32": Clip("WAV", "PCM_32", 22_050, "wav", "audio/wav"),
    "wav-float": Clip("WAV", "FLOAT", 44_100, "wav", "audio/wav"),
    "aiff": Clip("AIFF", "PCM_16", 44_100, "aiff", "audio/aiff"),
    "flac": Clip("FLAC", "PCM_16", 44_100, "flac", "audio/flac"),
    "mp3": Clip("MP3", "MP3", 44_100, "mp3", "audio/mpeg", codec_frame=1152),
    "ogg-vorbis": Clip("OGG", "VORBIS", 44_100, "ogg", "audio/ogg", codec_frame=2048),
    "ogg-opus": Clip("OGG", "OPUS", 48_000, "opus", "audio/ogg; codecs=opus", codec_frame=960),
    "webm-opus": Clip(
        "WEBM", "OPUS", 48_000, "webm", "audio/webm", codec_frame=960,
        muxer_options=MEDIARECORDER_WEBM,
    ),
    "webm-vorbis": Clip(
        "WEBM", "VORBIS", 44_100, "webm", "audio/webm", codec_frame=2048,
        muxer_options=MEDIARECORDER_WEBM,
    ),
    "m4a-aac": Clip("MP4", "AAC", 44_100, "m4a", "audio/mp4", codec_frame=1024),
}  # fmt: skip
