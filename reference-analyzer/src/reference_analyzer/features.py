"""Audio features computed in one streaming pass over decoded blocks.

:class:`FeatureAccumulator` takes blocks of samples (frames x channels, floats where
1.0 is full scale) one at a time and keeps only running sums, a sub-window carry and
the envelope, so memory is bounded whatever the duration. It is pure numpy: no files,
no I/O, easy to test with generated signals.

Levels are dB relative to full scale over all samples of all channels, without the
AES17 +3 dB sine correction (a full-scale sine has an RMS of -3.01 dBFS). Digital
silence, whose level is -inf dB, is reported as -120 dBFS (and -120 dBTP). Loudness and
true peak come from :class:`~reference_analyzer.loudness.LoudnessMeter` (BS.1770-4);
below its 8 kHz minimum sample rate they are left out.
"""

import math
from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt

from contracts import AudioFeatures
from reference_analyzer.loudness import MIN_SAMPLE_RATE, LoudnessMeter

SILENCE_FLOOR_DBFS: Final = -120.0
SILENT_WINDOW_DBFS: Final = -60.0
WINDOW_SECONDS: Final = 0.010
MAX_ENVELOPE_POINTS: Final = 200

# A window is silent when its RMS is below -60 dBFS, i.e. its mean square below 1e-6.
_SILENT_MEAN_SQUARE: Final = (10 ** (SILENT_WINDOW_DBFS / 20)) ** 2

Block = npt.NDArray[np.floating]


def dbfs(amplitude: float) -> float:
    """An amplitude (1.0 = full scale) in dBFS, floored at -120."""
    if amplitude <= 0:
        return SILENCE_FLOOR_DBFS
    return max(20 * math.log10(amplitude), SILENCE_FLOOR_DBFS)


class FeatureAccumulator:
    """Running features of one audio stream; feed :meth:`add`, then read :meth:`result`.

    ``frames_hint`` is the length announced by the container; the envelope splits that
    many frames into equal slices. Frames beyond it fall into the last slice; slices
    after the real end are dropped. Without a hint (0) there is no envelope.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        *,
        frames_hint: int = 0,
        envelope_points: int = MAX_ENVELOPE_POINTS,
    ) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError("sample_rate and channels must be positive")
        self.sample_rate = sample_rate
        self.channels = channels
        self._window = max(1, round(sample_rate * WINDOW_SECONDS))
        self._hint = max(frames_hint, 0)
        self._points = min(envelope_points, self._hint)
        self._envelope = np.zeros(self._points, dtype=np.float64)
        self._last_slice = -1
        self._carry = np.empty(0, dtype=np.float64)  # mean squares of an unfinished window
        self._frames = 0
        self._sum_squares = 0.0
        self._peak = 0.0
        self._windows = 0
        self._silent_windows = 0
        self._loudness = (
            LoudnessMeter(sample_rate, channels) if sample_rate >= MIN_SAMPLE_RATE else None
        )

    @property
    def frames(self) -> int:
        return self._frames

    def add(self, block: Block) -> None:
        """Account for the next ``block``: shape (frames, channels), or (frames,) if mono."""
        samples = np.asarray(block, dtype=np.float64)
        if samples.ndim == 1:
            samples = samples.reshape(-1, 1)
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise ValueError(f"expected blocks of shape (n, {self.channels}), got {block.shape}")
        if samples.shape[0] == 0:
            return
        if not np.isfinite(samples).all():
            # Only a corrupt float file holds NaN or infinite samples: they count as
            # silence, so that no level or loudness in the result is NaN or infinite.
            samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        # Channels as rows: numpy reduces across rows fast, along a short axis 1 slowly.
        planar = samples.T.copy()
        squares = np.square(planar)
        self._sum_squares += float(squares.sum())
        frame_peaks = np.abs(planar, out=planar).max(axis=0)
        self._peak = max(self._peak, float(frame_peaks.max()))
        self._count_windows(squares.mean(axis=0))
        self._update_envelope(frame_peaks)
        if self._loudness is not None:
            self._loudness.add(samples)
        self._frames += samples.shape[0]

    def _count_windows(self, frame_power: npt.NDArray[np.float64]) -> None:
        # Windows straddle blocks: the frames of an unfinished window wait in the carry.
        power = np.concatenate((self._carry, frame_power))
        full = len(power) // self._window
        if full:
            windows = power[: full * self._window].reshape(full, self._window).mean(axis=1)
            self._windows += full
            self._silent_windows += int(np.count_nonzero(windows < _SILENT_MEAN_SQUARE))
        self._carry = power[full * self._window :].copy()

    def _update_envelope(self, frame_peaks: npt.NDArray[np.float64]) -> None:
        if not self._points:
            return
        positions = np.arange(self._frames, self._frames + len(frame_peaks), dtype=np.int64)
        slices = np.minimum(positions * self._points // self._hint, self._points - 1)
        # `slices` never decreases, so each run of equal values is one slice's part.
        starts = np.flatnonzero(np.r_[True, slices[1:] != slices[:-1]])
        targets = slices[starts]
        peaks = np.maximum.reduceat(frame_peaks, starts)
        self._envelope[targets] = np.maximum(self._envelope[targets], peaks)
        self._last_slice = max(self._last_slice, int(slices[-1]))

    def result(self, *, format: str = "", subtype: str = "") -> AudioFeatures:
        """The features of everything added so far (the accumulator stays usable)."""
        windows, silent = self._windows, self._silent_windows
        if len(self._carry):  # the last, shorter window counts too
            windows += 1
            silent += int(float(self._carry.mean()) < _SILENT_MEAN_SQUARE)
        samples = self._frames * self.channels
        rms = math.sqrt(self._sum_squares / samples) if samples else 0.0
        envelope = np.clip(self._envelope[: self._last_slice + 1], 0.0, 1.0)
        meter = self._loudness
        return AudioFeatures(
            duration_seconds=self._frames / self.sample_rate,
            sample_rate=self.sample_rate,
            channels=self.channels,
            frames=self._frames,
            rms_dbfs=round(dbfs(rms), 3),
            peak_dbfs=round(dbfs(self._peak), 3),
            silence_ratio=silent / windows if windows else 1.0,
            format=format,
            subtype=subtype,
            envelope=[round(float(v), 4) for v in envelope],
            integrated_lufs=None if meter is None else round(meter.integrated_lufs, 2),
            loudness_range_lu=None if meter is None else round(meter.loudness_range_lu, 2),
            true_peak_dbtp=None if meter is None else round(dbfs(meter.true_peak), 3),
        )


def compute_features(
    blocks: Iterable[Block],
    *,
    sample_rate: int,
    channels: int,
    frames_hint: int = 0,
    format: str = "",
    subtype: str = "",
) -> AudioFeatures:
    """The features of a stream of blocks, in one pass."""
    accumulator = FeatureAccumulator(sample_rate, channels, frames_hint=frames_hint)
    for block in blocks:
        accumulator.add(block)
    return accumulator.result(format=format, subtype=subtype)
