"""The loudness meter against the EBU test signals, pyloudnorm and scipy's upfirdn.

The expected values are the definitions of EBU Tech 3341 (loudness, true peak) and
Tech 3342 (loudness range): a 1 kHz sine at -23 dBFS on both stereo channels is
-23 LUFS, and so on. Tolerances are the specs' (±0.1 LU, ±1 LU for the range), ±0.3 dB
for the true peak (the spec allows +0.2/-0.4).
"""

import math

import numpy as np
import pyloudnorm
import pytest
from scipy import signal

from reference_analyzer.loudness import (
    ANNEX2_PHASES,
    SILENT_LUFS,
    LoudnessMeter,
    channel_weights,
    k_weighting,
)

pytestmark = pytest.mark.unit

SR = 48_000


def tone(
    dbfs: float,
    seconds: float,
    *,
    sample_rate: int = SR,
    frequency: float = 1000.0,
    phase: float = 0.0,
    channels: int = 2,
) -> np.ndarray:
    """A sine whose peak is ``dbfs``, the same on every channel."""
    n = np.arange(round(seconds * sample_rate))
    mono = 10 ** (dbfs / 20) * np.sin(2 * np.pi * frequency * n / sample_rate + phase)
    return np.repeat(mono[:, None], channels, axis=1)


def faded(samples: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    """``samples`` with a raised-cosine fade in and out, so that they start without a step."""
    ramp = np.sin(np.linspace(0, np.pi / 2, round(seconds * SR)))[:, None] ** 2
    out = samples.copy()
    out[: len(ramp)] *= ramp
    out[-len(ramp) :] *= ramp[::-1]
    return out


def sequence(*parts: tuple[float, float], sample_rate: int = SR) -> np.ndarray:
    """1 kHz stereo tones of (dBFS, seconds), one after the other."""
    return np.concatenate([tone(db, s, sample_rate=sample_rate) for db, s in parts])


def measure(samples: np.ndarray, sample_rate: int = SR, block: int = 65536) -> LoudnessMeter:
    meter = LoudnessMeter(sample_rate, samples.shape[1])
    for start in range(0, len(samples), block):
        meter.add(samples[start : start + block])
    return meter


def dbtp(meter: LoudnessMeter) -> float:
    return 20 * math.log10(meter.true_peak)


def test_k_weighting_at_48_khz_is_the_table_of_bs_1770():
    shelf, high_pass = k_weighting(48_000)
    assert shelf == pytest.approx(
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0,
         -1.69065929318241, 0.73248077421585], abs=1e-9
    )  # fmt: skip
    assert high_pass == pytest.approx(
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621], abs=1e-9
    )


@pytest.mark.parametrize("level", [-23.0, -33.0])
def test_stereo_1_khz_sine_reads_its_level_in_lufs(level):
    # EBU Tech 3341 cases 1 and 2: 20 s of 1 kHz at -23 (-33) dBFS on both channels.
    assert measure(tone(level, 20)).integrated_lufs == pytest.approx(level, abs=0.1)


@pytest.mark.parametrize(
    "parts",
    [
        [(-36, 10), (-23, 60), (-36, 10)],  # case 3: the relative gate drops the -36
        [(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)],  # case 4: absolute gate
        [(-26, 20), (-20, 20.1), (-26, 20)],  # case 5: the gate keeps all, power mean
    ],
)
def test_tech_3341_sequences_read_minus_23_lufs(parts):
    assert measure(sequence(*parts)).integrated_lufs == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize("sample_rate", [8000, 11_025, 16_000, 22_050, 44_100, 96_000, 192_000])
def test_loudness_holds_at_every_sample_rate(sample_rate):
    # The filters are derived for the rate; the 48 kHz table used at 8 kHz would put
    # its shelf at a sixth of the frequency and read about 3 LU too loud.
    meter = measure(tone(-23, 5, sample_rate=sample_rate), sample_rate)
    assert meter.integrated_lufs == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([(-20, 20), (-30, 20)], 10),  # Tech 3342 case 1
        ([(-20, 20), (-15, 20)], 5),  # case 2
        ([(-40, 20), (-20, 20)], 20),  # case 3
        ([(-50, 20), (-35, 20), (-20, 20), (-35, 20), (-50, 20)], 15),  # case 4: gated
    ],
)
def test_tech_3342_loudness_range(parts, expected):
    assert measure(sequence(*parts)).loudness_range_lu == pytest.approx(expected, abs=1)


def test_steady_tone_has_no_loudness_range():
    assert measure(tone(-23, 10)).loudness_range_lu == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize(
    ("fraction", "phase_degrees", "peak_dbtp"),
    [
        (1 / 4, 0.0, -6.0),  # EBU Tech 3341 case 15
        (1 / 4, 45.0, -6.0),  # case 16: the samples are 3 dB below the peak
        (1 / 6, 60.0, -6.0),  # case 17
        (1 / 8, 67.5, -6.0),  # case 18
        (1 / 4, 45.0, 3.0),  # case 19: samples at full scale, 3 dB over between them
    ],
)
def test_true_peak_finds_inter_sample_peaks(fraction, phase_degrees, peak_dbtp):
    samples = tone(peak_dbtp, 1, frequency=fraction * SR, phase=math.radians(phase_degrees))
    assert dbtp(measure(faded(samples))) == pytest.approx(peak_dbtp, abs=0.3)


def test_an_abrupt_start_overshoots_as_the_reconstructed_signal_does():
    # Starting at 92 % of its peak, the sine begins with a step: the band-limited
    # signal rings above the sine's peak there, and a true-peak meter must see it.
    samples = tone(-6, 1, frequency=SR / 8, phase=math.radians(67.5))
    assert dbtp(measure(samples)) > dbtp(measure(faded(samples))) + 0.3


def test_true_peak_is_above_a_sample_peak_3_db_lower():
    samples = faded(tone(-6, 1, frequency=SR / 4, phase=math.radians(45)))
    assert 20 * math.log10(np.abs(samples).max()) == pytest.approx(-9.01, abs=0.01)
    assert dbtp(measure(samples)) > -6.3


def test_true_peak_equals_scipy_upfirdn_with_the_annex_filter():
    rng = np.random.default_rng(7)
    samples = rng.uniform(-0.9, 0.9, (10_007, 2)).astype(np.float32)
    meter = measure(samples, block=1000)
    prototype = ANNEX2_PHASES.T.reshape(-1)  # the 48 taps: coefficient 4k + p is phase p's k
    expected = max(
        np.abs(signal.upfirdn(prototype, samples[:, c].astype(np.float64), up=4)).max()
        for c in range(2)
    )
    assert meter.true_peak == pytest.approx(max(expected, np.abs(samples).max()), rel=1e-5)


def test_true_peak_oversamples_twice_from_176_4_khz():
    assert LoudnessMeter(96_000, 2).oversampling == 4
    meter = measure(tone(-1, 1, sample_rate=192_000, frequency=997), 192_000)
    assert meter.oversampling == 2
    assert dbtp(meter) == pytest.approx(-1.0, abs=0.05)


def _noise(seconds: float, sample_rate: int, channels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, (round(seconds * sample_rate), channels))


def _signals() -> dict[str, tuple[np.ndarray, int]]:
    n = np.arange(10 * SR) / SR
    mixed = np.stack(
        [0.3 * np.sin(2 * np.pi * 100 * n) + 0.1 * np.sin(2 * np.pi * 3000 * n),
         0.05 * np.sin(2 * np.pi * 10_000 * n) + 0.2 * np.sin(2 * np.pi * 440 * n)],
        axis=1,
    )  # fmt: skip
    pink = signal.lfilter([0.05], [1, -0.95], _noise(12, 44_100, 1, 2), axis=0)
    quiet_and_loud = np.concatenate([_noise(6, SR, 2, 3), 0.02 * _noise(6, SR, 2, 4)])
    return {
        "stereo noise": (_noise(10, SR, 2, 1), SR),
        "mixed sines": (mixed, SR),
        "mono 44.1 kHz low-passed noise": (pink, 44_100),
        "quiet and loud": (quiet_and_loud, SR),
        "5 channels": (_noise(8, SR, 5, 5) * [1.0, 0.5, 0.2, 0.7, 0.1], SR),
    }


@pytest.mark.parametrize("name", list(_signals()))
def test_integrated_loudness_agrees_with_pyloudnorm(name):
    samples, sample_rate = _signals()[name]
    # "DeMan" is pyloudnorm's filter derived from BS.1770's analog prototypes.
    reference = pyloudnorm.Meter(sample_rate, filter_class="DeMan")
    expected = reference.integrated_loudness(samples)
    assert measure(samples, sample_rate).integrated_lufs == pytest.approx(expected, abs=0.02)


def test_loudness_range_agrees_with_pyloudnorm():
    samples = np.concatenate([_noise(10, SR, 2, 6) * 10 ** (-g / 20) for g in (0, 6, 12, 3)])
    expected = pyloudnorm.Meter(SR, filter_class="DeMan").loudness_range(samples)
    assert measure(samples).loudness_range_lu == pytest.approx(expected, abs=0.1)


def test_channel_weights_follow_bs_1770():
    assert list(channel_weights(1)) == [1.0]
    assert list(channel_weights(2)) == [1.0, 1.0]
    assert list(channel_weights(5)) == [1.0, 1.0, 1.0, 1.41, 1.41]
    assert list(channel_weights(6)) == [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]  # L R C LFE Ls Rs


def test_surround_weighs_1_5_db_more_and_the_lfe_nothing():
    mono = tone(-20, 5, channels=1)
    front = measure(mono).integrated_lufs
    silent = np.zeros_like(mono)
    surround = measure(np.hstack([silent] * 4 + [mono, silent])).integrated_lufs
    lfe = measure(np.hstack([silent] * 3 + [mono, silent, silent])).integrated_lufs
    assert surround - front == pytest.approx(10 * math.log10(1.41), abs=0.01)
    assert lfe == SILENT_LUFS


def test_silence_reads_minus_70_lufs_no_range_and_no_peak():
    meter = measure(np.zeros((10 * SR, 2)))
    assert meter.integrated_lufs == SILENT_LUFS == -70.0
    assert meter.loudness_range_lu == 0.0
    assert meter.true_peak == 0.0
    empty = LoudnessMeter(SR, 2)
    assert (empty.integrated_lufs, empty.loudness_range_lu, empty.true_peak) == (-70, 0, 0)


def test_audio_quieter_than_the_absolute_gate_reads_minus_70():
    assert measure(tone(-80, 5)).integrated_lufs == -70.0


def test_audio_shorter_than_one_block_is_measured_as_one_block():
    meter = measure(tone(-23, 0.25))
    assert meter.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert meter.loudness_range_lu == 0.0


def test_sudden_silence_after_loud_audio_stays_finite():
    meter = measure(np.concatenate([tone(-10, 4), np.zeros((4 * SR, 2))]))
    # 37 blocks of tone, then three holding 3/4, 1/2 and 1/4 of it; the silent ones
    # (power exactly 0, never a tiny negative difference) are gated out.
    assert meter.integrated_lufs == pytest.approx(-10 + 10 * math.log10(38.5 / 40), abs=0.02)
    assert math.isfinite(meter.loudness_range_lu)


def test_any_block_split_gives_the_same_result():
    sr = 8000
    rng = np.random.default_rng(11)
    samples = np.concatenate(
        [tone(-20, 2, sample_rate=sr), 0.05 * rng.standard_normal((sr + 7, 2)),
         tone(-40, 2, sample_rate=sr, frequency=2500)]
    )  # fmt: skip
    whole = measure(samples, sr, block=len(samples))
    for block in (1, 1000, 4096):
        split = measure(samples, sr, block=block)
        assert split.integrated_lufs == pytest.approx(whole.integrated_lufs, abs=1e-9)
        assert split.loudness_range_lu == pytest.approx(whole.loudness_range_lu, abs=1e-9)
        assert split.true_peak == pytest.approx(whole.true_peak, rel=1e-6)
        assert whole.loudness_range_lu > 1  # the signal does have a range to get wrong


def _state_bytes(meter: LoudnessMeter) -> dict[str, int]:
    """The size of every array in the meter's state; fails on any other container."""
    sizes: dict[str, int] = {}

    def walk(prefix: str, obj: object) -> None:
        for name, value in vars(obj).items():
            if isinstance(value, np.ndarray):
                sizes[prefix + name] = value.nbytes
            elif hasattr(value, "__dict__"):
                walk(f"{prefix}{name}.", value)
            else:
                assert isinstance(value, int | float), f"{prefix}{name} is a {type(value)}"

    walk("", meter)
    return sizes


def test_memory_does_not_grow_with_duration():
    sr = 8000
    rng = np.random.default_rng(12)
    meter = LoudnessMeter(sr, 2)
    block = 65536

    def feed(seconds: int) -> None:
        for _ in range(0, seconds * sr, block):
            meter.add(rng.normal(0, rng.uniform(0.01, 0.3), (block, 2)))

    feed(10)
    after_10_seconds = _state_bytes(meter)
    feed(590)
    assert meter._momentary.counts.sum() > 5000  # the ten minutes were really measured
    assert _state_bytes(meter) == after_10_seconds
