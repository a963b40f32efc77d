"""Summaries folded chunk by chunk, for runs whose per-path results are not kept.

:func:`margin_sim.simulate` with ``keep_paths=False`` (the default above
:data:`margin_sim.engine.KEEP_PATHS_LIMIT` paths) hands every chunk of outcomes (all modes at
once, in path order) to :meth:`StreamedOutcomes.add` and drops it; memory then no longer grows
with the number of paths.

* Means and standard errors: per block of paths the mean and the sum of squared deviations
  from it (two passes over the block), merged into the running totals with the update of
  Chan, Golub & LeVeque (1979, "Updating formulae and a pairwise algorithm for computing
  sample variances"): ``n = n_a + n_b``, ``delta = mean_b - mean_a``, ``mean = mean_a + delta
  n_b / n``, ``M2 = M2_a + M2_b + delta**2 n_a n_b / n``. No raw sums of squares, so no
  cancellation.
* VaR, CVaR and the median time to liquidation: :class:`~margin_sim.sketch.QuantileSketch`
  (relative accuracy :data:`~margin_sim.sketch.DEFAULT_RELATIVE_ACCURACY`).
* Survival curves: the per-chunk sums, added in path order exactly as for a kept run.

The chunks are re-cut into blocks of :data:`FOLD_PATHS` paths (the remainder waits for the
next chunk), and every block goes through the same floating-point operations in path order,
so the totals do not depend on the chunk size or on the number of worker processes, to the
last bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from margin_sim._typing import FloatArray
from margin_sim.sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch

if TYPE_CHECKING:
    from margin_sim.metrics import ChunkOutcome

__all__ = ["FOLD_PATHS", "RunningMoments", "StreamedOutcomes"]

#: Paths per block folded into the running totals (sets the rounding, never the memory).
FOLD_PATHS = 8192

#: Per mode, the rows of a chunk's matrix: the first four get means and standard errors.
_MODE_ROWS = ("p_ruin", "p_liquidation", "final_equity", "min_equity", "liquidated", "hours")
_MOMENT_ROWS = 4
#: Paired differences (isolated - cross): metric name -> per-path column.
_DIFFERENCES = {
    "ruin_probability": "p_ruin",
    "liquidation_probability": "p_liquidation",
    "expected_final_equity": "final_equity",
    "min_equity": "min_equity",
}


class RunningMoments:
    """Count, means and sums of squared deviations of several columns, block by block.

    Parameters
    ----------
    columns : int
        Number of quantities tracked (rows of the blocks passed to :meth:`add`).

    Examples
    --------
    >>> moments = RunningMoments(1)
    >>> moments.add(np.array([[1.0, 2.0]]))
    >>> moments.add(np.array([[3.0, 4.0, 5.0]]))
    >>> moments.mean.tolist(), moments.variance().tolist()
    ([3.0], [2.5])
    """

    def __init__(self, columns: int) -> None:
        self.count = 0
        self.mean = np.zeros(columns)
        self.m2 = np.zeros(columns)

    def add(self, block: FloatArray) -> None:
        """Fold a block of shape ``(columns, n)`` (Chan, Golub & LeVeque 1979, eq. 2.1)."""
        n_block = block.shape[1]
        if n_block == 0:
            return
        mean_block = block.mean(axis=1)
        deviation = block - mean_block[:, None]
        m2_block = np.square(deviation).sum(axis=1)
        n = self.count + n_block
        delta = mean_block - self.mean
        self.mean = self.mean + delta * (n_block / n)
        self.m2 = self.m2 + m2_block + np.square(delta) * (self.count * n_block / n)
        self.count = n

    def variance(self) -> FloatArray:
        """Sample variances (``ddof=1``); NaN for fewer than two values."""
        if self.count < 2:
            return np.full(self.mean.shape, np.nan)
        return self.m2 / (self.count - 1)

    def standard_error(self) -> FloatArray:
        """Standard errors of the means, ``sqrt(variance / count)``, as ``std(ddof=1)/sqrt(n)``."""
        return np.sqrt(self.variance()) / math.sqrt(max(self.count, 1))


class StreamedOutcomes:
    """Running summaries of every mode of one run, fed chunk by chunk in path order.

    Parameters
    ----------
    modes : sequence of str
        The scenario's margin modes, in order.
    balance : float
        Starting balance, quote currency (loss = balance - final equity).
    fold_paths : int
        Paths per folded block; the numbers depend on it at the rounding level only.
    relative_accuracy : float
        Of the quantile sketches (VaR, CVaR, median hours to liquidation).
    """

    def __init__(
        self,
        modes: Sequence[str],
        balance: float,
        *,
        fold_paths: int = FOLD_PATHS,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
    ) -> None:
        self.modes = list(modes)
        self.balance = float(balance)
        self.fold_paths = int(fold_paths)
        self.relative_accuracy = float(relative_accuracy)
        self.paired = {"isolated", "cross"} <= set(self.modes)
        n_moments = _MOMENT_ROWS * len(self.modes) + (len(_DIFFERENCES) if self.paired else 0)
        self._moments = RunningMoments(n_moments)
        width = len(_MODE_ROWS)
        per_mode = [m * width + r for m in range(len(self.modes)) for r in range(_MOMENT_ROWS)]
        n_paired = len(_DIFFERENCES) if self.paired else 0
        paired = range(len(self.modes) * width, len(self.modes) * width + n_paired)
        self._moment_rows = np.array(per_mode + list(paired), dtype=np.int64)
        self.liquidated = dict.fromkeys(self.modes, 0)
        self.loss = {mode: QuantileSketch(relative_accuracy) for mode in self.modes}
        self.hours = {mode: QuantileSketch(relative_accuracy) for mode in self.modes}
        self.survival: dict[str, tuple[FloatArray, FloatArray]] = {}
        self._pending: list[FloatArray] = []
        self._pending_paths = 0
        self.paths = 0

    # ----------------------------------------------------------------------------- folding

    def add(self, by_mode: Mapping[str, ChunkOutcome]) -> None:
        """Fold one chunk (every mode, the same paths); the chunk can be dropped afterwards.

        Raises
        ------
        ValueError
            If a mode is missing or the modes' outcomes are not on the same paths.
        """
        if set(by_mode) != set(self.modes):
            raise ValueError(f"expected outcomes of {self.modes}, got {list(by_mode)}")
        first = by_mode[self.modes[0]]
        rows: list[FloatArray] = []
        for mode in self.modes:
            outcome = by_mode[mode]
            if not np.array_equal(outcome.path_index, first.path_index):
                raise ValueError(f"mode {mode!r}: outcomes of another chunk of paths")
            rows += [
                outcome.p_ruin,
                outcome.p_liquidation,
                outcome.final_equity,
                outcome.min_equity,
                outcome.liquidated,
                outcome.hours_to_liquidation,
            ]
            assert outcome.survival_sum is not None and outcome.survival_sum_squares is not None
            if mode in self.survival:
                total, squares = self.survival[mode]
                self.survival[mode] = (
                    total + outcome.survival_sum,
                    squares + outcome.survival_sum_squares,
                )
            else:
                self.survival[mode] = (outcome.survival_sum, outcome.survival_sum_squares)
        if self.paired:
            isolated, cross = by_mode["isolated"], by_mode["cross"]
            rows += [
                getattr(isolated, column) - getattr(cross, column)
                for column in _DIFFERENCES.values()
            ]
        matrix = np.array(rows, dtype=float)
        self.paths += matrix.shape[1]
        self._pending.append(matrix)
        self._pending_paths += matrix.shape[1]
        if self._pending_paths >= self.fold_paths:
            self._fold_pending(final=False)

    def finish(self) -> None:
        """Fold the paths still waiting for a full block (call once, after the last chunk)."""
        self._fold_pending(final=True)

    def _fold_pending(self, *, final: bool) -> None:
        if not self._pending:
            return
        waiting = (
            np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        )
        whole = waiting.shape[1] - (0 if final else waiting.shape[1] % self.fold_paths)
        for start in range(0, whole, self.fold_paths):
            self._fold(np.ascontiguousarray(waiting[:, start : start + self.fold_paths]))
        rest = waiting[:, whole:]
        self._pending = [rest.copy()] if rest.shape[1] else []
        self._pending_paths = rest.shape[1]

    def _fold(self, block: FloatArray) -> None:
        self._moments.add(np.ascontiguousarray(block[self._moment_rows]))
        width = len(_MODE_ROWS)
        for m, mode in enumerate(self.modes):
            self.liquidated[mode] += int(np.count_nonzero(block[m * width + 4]))
            self.loss[mode].add(self.balance - block[m * width + 2])
            hours = block[m * width + 5]
            self.hours[mode].add(hours[np.isfinite(hours)])

    # ----------------------------------------------------------------------------- results

    def _check_finished(self) -> None:
        if self._pending_paths:
            raise RuntimeError("StreamedOutcomes: call finish() after the last chunk")

    def summary_row(self, mode: str) -> dict[str, float]:
        """The :data:`margin_sim.metrics.SUMMARY_COLUMNS` of one mode (units as there)."""
        self._check_finished()
        m = self.modes.index(mode)
        rows = slice(m * _MOMENT_ROWS, (m + 1) * _MOMENT_ROWS)
        mean = self._moments.mean[rows]
        se = self._moments.standard_error()[rows]
        var, cvar = self.loss[mode].value_at_risk(0.95)
        n = self._moments.count
        return {
            "ruin_probability": float(mean[0]),
            "ruin_probability_se": float(se[0]),
            "liquidation_probability": float(mean[1]),
            "liquidation_probability_se": float(se[1]),
            "expected_final_equity": float(mean[2]),
            "expected_final_equity_se": float(se[2]),
            "expected_loss": self.balance - float(mean[2]),
            "var_95": var,
            "cvar_95": cvar,
            "median_hours_to_liquidation": self.hours[mode].quantile(0.5),
            "liquidated_fraction": self.liquidated[mode] / n if n else float("nan"),
            "min_equity_mean": float(mean[3]),
        }

    def difference_rows(self) -> dict[str, dict[str, float]]:
        """Isolated minus cross, per metric: ``isolated, cross, difference, se, z``.

        Raises
        ------
        KeyError
            If either mode was not simulated.
        """
        self._check_finished()
        for mode in ("isolated", "cross"):
            if mode not in self.modes:
                raise KeyError(f"mode {mode!r} was not simulated (modes: {self.modes})")
        mean, se = self._moments.mean, self._moments.standard_error()
        first = _MOMENT_ROWS * len(self.modes)
        iso, cross = self.modes.index("isolated"), self.modes.index("cross")
        out = {}
        for k, metric in enumerate(_DIFFERENCES):
            diff, diff_se = float(mean[first + k]), float(se[first + k])
            out[metric] = {
                "isolated": float(mean[iso * _MOMENT_ROWS + k]),
                "cross": float(mean[cross * _MOMENT_ROWS + k]),
                "difference": diff,
                "se": diff_se,
                "z": diff / diff_se if diff_se and np.isfinite(diff_se) and diff_se > 0 else np.nan,
            }
        return out
