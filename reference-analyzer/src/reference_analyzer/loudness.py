"""Loudness and true peak of one audio stream, measured block by block.

:class:`LoudnessMeter` implements ITU-R BS.1770-4 (the measure of EBU R 128):

- **integrated loudness** (LUFS): K-weighting, the mean square of 400 ms blocks every
  100 ms (75 % overlap), weighted per channel, gated at -70 LUFS and then 10 LU below
  the loudness of the blocks above -70;
- **loudness range** (LU, EBU Tech 3342): the spread between the 10th and 95th
  percentile of the 3 s short-term loudness (taken every 100 ms), gated at -70 LUFS
  and then 20 LU below the power mean of the blocks above -70;
- **true peak** (as a linear amplitude; dBTP is ``20 log10`` of it): the highest
  absolute value of the signal oversampled 4x with the interpolation filter of
  BS.1770-4 Annex 2, and at least the sample peak.

Memory is flat in duration: the filters keep their state between blocks, the last
29 sub-blocks of 100 ms wait for the blocks they belong to, and the gated blocks are
kept as histograms of their loudness in bins of 0.01 LU (counts and summed power), as
libebur128 does. The gating thresholds therefore fall on a bin, so a block within
0.005 LU of a threshold may land on the wrong side of it; the integrated value itself
uses the blocks' exact summed power.
"""

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

# BS.1770-4: the loudness of a K-weighted mean square z is -0.691 + 10 log10(z).
_LOUDNESS_OFFSET: Final = -0.691
ABSOLUTE_GATE_LUFS: Final = -70.0
RELATIVE_GATE_LU: Final = -10.0
LRA_RELATIVE_GATE_LU: Final = -20.0
LRA_PERCENTILES: Final = (0.10, 0.95)
# Reported when no block is above the absolute gate (digital silence, or quieter than
# -70 LUFS throughout): the quietest loudness the gating can measure, never -inf.
SILENT_LUFS: Final = ABSOLUTE_GATE_LUFS
MIN_SAMPLE_RATE: Final = 8000

SUBBLOCKS_PER_SECOND: Final = 10  # the 100 ms step of both block kinds
MOMENTARY_SUBBLOCKS: Final = 4  # 400 ms gating blocks (BS.1770-4)
SHORT_TERM_SUBBLOCKS: Final = 30  # 3 s short-term blocks (EBU Tech 3342)

HISTOGRAM_STEP_LU: Final = 0.01
HISTOGRAM_TOP_LUFS: Final = 30.0  # louder blocks share the top bin (their power stays exact)
_BINS: Final = round((HISTOGRAM_TOP_LUFS - ABSOLUTE_GATE_LUFS) / HISTOGRAM_STEP_LU)
_BIN_CENTRES: Final = ABSOLUTE_GATE_LUFS + HISTOGRAM_STEP_LU * (np.arange(_BINS) + 0.5)

# BS.1770-4 Annex 2: the 48-tap interpolation filter as 4 phases of 12 taps. Phase p
# interpolates about (2p + 1)/8 of a sample period after a sample, so no phase
# reproduces the samples themselves: the sample peak is taken as well. Phases 2 and 3
# are phases 1 and 0 reversed.
_PHASE_0: Final = (
    0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000,
    -0.0594482421875, 0.1373291015625, 0.9721679687500, -0.1022949218750,
    0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500,
)  # fmt: skip
_PHASE_1: Final = (
    -0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250,
    -0.1665039062500, 0.4650878906250, 0.7797851562500, -0.2003173828125,
    0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375,
)  # fmt: skip
ANNEX2_PHASES: Final = np.array([_PHASE_0, _PHASE_1, _PHASE_1[::-1], _PHASE_0[::-1]])
_TAPS: Final = ANNEX2_PHASES.shape[1]
_HISTORY: Final = _TAPS - 1
# From 176.4 kHz on, 2x oversampling (phases 0 and 2) is enough: the oversampled rate
# is still above the 192 kHz that 4x gives at 48 kHz, and the audio band is a small
# fraction of the Nyquist frequency there, so inter-sample peaks are tiny.
HIGH_RATE: Final = 176_400
# Frames per row of the interpolation products (see _interpolation_matrices), and rows
# per product: OpenBLAS keeps a product of up to 4 * 65536 multiply-adds on one thread.
_GROUP: Final = 16
_BLAS_ONE_THREAD: Final = 4 * 65536
_CHUNK_GROUPS: Final = _BLAS_ONE_THREAD // (_GROUP * len(ANNEX2_PHASES) * _GROUP)

Samples = npt.NDArray[np.floating]


def k_weighting(sample_rate: int) -> npt.NDArray[np.float64]:
    """The K-weighting filter for ``sample_rate`` as second-order sections, shape (2, 6).

    BS.1770-4 tabulates the two biquads (a high shelf for the acoustic effect of the
    head, then the "RLB" high pass) for 48 kHz only. These are the analog prototypes
    those coefficients come from, put through the bilinear transform at the actual
    rate, as derived by B. De Man and used by libebur128; at 48 kHz they give the
    table's coefficients.
    """
    shelf_k = math.tan(math.pi * 1681.974450955533 / sample_rate)
    shelf_q = 0.7071752369554196
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + shelf_k / shelf_q + shelf_k**2
    shelf = [
        (vh + vb * shelf_k / shelf_q + shelf_k**2) / a0,
        2 * (shelf_k**2 - vh) / a0,
        (vh - vb * shelf_k / shelf_q + shelf_k**2) / a0,
        1.0,
        2 * (shelf_k**2 - 1) / a0,
        (1 - shelf_k / shelf_q + shelf_k**2) / a0,
    ]
    pass_k = math.tan(math.pi * 38.13547087602444 / sample_rate)
    pass_q = 0.5003270373238773
    a0 = 1 + pass_k / pass_q + pass_k**2
    # The numerator stays (1, -2, 1) unnormalised, as in the 48 kHz table.
    high_pass = [1.0, -2.0, 1.0]
    high_pass += [1.0, 2 * (pass_k**2 - 1) / a0, (1 - pass_k / pass_q + pass_k**2) / a0]
    return np.array([shelf, high_pass], dtype=np.float64)


def channel_weights(channels: int) -> npt.NDArray[np.float64]:
    """BS.1770-4 channel weights G for ``channels`` in the usual file order.

    Front channels weigh 1.0, the two surround channels 1.41 (+1.5 dB), the LFE 0.
    Files carry no speaker positions here, so the order is assumed as libebur128 does:
    4 channels are L R Ls Rs, 5 are L R C Ls Rs, 6 or more start L R C LFE Ls Rs (WAV
    and SMPTE order). Any further channels weigh 1.0 (libebur128 leaves them out).
    """
    surround = 1.41
    if channels == 4:
        return np.array([1.0, 1.0, surround, surround])
    if channels == 5:
        return np.array([1.0, 1.0, 1.0, surround, surround])
    weights = np.ones(channels)
    if channels >= 6:
        weights[3] = 0.0
        weights[4:6] = surround
    return weights


def _lufs(power: float) -> float:
    return _LOUDNESS_OFFSET + 10 * math.log10(power)


class _LoudnessHistogram:
    """Blocks above the absolute gate, as counts and summed power per 0.01 LU bin."""

    def __init__(self) -> None:
        self.counts = np.zeros(_BINS, dtype=np.int64)
        self.power = np.zeros(_BINS, dtype=np.float64)

    def add(self, power: npt.NDArray[np.float64]) -> None:
        with np.errstate(divide="ignore"):  # digital silence: log10(0) = -inf, gated out
            loudness = _LOUDNESS_OFFSET + 10 * np.log10(power)
        kept = loudness > ABSOLUTE_GATE_LUFS
        if not kept.any():
            return
        bins = ((loudness[kept] - ABSOLUTE_GATE_LUFS) / HISTOGRAM_STEP_LU).astype(np.int64)
        bins = np.minimum(bins, _BINS - 1)
        np.add.at(self.counts, bins, 1)
        np.add.at(self.power, bins, power[kept])

    def _relative_gate(self, gate_lu: float) -> npt.NDArray[np.bool_] | None:
        """The bins above ``gate_lu`` below the loudness of all blocks; None if empty."""
        blocks = int(self.counts.sum())
        if not blocks:
            return None
        threshold = _lufs(float(self.power.sum()) / blocks) + gate_lu
        return (threshold < _BIN_CENTRES) & (self.counts > 0)

    def gated_loudness(self, gate_lu: float) -> float | None:
        """The loudness of the blocks above both gates (BS.1770-4 eq. 7), or None."""
        above = self._relative_gate(gate_lu)
        if above is None or not above.any():
            return None
        return _lufs(float(self.power[above].sum()) / int(self.counts[above].sum()))

    def gated_range(self, gate_lu: float, low: float, high: float) -> float:
        """The spread between percentiles ``low`` and ``high`` of the gated blocks, LU."""
        above = self._relative_gate(gate_lu)
        if above is None:
            return 0.0
        cumulative = np.cumsum(np.where(above, self.counts, 0))
        blocks = int(cumulative[-1])
        if blocks < 2:
            return 0.0

        def value(rank: int) -> float:  # the loudness of the rank-th quietest block
            return float(_BIN_CENTRES[np.searchsorted(cumulative, rank, side="right")])

        def percentile(share: float) -> float:  # interpolated as numpy's default
            position = share * (blocks - 1)
            below = math.floor(position)
            if below + 1 >= blocks:
                return value(below)
            return value(below) + (position - below) * (value(below + 1) - value(below))

        return max(percentile(high) - percentile(low), 0.0)


def _interpolation_matrices(
    phases: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The polyphase FIR as two matrices over groups of ``_GROUP`` frames.

    With ``group`` and ``previous`` two consecutive rows of ``_GROUP`` frames,
    ``group @ current + previous @ earlier`` holds, in column ``len(phases) * i + p``,
    phase p after the group's frame i: sum_k phases[p, k] * x[n - k]. Two BLAS products
    over contiguous rows interpolate a whole block, several times faster than scipy's
    upfirdn for the same values (the tests compare the two).
    """
    count = len(phases)
    current = np.zeros((_GROUP, count * _GROUP), dtype=np.float32)
    earlier = np.zeros((_GROUP, count * _GROUP), dtype=np.float32)
    for i in range(_GROUP):
        for k in range(_TAPS):
            if k <= i:
                current[i - k, count * i : count * (i + 1)] = phases[:, k]
            else:
                earlier[_GROUP + i - k, count * i : count * (i + 1)] = phases[:, k]
    return current, earlier


class _TruePeak:
    """The oversampled peak of every channel.

    Frames are interpolated in whole groups of ``_GROUP``; the state is the last group
    (the filter's history) and the frames of an unfinished group.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        phases = ANNEX2_PHASES if sample_rate < HIGH_RATE else ANNEX2_PHASES[::2]
        self.oversampling = len(phases)
        self._current, self._earlier = _interpolation_matrices(phases)
        self._previous = np.zeros((_GROUP, channels), dtype=np.float32)
        self._pending = np.zeros((0, channels), dtype=np.float32)
        self.peak = 0.0  # linear, the samples themselves included

    def add(self, samples: Samples) -> None:
        block = np.asarray(samples, dtype=np.float32)
        self.peak = max(self.peak, float(np.abs(block).max()))
        frames = np.concatenate((self._previous, self._pending, block))
        whole = (len(frames) // _GROUP) * _GROUP
        self._pending = frames[whole:].copy()
        if whole > _GROUP:
            self.peak = max(self.peak, self._interpolated_peak(frames[:whole]))
            self._previous = frames[whole - _GROUP : whole].copy()

    def final_peak(self) -> float:
        """The peak, including the unfinished group and the interpolation past the last
        frame (as if silence followed), without changing the state."""
        channels = self._previous.shape[1]
        padding = -(len(self._pending) + _HISTORY) % _GROUP + _HISTORY
        tail = np.zeros((padding, channels), dtype=np.float32)
        frames = np.concatenate((self._previous, self._pending, tail))
        return max(self.peak, self._interpolated_peak(frames))

    def _interpolated_peak(self, frames: npt.NDArray[np.float32]) -> float:
        """The highest |interpolated value| of all groups of ``frames`` but the first,
        which is their history."""
        peak = 0.0
        for column in np.ascontiguousarray(frames.T):
            rows = column.reshape(-1, _GROUP)
            # Chunks small enough that OpenBLAS keeps to one thread: its threads spin
            # for work and, with several analyses at once, only slow every job down.
            for start in range(1, len(rows), _CHUNK_GROUPS):
                group = rows[start : start + _CHUNK_GROUPS]
                values = group @ self._current
                values += rows[start - 1 : start - 1 + len(group)] @ self._earlier
                peak = max(peak, float(values.max()), -float(values.min()))
        return peak


class LoudnessMeter:
    """Integrated loudness, loudness range and true peak of one stream of blocks.

    Feed :meth:`add` with blocks of shape (frames, channels), 1.0 = full scale, of any
    length; read the properties at any time (the meter stays usable). Blocks may be
    reused by the caller after :meth:`add` returns: nothing keeps a reference to them.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        if sample_rate < MIN_SAMPLE_RATE or channels <= 0:
            raise ValueError(f"need at least {MIN_SAMPLE_RATE} Hz and one channel")
        self.sample_rate = sample_rate
        self.channels = channels
        self._sos = k_weighting(sample_rate)
        self._weights = channel_weights(channels)
        self._zi = np.zeros((len(self._sos), 2, channels), dtype=np.float64)
        self._frames = 0
        self._power_total = 0.0  # for audio shorter than one gating block
        self._subblocks = 0  # complete 100 ms sub-blocks so far
        self._partial = 0.0  # summed power of the unfinished sub-block
        # The last SHORT_TERM_SUBBLOCKS - 1 sub-blocks: summed power and frame counts.
        self._recent_power = np.zeros(0, dtype=np.float64)
        self._recent_frames = np.zeros(0, dtype=np.int64)
        self._momentary = _LoudnessHistogram()
        self._short_term = _LoudnessHistogram()
        self._true_peak = _TruePeak(sample_rate, channels)

    @property
    def oversampling(self) -> int:
        """The true-peak oversampling factor: 4, or 2 from 176.4 kHz on."""
        return self._true_peak.oversampling

    def add(self, samples: Samples) -> None:
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise ValueError(f"expected blocks of shape (n, {self.channels}), got {samples.shape}")
        if not len(samples):
            return
        weighted, self._zi = signal.sosfilt(self._sos, samples, axis=0, zi=self._zi)
        # einsum, not a BLAS product: numpy's own loop stays on this thread.
        power = np.einsum("fc,fc,c->f", weighted, weighted, self._weights)
        self._power_total += float(power.sum())
        self._add_power(power)
        self._true_peak.add(samples)

    def _add_power(self, power: npt.NDArray[np.float64]) -> None:
        # Sub-block k ends at frame floor(k * rate / 10), so that 100 ms steps stay exact
        # on average at rates that are not multiples of 10 Hz (11025 Hz, ...).
        start, end = self._frames, self._frames + len(power)
        self._frames = end
        rate = self.sample_rate
        first = self._subblocks + 1
        last = (SUBBLOCKS_PER_SECOND * (end + 1) - 1) // rate  # last k ending within `end`
        if last < first:
            self._partial += float(power.sum())
            return
        bounds = np.arange(first - 1, last + 1, dtype=np.int64) * rate // SUBBLOCKS_PER_SECOND
        cuts = bounds[1:] - start
        sums = np.add.reduceat(power[: cuts[-1]], np.r_[0, cuts[:-1]])
        sums[0] += self._partial
        self._partial = float(power[cuts[-1] :].sum())
        self._subblocks = last
        self._add_subblocks(sums, np.diff(bounds))

    def _add_subblocks(self, power: npt.NDArray[np.float64], frames: npt.NDArray[np.int64]) -> None:
        known = len(self._recent_power)
        power = np.concatenate((self._recent_power, power))
        frames = np.concatenate((self._recent_frames, frames))
        for size, histogram in (
            (MOMENTARY_SUBBLOCKS, self._momentary),
            (SHORT_TERM_SUBBLOCKS, self._short_term),
        ):
            if len(power) < size:
                continue
            # Only the blocks that end in a new sub-block; the others were counted.
            first = max(known - size + 1, 0)
            block_power = sliding_window_view(power, size)[first:].sum(axis=1)
            block_frames = sliding_window_view(frames, size)[first:].sum(axis=1)
            histogram.add(block_power / block_frames)
        keep = SHORT_TERM_SUBBLOCKS - 1
        self._recent_power = power[-keep:].copy()
        self._recent_frames = frames[-keep:].copy()

    @property
    def integrated_lufs(self) -> float:
        """Gated integrated loudness, LUFS; ``SILENT_LUFS`` (-70) when nothing is louder.

        Audio shorter than one 400 ms block is measured as one block of its length.
        """
        if self._subblocks < MOMENTARY_SUBBLOCKS:
            if not self._frames or not self._power_total:
                return SILENT_LUFS
            return max(_lufs(self._power_total / self._frames), SILENT_LUFS)
        loudness = self._momentary.gated_loudness(RELATIVE_GATE_LU)
        return SILENT_LUFS if loudness is None else max(loudness, SILENT_LUFS)

    @property
    def loudness_range_lu(self) -> float:
        """EBU Tech 3342 loudness range, LU; 0 for audio shorter than 3 s or silent."""
        low, high = LRA_PERCENTILES
        return self._short_term.gated_range(LRA_RELATIVE_GATE_LU, low, high)

    @property
    def true_peak(self) -> float:
        """True peak as a linear amplitude (1.0 = full scale); 0 for digital silence."""
        return self._true_peak.final_peak()
