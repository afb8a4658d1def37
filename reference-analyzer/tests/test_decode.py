"""Decoding every format clients send, and refusing damaged or cut-off files in words.

The files are generated here with PyAV's encoders (``reference_analyzer.testing``)."""

import struct
import tracemalloc
import wave

import numpy as np
import pytest

from contracts import ErrorCode
from reference_analyzer.decode import AudioDecoder
from reference_analyzer.errors import AnalysisError
from reference_analyzer.features import FeatureAccumulator
from reference_analyzer.testing import ENCODINGS, MEDIARECORDER_WEBM, encode, sine

pytestmark = pytest.mark.unit

LOSSLESS = {"PCM_16", "PCM_24", "PCM_32", "FLOAT"}
# (format, subtype, muxer options): every encoding, and WebM as MediaRecorder writes it.
CASES = [(f, s, None) for f, s in ENCODINGS] + [
    ("WEBM", "OPUS", MEDIARECORDER_WEBM),
    ("WEBM", "VORBIS", MEDIARECORDER_WEBM),
]
IDS = [f"{f}-{s}" + ("-mediarecorder" if o else "") for f, s, o in CASES]


def rate_of(subtype: str) -> int:
    return 48_000 if subtype == "OPUS" else 44_100  # Opus decodes at 48 kHz, always


def clip(format: str, subtype: str, options=None, seconds: float = 2.0) -> bytes:
    rate = rate_of(subtype)
    return encode(
        sine(seconds=seconds, sample_rate=rate, channels=2), rate, format, subtype,
        muxer_options=options,
    )  # fmt: skip


def decode_file(path, block_frames=1024):
    with AudioDecoder(path, block_frames=block_frames) as decoder:
        accumulator = decoder.new_accumulator()
        while decoder.decode_into(accumulator, 5000):
            pass
        return accumulator.result(format=decoder.info.format, subtype=decoder.info.subtype)


def refusal(tmp_path, data: bytes) -> str:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with pytest.raises(AnalysisError) as caught:
        decode_file(path)
    assert caught.value.code is ErrorCode.INVALID_AUDIO
    message = caught.value.message
    assert str(tmp_path) not in message and "upload.bin" not in message  # no server paths
    return message


@pytest.mark.parametrize(("format", "subtype", "options"), CASES, ids=IDS)
def test_decodes_every_format_at_its_own_rate_and_channels(tmp_path, format, subtype, options):
    path = tmp_path / "tone"
    path.write_bytes(clip(format, subtype, options))
    features = decode_file(path)
    rate = rate_of(subtype)
    assert (features.format, features.subtype) == (format, subtype)
    assert (features.sample_rate, features.channels) == (rate, 2)
    if subtype in LOSSLESS or format == "FLAC":
        assert features.frames == 2 * rate
        assert features.rms_dbfs == pytest.approx(-9.03, abs=0.01)
        assert features.peak_dbfs == pytest.approx(-6.02, abs=0.01)
    else:  # lossy: the codec may keep up to one frame of its padding
        assert 2 * rate - 64 <= features.frames <= 2 * rate + 2048
        assert features.rms_dbfs == pytest.approx(-9.03, abs=0.6)
    assert features.duration_seconds == features.frames / rate
    assert len(features.envelope) >= 190  # a length hint even where none is announced


def with_chunk_before_data(wav: bytes, chunk: bytes) -> bytes:
    """A WAV with ``chunk`` between its ``fmt `` and ``data`` chunks, sizes kept right."""
    at = wav.index(b"data")
    body = wav[12:at] + chunk + wav[at:]
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WAVE" + body


def test_a_wav_whose_data_starts_past_the_short_probe_decodes_whole(tmp_path):
    """WAV and AIFF are probed over 32 KiB only (decode._HEADER_PROBE): metadata chunks
    larger than that before the samples change nothing."""
    wav = clip("WAV", "PCM_16")
    metadata = b"LIST" + struct.pack("<I", 100_000) + b"INFO" + b"\0" * 99_996
    path = tmp_path / "tagged"
    path.write_bytes(with_chunk_before_data(wav, metadata))
    features = decode_file(path)
    assert (features.format, features.subtype) == ("WAV", "PCM_16")
    assert (features.sample_rate, features.channels, features.frames) == (44_100, 2, 88_200)
    assert features.rms_dbfs == pytest.approx(-9.03, abs=0.01)


def test_mediarecorder_webm_announces_no_length_and_its_duration_is_what_decodes(tmp_path):
    import av

    data = clip("WEBM", "OPUS", MEDIARECORDER_WEBM, seconds=1.5)
    path = tmp_path / "recording.webm"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.audio[0].duration is None
    assert decode_file(path).frames == 72_000


@pytest.mark.parametrize(
    ("format", "subtype"), [("OGG", "OPUS"), ("OGG", "VORBIS"), ("WEBM", "OPUS"), ("MP4", "AAC")]
)
def test_a_stream_that_starts_late_is_not_mistaken_for_a_cut_off_one(tmp_path, format, subtype):
    # Some demuxers then announce the stream's end (12 s here), others its length (2 s).
    rate = rate_of(subtype)
    samples = sine(seconds=2, sample_rate=rate, channels=2)
    path = tmp_path / "late"
    path.write_bytes(encode(samples, rate, format, subtype, start_seconds=10))
    assert decode_file(path).frames == pytest.approx(2 * rate, abs=2048)


def test_mp3_without_a_length_frame_is_not_mistaken_for_a_cut_off_one(tmp_path):
    rate = 44_100
    data = encode(
        sine(seconds=2, sample_rate=rate), rate, "MP3", "MP3", muxer_options={"write_xing": "0"}
    )
    assert b"Xing" not in data[:4096] and b"Info" not in data[:4096]
    path = tmp_path / "plain.mp3"
    path.write_bytes(data)
    # Without LAME's frame nothing says how much delay and padding the encoder added, so
    # they stay: about one 1152-sample frame more than went in.
    assert 2 * rate <= decode_file(path).frames <= 2 * rate + 2 * 1152


@pytest.mark.parametrize("subtype", ["OPUS", "VORBIS"])
def test_a_mediarecorder_webm_cut_between_clusters_is_a_shorter_recording(tmp_path, subtype):
    # Nothing in such a file says how long it is, and every element left in it is whole.
    options = {**MEDIARECORDER_WEBM, "cluster_time_limit": "400"}  # a cluster per 0.4 s
    data = clip("WEBM", subtype, options)
    cluster = b"\x1f\x43\xb6\x75"
    third = data.index(cluster, data.index(cluster, data.index(cluster) + 4) + 4)
    path = tmp_path / "shorter.webm"
    path.write_bytes(data[:third])
    assert 0.6 < decode_file(path).duration_seconds < 1.0
    # A byte less, and the cluster before it is cut:
    assert "Matroska element is incomplete" in refusal(tmp_path, data[: third - 1])


def test_blocks_handed_to_the_accumulator_are_full_except_the_last(tmp_path):
    path = tmp_path / "tone.ogg"
    path.write_bytes(clip("OGG", "OPUS"))
    sizes: list[tuple[int, int]] = []

    class Recording(FeatureAccumulator):
        def add(self, block):
            sizes.append(block.shape)
            super().add(block)

    with AudioDecoder(path, block_frames=4096) as decoder:
        accumulator = Recording(48_000, 2)
        while decoder.decode_into(accumulator, 10_000):
            pass
    assert all(shape == (4096, 2) for shape in sizes[:-1])
    assert 0 < sizes[-1][0] <= 4096 and sum(n for n, _ in sizes) == 96_000


@pytest.mark.parametrize(("format", "subtype", "options"), CASES, ids=IDS)
def test_a_file_cut_in_half_is_invalid_audio_that_says_so(tmp_path, format, subtype, options):
    data = clip(format, subtype, options)
    assert "cut off" in refusal(tmp_path, data[: len(data) // 2])


@pytest.mark.parametrize(("format", "subtype", "options"), CASES, ids=IDS)
def test_a_damaged_file_is_invalid_audio_that_says_so(tmp_path, format, subtype, options):
    data = bytearray(clip(format, subtype, options))
    if format in ("WAV", "AIFF"):
        # Any bytes are valid PCM samples: damage shows only where it hits the header.
        at = data.index(b"fmt " if format == "WAV" else b"COMM")
        data[at : at + 24] = b"\xff" * 24
    else:
        middle, tenth = len(data) // 2, len(data) // 10
        data[middle : middle + tenth] = np.random.default_rng(7).bytes(tenth)
    message = refusal(tmp_path, bytes(data))
    assert "damaged" in message or "cut off" in message or "not WAV" in message


def test_a_float_wav_holding_nan_is_invalid_audio(tmp_path):
    data = bytearray(clip("WAV", "FLOAT"))
    data[-400:] = struct.pack("<f", float("nan")) * 100
    assert "not numbers" in refusal(tmp_path, bytes(data))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"%PDF-1.7\n" + bytes(2000), "not"),
        (b"\x89PNG\r\n\x1a\n" + bytes(2000), "not"),
        (np.random.default_rng(1).bytes(10_000), "not"),
        (b"RIFF\x24\x00\x00\x00WAVE", "cut off"),
        (b"OggS\x00\x02" + bytes(30), "Ogg"),
    ],
    ids=["empty", "pdf", "png", "noise", "wav-header-only", "ogg-fragment"],
)
def test_what_is_not_audio_is_invalid_audio(tmp_path, data, words):
    assert words in refusal(tmp_path, data)


def test_memory_stays_bounded_whatever_the_duration(tmp_path):
    # 5 minutes of 48 kHz stereo: 58 MB as PCM_16, 115 MB once decoded to float32.
    path = tmp_path / "long.wav"
    second = (sine(seconds=1, sample_rate=48_000, channels=2) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48_000)
        for _ in range(300):
            out.writeframes(second)
    tracemalloc.start()
    try:
        features = decode_file(path, block_frames=16_384)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert features.duration_seconds == 300
    assert peak < 4 * 1024 * 1024


def decode_limited(path, max_seconds, block_frames=1024):
    """Decode with a duration limit; returns the refusal and the frames decoded by then."""

    def decode_all(decoder, accumulator):
        while decoder.decode_into(accumulator, 5000):
            pass

    with AudioDecoder(path, block_frames=block_frames, max_seconds=max_seconds) as decoder:
        accumulator = decoder.new_accumulator()
        with pytest.raises(AnalysisError) as caught:
            decode_all(decoder, accumulator)
        return caught.value, accumulator.frames


@pytest.mark.parametrize(
    ("format", "subtype", "options"),
    [("WAV", "PCM_16", None), ("FLAC", "PCM_16", None), ("WEBM", "OPUS", MEDIARECORDER_WEBM)],
)
def test_a_stated_length_over_the_limit_is_refused_before_decoding(
    tmp_path, format, subtype, options
):
    # (MediaRecorder's WebM states its length only in its packets' timestamps.)
    path = tmp_path / "long"
    path.write_bytes(clip(format, subtype, options, seconds=3))
    with pytest.raises(AnalysisError) as caught:
        AudioDecoder(path, max_seconds=2.5)
    assert caught.value.code is ErrorCode.AUDIO_TOO_LONG
    assert "2.5 s" in caught.value.message and "announces 3.00 s" in caught.value.message


def test_a_length_found_only_by_decoding_stops_the_decoding_at_the_limit(tmp_path):
    # An MP3 without a Xing/Info frame has only an estimate of its length, which
    # decides nothing: decoding shows that it is too long.
    rate = 44_100
    data = encode(
        sine(seconds=3, sample_rate=rate), rate, "MP3", "MP3", muxer_options={"write_xing": "0"}
    )
    path = tmp_path / "plain.mp3"
    path.write_bytes(data)
    refusal, decoded = decode_limited(path, max_seconds=1)
    assert refusal.code is ErrorCode.AUDIO_TOO_LONG
    assert "found while decoding" in refusal.message
    assert decoded <= 1.5 * rate  # the rest was never decoded


@pytest.mark.parametrize(("format", "subtype"), [("WAV", "PCM_16"), ("WEBM", "OPUS")])
def test_audio_within_the_limit_decodes_whole(tmp_path, format, subtype):
    path = tmp_path / "short"
    path.write_bytes(clip(format, subtype, seconds=2))
    with AudioDecoder(path, block_frames=1024, max_seconds=2.5) as decoder:
        accumulator = decoder.new_accumulator()
        while decoder.decode_into(accumulator, 5000):
            pass
    assert accumulator.frames == pytest.approx(2 * rate_of(subtype), abs=2048)
