"""A mergeable quantile sketch with a relative-error guarantee, for streamed runs.

The idea is DDSketch (Masson, Rim & Lee 2019, "DDSketch: a fast and fully-mergeable quantile
sketch with relative-error guarantees", PVLDB 12(12)): a positive value ``x`` goes to the bin
``k = ceil(log_gamma x)`` with ``gamma = (1 + a) / (1 - a)``, i.e. ``gamma**(k-1) < x <=
gamma**k``, and is represented by ``2 gamma**k / (gamma + 1)``, which is within a relative
``a`` of every value of the bin. Negative values go to a second store by magnitude, zeros (and
magnitudes too small to take a logarithm of) to a zero count. A store keeps at most
``max_bins`` contiguous bins; when a value would widen it beyond that, the lowest bins (the
values nearest zero) are collapsed into one, as in the paper, so the guarantee then holds for
the larger magnitudes only (the tails a VaR is read from).

Beyond the paper every bin also keeps the sum, the smallest and the largest of its values:

* a bin's estimate is its representative clipped to ``[smallest, largest]``, never worse, and
  exact for a bin holding one value or many equal values (a liquidation that loses exactly the
  position's margin puts an atom in the loss distribution);
* the tail mean of :meth:`QuantileSketch.value_at_risk` (CVaR) sums whole bins exactly and
  estimates only the part of the bin that holds the quantile.

Everything is vectorised over a batch of values (one sort per batch, no Python loop over
values). The floating-point sums depend on how the values are batched, so a caller who needs
bit-identical results whatever its chunking adds values in fixed batches
(:mod:`margin_sim.streaming` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from margin_sim._typing import FloatArray, IntArray

__all__ = ["DEFAULT_MAX_BINS", "DEFAULT_RELATIVE_ACCURACY", "QuantileSketch"]

#: Relative accuracy ``a`` of the quantiles of a streamed run.
DEFAULT_RELATIVE_ACCURACY = 1e-4

#: Bins per store: 2**17 bins of relative width 2e-4 cover magnitudes over a factor of about
#: e**26 (1e11) before any collapse; 4 MiB per store when full.
DEFAULT_MAX_BINS = 2**17

#: Magnitudes at or below this go to the zero count (their logarithm is not needed).
_SMALLEST_MAGNITUDE = np.finfo(float).tiny


@dataclass
class _Store:
    """Contiguous bins ``offset .. offset + size - 1`` of one sign, by magnitude."""

    max_bins: int
    offset: int = 0
    counts: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    sums: FloatArray = field(default_factory=lambda: np.zeros(0))
    lows: FloatArray = field(default_factory=lambda: np.zeros(0))
    highs: FloatArray = field(default_factory=lambda: np.zeros(0))
    lowest: int | None = None  # the span of bins that may hold values
    highest: int | None = None
    collapsed: bool = False

    def _make_room(self, lowest: int, highest: int) -> int:
        """Hold bins ``lowest .. highest`` from now on; returns the lowest bin kept.

        When that span is wider than ``max_bins`` the lowest bins are collapsed into bin
        ``highest - max_bins + 1`` (Masson et al. 2019, section 2.2).
        """
        floor = max(lowest, highest - self.max_bins + 1)
        end = self.offset + self.counts.size
        if self.counts.size and self.offset <= lowest and highest < end:
            self.lowest, self.highest = lowest, highest  # fits: no collapse either
            return floor
        size = min(self.max_bins, max(highest - floor + 1, 2 * self.counts.size, 64))
        # the spare bins go on the side the store grows towards
        offset = floor if self.counts.size and highest >= end else highest - size + 1
        counts = np.zeros(size, np.int64)
        sums = np.zeros(size)
        lows = np.full(size, np.inf)
        highs = np.full(size, -np.inf)
        if self.lowest is not None and self.highest is not None:
            old = np.arange(self.lowest, self.highest + 1)
            source = old - self.offset
            target = np.maximum(old, floor) - offset
            self.collapsed = self.collapsed or self.lowest < floor
            np.add.at(counts, target, self.counts[source])
            np.add.at(sums, target, self.sums[source])
            np.minimum.at(lows, target, self.lows[source])
            np.maximum.at(highs, target, self.highs[source])
        self.offset, self.counts, self.sums, self.lows, self.highs = (
            offset,
            counts,
            sums,
            lows,
            highs,
        )
        self.lowest, self.highest = floor, highest
        return floor

    def _put(
        self,
        bins: IntArray,
        counts: IntArray,
        sums: FloatArray,
        lows: FloatArray,
        highs: FloatArray,
    ) -> None:
        """Add per-bin counts, sums and extremes (``bins`` ascending)."""
        lowest = int(bins[0]) if self.lowest is None else min(self.lowest, int(bins[0]))
        highest = int(bins[-1]) if self.highest is None else max(self.highest, int(bins[-1]))
        floor = self._make_room(lowest, highest)
        self.collapsed = self.collapsed or bool(bins[0] < floor)
        target = np.maximum(bins, floor) - self.offset
        np.add.at(self.counts, target, counts)
        np.add.at(self.sums, target, sums)
        np.minimum.at(self.lows, target, lows)
        np.maximum.at(self.highs, target, highs)

    def add(self, index: IntArray, magnitude: FloatArray) -> None:
        """Add values (``magnitude > 0``) that fall in bins ``index``, one batch."""
        if index.size == 0:
            return
        order = np.argsort(index, kind="stable")
        index, magnitude = index[order], magnitude[order]
        starts = np.flatnonzero(np.concatenate(([True], index[1:] != index[:-1])))
        self._put(
            index[starts],
            np.diff(np.append(starts, index.size)),
            np.add.reduceat(magnitude, starts),
            np.minimum.reduceat(magnitude, starts),
            np.maximum.reduceat(magnitude, starts),
        )

    def merge(self, other: _Store) -> None:
        """Add every bin of ``other`` (same ``gamma``)."""
        bins, counts, sums, lows, highs = other.held()
        if bins.size:
            self._put(bins, counts, sums, lows, highs)
        self.collapsed = self.collapsed or other.collapsed

    def held(self) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]:
        """Bins holding values, ascending: ``index, count, sum, smallest, largest``."""
        if self.lowest is None or self.highest is None:
            empty = np.zeros(0)
            return np.zeros(0, np.int64), np.zeros(0, np.int64), empty, empty, empty
        part = slice(self.lowest - self.offset, self.highest - self.offset + 1)
        keep = self.counts[part] > 0
        index = np.arange(self.lowest, self.highest + 1)[keep]
        return (
            index,
            self.counts[part][keep],
            self.sums[part][keep],
            self.lows[part][keep],
            self.highs[part][keep],
        )


class QuantileSketch:
    """Quantiles and tail means of a stream of values, within a relative accuracy.

    Parameters
    ----------
    relative_accuracy : float
        ``a`` in (0, 1): every quantile returned is within ``a * |q|`` of the true quantile
        ``q`` of the values added (linear interpolation between order statistics, as
        :func:`numpy.quantile`), provided the order statistics involved have the same sign and
        lie above the collapsed bins (see :attr:`collapsed`).
    max_bins : int
        Largest number of bins per sign; memory is at most ``32 * max_bins`` bytes per sign.

    Examples
    --------
    >>> sketch = QuantileSketch()
    >>> sketch.add(np.arange(1.0, 1001.0))
    >>> round(sketch.quantile(0.5), 2)
    500.5
    """

    def __init__(
        self,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        max_bins: int = DEFAULT_MAX_BINS,
    ) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        if max_bins < 2:
            raise ValueError(f"max_bins must be at least 2, got {max_bins}")
        self.relative_accuracy = float(relative_accuracy)
        self.max_bins = int(max_bins)
        self.gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log1p(2.0 * relative_accuracy / (1.0 - relative_accuracy))
        self._positive = _Store(self.max_bins)
        self._negative = _Store(self.max_bins)
        self.zero_count = 0

    @property
    def count(self) -> int:
        """Number of values added."""
        return int(self._positive.counts.sum() + self._negative.counts.sum()) + self.zero_count

    @property
    def collapsed(self) -> bool:
        """Whether bins nearest zero were collapsed (accuracy lost for the smallest magnitudes)."""
        return self._positive.collapsed or self._negative.collapsed

    def _index(self, magnitude: FloatArray) -> IntArray:
        return np.ceil(np.log(magnitude) / self._log_gamma).astype(np.int64)

    def _representative(self, index: IntArray) -> FloatArray:
        # 2 gamma^k / (gamma + 1), through logarithms so that large |k| cannot overflow early
        return np.exp(index * self._log_gamma + math.log(2.0 / (self.gamma + 1.0)))

    def add(self, values: FloatArray) -> None:
        """Add a batch of finite values.

        Raises
        ------
        ValueError
            If a value is NaN or infinite.
        """
        values = np.asarray(values, float).ravel()
        if not np.isfinite(values).all():
            raise ValueError("QuantileSketch.add: values must be finite")
        magnitude = np.abs(values)
        small = magnitude <= _SMALLEST_MAGNITUDE
        self.zero_count += int(small.sum())
        positive = values > 0.0
        for store, take in ((self._positive, positive), (self._negative, ~positive)):
            take = take & ~small
            if take.any():
                store.add(self._index(magnitude[take]), magnitude[take])

    def merge(self, other: QuantileSketch) -> None:
        """Add every value of ``other`` (built with the same accuracy) to this sketch.

        Raises
        ------
        ValueError
            If the two sketches have different relative accuracies.
        """
        if other.gamma != self.gamma:
            raise ValueError("QuantileSketch.merge: the sketches have different accuracies")
        self._positive.merge(other._positive)
        self._negative.merge(other._negative)
        self.zero_count += other.zero_count

    def _ordered(self) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """Held bins in ascending order of value: ``count, sum, smallest, largest, estimate``."""
        n_index, n_count, n_sum, n_low, n_high = self._negative.held()
        p_index, p_count, p_sum, p_low, p_high = self._positive.held()
        zero = np.zeros(1 if self.zero_count else 0)
        count = np.concatenate(
            (n_count[::-1], np.full(zero.size, self.zero_count, np.int64), p_count)
        )
        total = np.concatenate((-n_sum[::-1], zero, p_sum))
        low = np.concatenate((-n_high[::-1], zero, p_low))
        high = np.concatenate((-n_low[::-1], zero, p_high))
        guess = np.concatenate(
            (-self._representative(n_index)[::-1], zero, self._representative(p_index))
        )
        return count, total, low, high, np.clip(guess, low, high)

    def quantile(self, level: float) -> float:
        """The ``level`` quantile (NaN when empty), interpolated as :func:`numpy.quantile`.

        Parameters
        ----------
        level : float
            In [0, 1].
        """
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"level must be in [0, 1], got {level}")
        count, _, _, _, estimate = self._ordered()
        return self._quantile(level, np.cumsum(count), estimate)

    @staticmethod
    def _quantile(level: float, cumulative: IntArray, estimate: FloatArray) -> float:
        if cumulative.size == 0:
            return float("nan")
        n = int(cumulative[-1])
        position = (n - 1) * level
        rank = math.floor(position)
        fraction = position - rank
        lower, upper = np.searchsorted(cumulative, [rank, min(rank + 1, n - 1)], side="right")
        a, b = float(estimate[lower]), float(estimate[upper])
        return a + fraction * (b - a) if fraction else a

    def value_at_risk(self, level: float = 0.95) -> tuple[float, float]:
        """The ``level`` quantile and the mean of the values at or above it (VaR, CVaR).

        The same definitions as :func:`margin_sim.metrics.value_at_risk`. Bins wholly at or
        above the quantile enter the tail mean exactly (their sums); of the bin that holds the
        quantile, the values ranked at or above it are counted exactly and valued at the bin's
        mean clipped to ``[quantile, largest]``, so the tail mean is within ``2a / (1 - a)``
        relative of the exact one (usually far closer).

        Returns
        -------
        var, cvar : float
            NaN, NaN when the sketch is empty.
        """
        count, total, low, high, estimate = self._ordered()
        cumulative = np.cumsum(count)
        var = self._quantile(level, cumulative, estimate)
        if not cumulative.size:
            return var, var
        n = int(cumulative[-1])
        position = (n - 1) * level
        first_rank = math.floor(position) + (1 if position > math.floor(position) else 0)
        # bins wholly above the quantile, and atoms equal to it (ties are in the tail)
        whole = (low > var) | ((low == var) & (high == var))
        tail_count = int(count[whole].sum())
        tail_sum = float(total[whole].sum())
        straddle = np.flatnonzero(~whole & (low <= var) & (high >= var))
        for j in straddle:  # at most one bin: the bins' value ranges are disjoint
            start = int(cumulative[j - 1]) if j else 0
            ranked = int(cumulative[j]) - max(first_rank, start)
            if ranked > 0:
                value = min(max(float(total[j] / count[j]), var), float(high[j]))
                tail_count += ranked
                tail_sum += ranked * value
        return var, tail_sum / tail_count if tail_count else var
