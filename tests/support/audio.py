"""Generated test audio: known duration, rate and channels, no fixtures on disk."""

import io
import math
import struct
import wave
from collections.abc import Iterable


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
