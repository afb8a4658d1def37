import tracemalloc

import numpy as np
import pytest
import soundfile

from contracts import ErrorCode
from reference_analyzer.decode import AudioDecoder
from reference_analyzer.errors import AnalysisError
from reference_analyzer.testing import encode, sine

pytestmark = pytest.mark.unit


def decode_file(path, block_frames=1024):
    with AudioDecoder(path, block_frames=block_frames) as decoder:
        accumulator = decoder.new_accumulator()
        while decoder.decode_into(accumulator, 5000):
            pass
        return accumulator.result(format=decoder.info.format, subtype=decoder.info.subtype)


@pytest.mark.parametrize(
    ("format", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("WAV", "FLOAT")]
)
def test_decodes_generated_files(tmp_path, format, subtype):
    path = tmp_path / f"tone.{format.lower()}"
    path.write_bytes(
        encode(sine(seconds=1.5, sample_rate=22_050, channels=2), 22_050, format, subtype)
    )
    features = decode_file(path)
    assert (features.format, features.subtype) == (format, subtype)
    assert features.sample_rate == 22_050
    assert features.channels == 2
    assert features.frames == 33_075
    assert features.duration_seconds == 1.5
    assert features.rms_dbfs == pytest.approx(-9.03, abs=0.05)
    assert features.peak_dbfs == pytest.approx(-6.02, abs=0.05)
    assert len(features.envelope) == 200


def test_decodes_ogg_vorbis(tmp_path):
    path = tmp_path / "tone.ogg"
    path.write_bytes(encode(sine(seconds=1, sample_rate=44_100), 44_100, "OGG", "VORBIS"))
    features = decode_file(path)
    assert features.format == "OGG"
    assert features.duration_seconds == pytest.approx(1.0, abs=0.01)
    assert features.rms_dbfs == pytest.approx(-9.03, abs=0.5)  # lossy


def test_undecodable_bytes_are_invalid_audio(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(1).bytes(10_000))
    with pytest.raises(AnalysisError) as caught:
        AudioDecoder(path)
    assert caught.value.code is ErrorCode.INVALID_AUDIO


def test_empty_file_is_invalid_audio(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AnalysisError) as caught:
        AudioDecoder(path)
    assert caught.value.code is ErrorCode.INVALID_AUDIO


def test_memory_stays_bounded_whatever_the_duration(tmp_path):
    # 5 minutes of 48 kHz stereo: 58 MB as PCM_16, 115 MB once decoded to float32.
    path = tmp_path / "long.wav"
    second = sine(seconds=1, sample_rate=48_000, channels=2)
    with soundfile.SoundFile(path, "w", 48_000, 2, "PCM_16") as out:
        for _ in range(300):
            out.write(second)
    tracemalloc.start()
    try:
        features = decode_file(path, block_frames=16_384)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert features.duration_seconds == 300
    assert peak < 4 * 1024 * 1024
