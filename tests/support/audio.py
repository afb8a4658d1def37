"""Generated test audio: known duration, rate and channels, no fixtures on disk."""

import io
import math
import struct
import wave


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
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(struct.pack(f"<{frames * channels}h", *samples))
    return out.getvalue()
