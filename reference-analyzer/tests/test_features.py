import json
import math
from typing import Any

import numpy as np
import pytest

from contracts import AudioFeatures
from reference_analyzer.features import FeatureAccumulator, compute_features, dbfs
from reference_analyzer.testing import sine

pytestmark = pytest.mark.unit

SR = 48_000


def blocks(samples: np.ndarray, size: int = 1000):
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def test_sine_levels_match_theory():
    # RMS of a sine is amplitude / sqrt(2): 0.5 -> -9.03 dBFS; peak 0.5 -> -6.02 dBFS.
    features = compute_features(blocks(sine(seconds=2, sample_rate=SR)), sample_rate=SR, channels=1)
    assert features.rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert features.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert features.silence_ratio == 0
    assert features.duration_seconds == 2.0
    assert features.sample_rate == SR
    assert features.frames == 2 * SR
    assert features.channels == 1


def test_digital_silence_is_minus_120_and_all_silent():
    features = compute_features(blocks(np.zeros((SR, 1))), sample_rate=SR, channels=1)
    assert features.rms_dbfs == -120.0
    assert features.peak_dbfs == -120.0
    assert features.silence_ratio == 1.0


def test_loudness_and_true_peak_of_a_stereo_tone():
    # 1 kHz at -23 dBFS on both channels: -23 LUFS (EBU Tech 3341), steady, peak -23.
    samples = sine(
        seconds=5, sample_rate=SR, frequency=1000, amplitude=10 ** (-23 / 20), channels=2
    )
    features = compute_features(blocks(samples, 4096), sample_rate=SR, channels=2)
    assert features.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert features.loudness_range_lu == pytest.approx(0.0, abs=0.1)
    assert features.true_peak_dbtp == pytest.approx(-23.0, abs=0.3)
    assert features.true_peak_dbtp is not None and features.peak_dbfs is not None
    assert features.true_peak_dbtp >= features.peak_dbfs


def _json_without_nan_or_inf(features: AudioFeatures) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    body: dict[str, Any] = json.loads(
        features.model_dump_json(exclude_none=True), parse_constant=refuse
    )
    return body


def test_silence_reads_minus_70_lufs_and_minus_120_dbtp_in_valid_json():
    features = compute_features(blocks(np.zeros((5 * SR, 2))), sample_rate=SR, channels=2)
    body = _json_without_nan_or_inf(features)
    assert body["integrated_lufs"] == -70.0
    assert body["loudness_range_lu"] == 0.0
    assert body["true_peak_dbtp"] == -120.0


def test_nan_and_infinite_samples_count_as_silence():
    samples = sine(seconds=2, sample_rate=SR, channels=2)
    samples[1000:1010] = np.nan
    samples[5000, 1] = np.inf
    samples[7000, 0] = -np.inf
    features = compute_features(blocks(samples), sample_rate=SR, channels=2, frames_hint=2 * SR)
    body = _json_without_nan_or_inf(features)
    numbers = [v for v in body.values() if isinstance(v, float)] + body["envelope"]
    assert all(math.isfinite(v) for v in numbers)
    assert features.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert features.integrated_lufs is not None and features.integrated_lufs > -20


def test_loudness_is_left_out_below_8_khz():
    features = compute_features([sine(sample_rate=4000)], sample_rate=4000, channels=1)
    body = _json_without_nan_or_inf(features)
    assert "integrated_lufs" not in body and "true_peak_dbtp" not in body
    assert body["rms_dbfs"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)


def test_half_silent_signal_has_silence_ratio_one_half():
    tone = sine(seconds=1, sample_rate=SR)
    samples = np.concatenate([tone, np.zeros_like(tone)])
    features = compute_features(blocks(samples, 777), sample_rate=SR, channels=1)
    assert features.silence_ratio == pytest.approx(0.5, abs=0.01)


def test_quiet_signal_below_minus_60_dbfs_counts_as_silence():
    features = compute_features(
        [sine(sample_rate=SR, amplitude=0.0005)], sample_rate=SR, channels=1
    )
    assert features.silence_ratio == 1.0
    assert features.rms_dbfs == pytest.approx(20 * math.log10(0.0005 / math.sqrt(2)), abs=0.01)


def test_stereo_levels_cover_all_samples_of_all_channels():
    left = sine(seconds=1, sample_rate=SR, amplitude=1.0)
    samples = np.hstack([left, np.zeros_like(left)])
    features = compute_features(blocks(samples), sample_rate=SR, channels=2)
    assert features.channels == 2
    assert features.frames == SR
    # Half the samples are zero: the mean square halves, -3.01 dB more.
    assert features.rms_dbfs == pytest.approx(-3.0103 - 3.0103, abs=0.01)
    assert features.peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert features.silence_ratio == 0  # every window holds the sine of the left channel


def test_block_boundaries_do_not_change_the_result():
    sr = 8000  # 10 ms windows of 80 frames
    samples = np.concatenate([sine(seconds=0.5, sample_rate=sr), np.zeros((sr // 3, 1))])
    whole = compute_features([samples], sample_rate=sr, channels=1, frames_hint=len(samples))
    for size in (1, 79, 80, 81, 4096):
        split = compute_features(
            blocks(samples, size), sample_rate=sr, channels=1, frames_hint=len(samples)
        )
        assert split == whole


def test_envelope_has_at_most_200_points_following_the_signal():
    samples = np.concatenate([sine(seconds=1, sample_rate=SR, amplitude=0.8), np.zeros((SR, 1))])
    features = compute_features(blocks(samples), sample_rate=SR, channels=1, frames_hint=2 * SR)
    assert features.envelope is not None
    assert len(features.envelope) == 200
    assert all(0 <= v <= 1 for v in features.envelope)
    assert features.envelope[:100] == pytest.approx([0.8] * 100, abs=0.01)
    assert features.envelope[100:] == [0.0] * 100


def test_short_audio_gets_one_envelope_point_per_frame():
    samples = np.array([[0.1], [-0.5], [0.25]])
    features = compute_features([samples], sample_rate=SR, channels=1, frames_hint=3)
    assert features.envelope == [0.1, 0.5, 0.25]


def test_envelope_tolerates_a_wrong_length_hint():
    samples = sine(seconds=1, sample_rate=SR)
    longer = compute_features([samples], sample_rate=SR, channels=1, frames_hint=2 * SR)
    assert longer.envelope is not None
    assert len(longer.envelope) == 100  # slices after the real end are dropped
    shorter = compute_features([samples], sample_rate=SR, channels=1, frames_hint=SR // 2)
    assert shorter.envelope is not None
    assert len(shorter.envelope) == 200  # extra frames fall into the last slice


def test_empty_audio():
    features = compute_features([], sample_rate=SR, channels=2, frames_hint=0)
    assert features.frames == 0
    assert features.duration_seconds == 0
    assert features.rms_dbfs == -120.0
    assert features.silence_ratio == 1.0
    assert features.envelope == []
    assert (features.integrated_lufs, features.loudness_range_lu) == (-70.0, 0.0)
    assert features.true_peak_dbtp == -120.0


def test_blocks_of_the_wrong_shape_are_refused():
    accumulator = FeatureAccumulator(SR, 2)
    with pytest.raises(ValueError, match="shape"):
        accumulator.add(np.zeros((10, 3)))


def test_dbfs_floors_at_minus_120():
    assert dbfs(1.0) == 0.0
    assert dbfs(0.0) == -120.0
    assert dbfs(1e-9) == -120.0
