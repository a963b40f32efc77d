"""Summaries of per-path outcomes: probabilities with standard errors, VaR/CVaR, survival.

The probability estimates are means of the per-path *conditional* probabilities (DESIGN.md
section 5), so their standard error is the sample standard deviation over paths divided by
sqrt(paths). Isolated-minus-cross differences are computed path by path on the same paths
(common random numbers) and get paired standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from margin_sim._typing import FloatArray, IntArray
from margin_sim.errors import MarginSimError
from margin_sim.scenario import Scenario
from margin_sim.streaming import StreamedOutcomes

__all__ = [
    "SUMMARY_COLUMNS",
    "ChunkOutcome",
    "PathsNotKeptError",
    "SimulationResult",
    "value_at_risk",
]

#: Columns of :meth:`SimulationResult.summary`, in order (DESIGN.md section 6 and more).
SUMMARY_COLUMNS = (
    "ruin_probability",
    "ruin_probability_se",
    "liquidation_probability",
    "liquidation_probability_se",
    "expected_final_equity",
    "expected_final_equity_se",
    "expected_loss",
    "var_95",
    "cvar_95",
    "median_hours_to_liquidation",
    "liquidated_fraction",
    "min_equity_mean",
)

_PER_PATH_COLUMNS = (
    "p_liquidation",
    "p_ruin",
    "liquidated",
    "hours_to_liquidation",
    "final_equity",
    "min_equity",
)


@dataclass(frozen=True)
class ChunkOutcome:
    """Per-path outcomes of one margin mode on one chunk of paths.

    Attributes
    ----------
    path_index : int array (n,)
        Global path numbers.
    p_liquidation, p_ruin : float arrays (n,)
        Conditional probabilities given the path's grid values and events.
    liquidated : bool array (n,)
        Whether a liquidation was sampled on the path.
    hours_to_liquidation : float array (n,)
        Time of the sampled liquidation, hours (NaN if none).
    final_equity, min_equity : float arrays (n,)
        Quote currency. ``final_equity`` is the close-out value at the horizon: wallet plus
        unrealised PnL, net of every fee paid and of the taker fee to close what is still
        open. ``min_equity`` is the lowest running equity (wallet plus unrealised PnL at the
        mark, fees paid so far) over the grid points and wick troughs: the quantity ruin is
        defined on, so it can sit above ``final_equity`` by the closing fee.
    no_liquidation_by : float array (n, steps + 1), optional
        Conditional probability of no liquidation by each grid point; reduced to sums at once.
    survival_sum, survival_sum_squares : float arrays (steps + 1,), optional
        Those sums over paths, when the caller reduced them already.
    """

    path_index: IntArray
    p_liquidation: FloatArray
    p_ruin: FloatArray
    liquidated: np.ndarray
    hours_to_liquidation: FloatArray
    final_equity: FloatArray
    min_equity: FloatArray
    no_liquidation_by: FloatArray | None = None
    survival_sum: FloatArray | None = None
    survival_sum_squares: FloatArray | None = None

    def __post_init__(self) -> None:
        curve = self.no_liquidation_by
        if curve is not None:
            object.__setattr__(self, "survival_sum", curve.sum(axis=0))
            object.__setattr__(self, "survival_sum_squares", np.square(curve).sum(axis=0))
            object.__setattr__(self, "no_liquidation_by", None)  # free the (n, steps) array
        elif self.survival_sum is None or self.survival_sum_squares is None:
            raise ValueError("give no_liquidation_by or both survival sums")


class PathsNotKeptError(MarginSimError, AttributeError):
    """``SimulationResult.per_path`` of a run whose per-path results were not kept.

    An :class:`AttributeError` too, so ``hasattr(result, "per_path")`` is False for such runs.
    """


def value_at_risk(losses: FloatArray, level: float = 0.95) -> tuple[float, float]:
    """Value at risk and conditional value at risk (expected shortfall) of losses.

    Parameters
    ----------
    losses : array
        Loss per path, quote currency (positive = money lost).
    level : float
        Confidence level.

    Returns
    -------
    var, cvar : float
        The ``level`` quantile of the losses and the mean of the losses at or beyond it.

    Examples
    --------
    >>> var, cvar = value_at_risk(np.arange(100.0), 0.95)
    >>> round(var, 9), round(cvar, 9)
    (94.05, 97.0)
    """
    losses = np.asarray(losses, float)
    if losses.size == 0:
        return float("nan"), float("nan")
    var = float(np.quantile(losses, level))
    tail = losses[losses >= var]
    return var, float(tail.mean()) if tail.size else var


def _mean_se(values: FloatArray) -> tuple[float, float]:
    n = values.size
    if n == 0:
        return float("nan"), float("nan")
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return mean, se


@dataclass
class SimulationResult:
    """What :func:`margin_sim.simulate` returns.

    A run either keeps its per-path results (``per_path``; summaries computed from them, with
    exact quantiles) or streams them (:class:`margin_sim.streaming.StreamedOutcomes`: every
    chunk folded into running totals and dropped, memory independent of the path count;
    means and standard errors as exact as for a kept run, VaR, CVaR and the median hours to
    liquidation from a quantile sketch with relative accuracy 1e-4). ``summary()``,
    ``difference()``, ``survival()`` and ``report()`` work for both.

    Attributes
    ----------
    scenario : Scenario
    paths, seed : int
    per_path : pandas.DataFrame
        One row per (path, mode): ``path, mode, p_liquidation, p_ruin, liquidated,
        hours_to_liquidation, final_equity, min_equity`` (about 100 bytes per path with two
        modes). A streamed run raises :class:`PathsNotKeptError` instead.
    paths_kept : bool
        Whether ``per_path`` is available.
    """

    scenario: Scenario
    paths: int
    seed: int
    _per_path: pd.DataFrame | None = field(repr=False)
    _survival: dict[str, tuple[FloatArray, FloatArray]] = field(repr=False)
    _streamed: StreamedOutcomes | None = field(default=None, repr=False)
    _not_kept: str = field(default="", repr=False)

    @classmethod
    def from_outcomes(
        cls,
        scenario: Scenario,
        *,
        paths: int,
        seed: int,
        outcomes: dict[str, list[ChunkOutcome]],
    ) -> SimulationResult:
        """Assemble a result that keeps its per-path table from the chunks of every mode."""
        modes = list(outcomes)
        columns: dict[str, Any] = {
            "path": np.concatenate([c.path_index for m in modes for c in outcomes[m]]),
        }
        counts = [sum(c.path_index.size for c in outcomes[m]) for m in modes]
        columns["mode"] = pd.Categorical.from_codes(
            np.repeat(np.arange(len(modes)), counts), categories=modes
        )
        for name in _PER_PATH_COLUMNS:
            columns[name] = np.concatenate([getattr(c, name) for m in modes for c in outcomes[m]])
        per_path = pd.DataFrame(columns)
        survival = {
            m: (
                sum(c.survival_sum for c in outcomes[m]),
                sum(c.survival_sum_squares for c in outcomes[m]),
            )
            for m in modes
        }
        return cls(
            scenario=scenario, paths=paths, seed=seed, _per_path=per_path, _survival=survival
        )

    @classmethod
    def from_stream(
        cls,
        scenario: Scenario,
        *,
        paths: int,
        seed: int,
        stream: StreamedOutcomes,
        reason: str,
    ) -> SimulationResult:
        """A result of a streamed run: summaries from the running totals, no per-path table.

        Parameters
        ----------
        stream : StreamedOutcomes
            Fed every chunk of the run; :meth:`~StreamedOutcomes.finish` is called here.
        reason : str
            The one-line message ``per_path`` raises.
        """
        stream.finish()
        if stream.paths != paths:
            raise ValueError(f"the stream holds {stream.paths} paths, expected {paths}")
        return cls(
            scenario=scenario,
            paths=paths,
            seed=seed,
            _per_path=None,
            _survival=dict(stream.survival),
            _streamed=stream,
            _not_kept=reason,
        )

    @property
    def per_path(self) -> pd.DataFrame:
        """The per-path table (see the class docstring).

        Raises
        ------
        PathsNotKeptError
            If the run streamed its results (``simulate(..., keep_paths=False)``).
        """
        if self._per_path is None:
            raise PathsNotKeptError(self._not_kept or "per_path: not kept for this run")
        return self._per_path

    @property
    def paths_kept(self) -> bool:
        """Whether :attr:`per_path` is available (False for a streamed run)."""
        return self._per_path is not None

    @property
    def modes(self) -> list[str]:
        """The margin modes evaluated, in scenario order."""
        return list(self._survival)

    def _mode(self, mode: str) -> pd.DataFrame:
        if mode not in self._survival:
            raise KeyError(f"mode {mode!r} was not simulated (modes: {self.modes})")
        return self.per_path[self.per_path["mode"] == mode]

    def _summary_row(self, mode: str) -> dict[str, float]:
        if self._streamed is not None:
            return self._streamed.summary_row(mode)
        balance = self.scenario.account.balance
        frame = self._mode(mode)
        p_ruin, p_ruin_se = _mean_se(frame["p_ruin"].to_numpy())
        p_liq, p_liq_se = _mean_se(frame["p_liquidation"].to_numpy())
        final = frame["final_equity"].to_numpy()
        equity, equity_se = _mean_se(final)
        var, cvar = value_at_risk(balance - final, 0.95)
        hours = frame["hours_to_liquidation"].to_numpy()
        hours = hours[np.isfinite(hours)]
        return {
            "ruin_probability": p_ruin,
            "ruin_probability_se": p_ruin_se,
            "liquidation_probability": p_liq,
            "liquidation_probability_se": p_liq_se,
            "expected_final_equity": equity,
            "expected_final_equity_se": equity_se,
            "expected_loss": balance - equity,
            "var_95": var,
            "cvar_95": cvar,
            "median_hours_to_liquidation": float(np.median(hours)) if hours.size else np.nan,
            "liquidated_fraction": float(frame["liquidated"].mean()),
            "min_equity_mean": float(frame["min_equity"].mean()),
        }

    def summary(self) -> pd.DataFrame:
        """One row per mode with the fields of DESIGN.md section 6 (and a few more).

        Probabilities are fractions; equity, losses, VaR and CVaR are quote currency for the
        whole account (loss = starting balance - final equity); hours are hours. For a
        streamed run ``var_95``, ``cvar_95`` and ``median_hours_to_liquidation`` come from a
        quantile sketch (relative accuracy 1e-4), everything else is computed as exactly as
        for a kept run.
        """
        rows = {mode: self._summary_row(mode) for mode in self.modes}
        table = pd.DataFrame.from_dict(rows, orient="index")[list(SUMMARY_COLUMNS)]
        table.index.name = "mode"
        return table

    def difference(self) -> pd.DataFrame:
        """Isolated minus cross, path by path, with paired standard errors.

        Returns
        -------
        pandas.DataFrame
            Indexed by metric (``ruin_probability``, ``liquidation_probability``,
            ``expected_final_equity``, ``min_equity``) with columns ``isolated, cross,
            difference, se, z``.

        Raises
        ------
        KeyError
            If either mode was not simulated.
        """
        if self._streamed is not None:
            rows = self._streamed.difference_rows()
        else:
            rows = self._kept_difference()
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "metric"
        return table

    def _kept_difference(self) -> dict[str, dict[str, float]]:
        isolated = self._mode("isolated").sort_values("path")
        cross = self._mode("cross").sort_values("path")
        rows = {}
        for metric, column in (
            ("ruin_probability", "p_ruin"),
            ("liquidation_probability", "p_liquidation"),
            ("expected_final_equity", "final_equity"),
            ("min_equity", "min_equity"),
        ):
            a = isolated[column].to_numpy(float)
            b = cross[column].to_numpy(float)
            diff, se = _mean_se(a - b)
            rows[metric] = {
                "isolated": float(a.mean()),
                "cross": float(b.mean()),
                "difference": diff,
                "se": se,
                "z": diff / se if se and np.isfinite(se) and se > 0 else np.nan,
            }
        return rows

    def survival(self, mode: str) -> pd.DataFrame:
        """Probability of not yet being liquidated at every grid time, with its standard error.

        Returns
        -------
        pandas.DataFrame
            Columns ``hours, survival, survival_se``.
        """
        if mode not in self._survival:
            raise KeyError(f"mode {mode!r} was not simulated (modes: {self.modes})")
        total, squares = self._survival[mode]
        n = self.paths
        mean = total / n
        variance = np.maximum(squares / n - mean**2, 0.0) * n / max(n - 1, 1)
        hours = np.arange(mean.size) * self.scenario.step / 3600.0
        return pd.DataFrame(
            {"hours": hours, "survival": mean, "survival_se": np.sqrt(variance / n)}
        )

    def report(self) -> str:
        """A readable text table of the summary (what ``margin-sim run`` prints)."""
        table = self.summary()
        s = self.scenario
        lines = [
            f"scenario {s.name}: {self.paths:,} paths, seed {self.seed}, horizon "
            f"{s.horizon / 86400:g} d, step {s.step / 3600:g} h, exchange {s.exchange.name}",
            "",
            f"{'':<28}" + "".join(f"{mode:>22}" for mode in table.index),
        ]

        def fmt_p(mode: str, name: str) -> str:
            value, se = table.loc[mode, name], table.loc[mode, f"{name}_se"]
            return f"{100 * value:9.3f}% ± {100 * se:6.3f}%"

        def fmt_money(value: float) -> str:
            return f"{value:,.2f}" if np.isfinite(value) else "-"

        for label, name in (
            ("P(ruin)", "ruin_probability"),
            ("P(liquidated)", "liquidation_probability"),
        ):
            lines.append(f"{label:<28}" + "".join(f"{fmt_p(m, name):>22}" for m in table.index))
        for label, name in (
            ("expected final equity", "expected_final_equity"),
            ("expected loss", "expected_loss"),
            ("VaR 95%", "var_95"),
            ("CVaR 95%", "cvar_95"),
            ("median hours to liquidation", "median_hours_to_liquidation"),
        ):
            lines.append(
                f"{label:<28}"
                + "".join(f"{fmt_money(table.loc[m, name]):>22}" for m in table.index)
            )
        lines.append("")
        lines.append(
            f"ruin = equity <= {100 * s.ruin.equity_fraction:g}% of the {s.account.balance:,.0f}"
            " balance at any time; ± is one standard error"
        )
        if self._streamed is not None:
            accuracy = _accuracy(self._streamed.relative_accuracy)
            lines.append(
                "per-path results not kept (streamed run): VaR, CVaR and the median are from a"
                f" quantile sketch with relative accuracy {accuracy}"
            )
        if {"isolated", "cross"} <= set(table.index):
            diff = self.difference()
            d = diff.loc["ruin_probability"]
            lines.append(
                f"isolated - cross: P(ruin) {100 * d['difference']:+.3f}% ± {100 * d['se']:.3f}%,"
                f" P(liquidated) {100 * diff.loc['liquidation_probability', 'difference']:+.3f}%"
                f" ± {100 * diff.loc['liquidation_probability', 'se']:.3f}% (paired)"
            )
        return "\n".join(lines)


def _accuracy(value: float) -> str:
    """``1e-4`` rather than ``0.0001`` or ``1e-04``."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"
