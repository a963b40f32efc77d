"""Estimate a scenario's ``market`` block from real candles.

Per asset, at a chosen bar size (the candles are resampled up when asked):

- diffusion volatility, drift, jump rate and jump-size law by maximum likelihood on the
  close-to-close log returns (:mod:`margin_sim.jump_mle`: Merton or Kou, standard errors from
  the numerical Hessian);
- wick rate, depth and recovery from the native short bars (:mod:`margin_sim.wicks_estimate`),
  when they are 5 minutes or shorter;

and for every pair of assets the correlation of their aligned bar returns, with bars where
either return is beyond 5 robust standard deviations left out (the scenario's correlation is
that of the DIFFUSION parts; jumps would otherwise dominate it).

Units written: ``vol`` and ``drift`` annualised (365-day year), ``per_year`` rates, jump sizes in
log-price units, wick depths as fractions. ``drift`` is written as 0 unless asked: a month of
data estimates it with a standard error of order 100 % a year, and a fitted bull-run drift
would bias every liquidation probability; the estimate is in the report either way.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from margin_sim.data import Candles, load_candles
from margin_sim.durations import SECONDS_PER_YEAR, format_duration, parse_duration
from margin_sim.errors import DataError
from margin_sim.jump_mle import JumpFit, JumpModelName, fit_jump_diffusion
from margin_sim.wicks_estimate import WickEstimate, estimate_wicks

__all__ = [
    "AssetCalibration",
    "Calibration",
    "asset_block",
    "calibrate_asset",
    "calibrate_market",
    "return_correlation",
    "write_market_yaml",
]

#: Longest native bar on which wicks are measured, seconds.
WICK_MAX_BAR = 300.0


@dataclass(frozen=True)
class AssetCalibration:
    """Fit of one asset.

    Attributes
    ----------
    name : str
    bar_seconds : float
        Bar length of the returns fitted, seconds.
    fit : JumpFit
        The return model, per-bar units.
    wicks : WickEstimate or None
        None when the native bars are longer than :data:`WICK_MAX_BAR`.
    price : float
        Last close, quote currency.
    source : str
    start, end : pandas.Timestamp
        Range of the data used.
    """

    name: str
    bar_seconds: float
    fit: JumpFit
    wicks: WickEstimate | None
    price: float
    source: str
    start: pd.Timestamp
    end: pd.Timestamp
    wick_duration: float = 180.0
    returns: pd.Series = field(default_factory=lambda: pd.Series(dtype=float), repr=False)

    @property
    def dt_years(self) -> float:
        """Bar length, years."""
        return self.bar_seconds / SECONDS_PER_YEAR

    def _delta(self, func: Any) -> tuple[float, float]:
        """Value and delta-method SE of a function of the per-bar parameters."""
        theta = self.fit.estimate
        value = float(func(theta))
        cov = self.fit.covariance
        if not np.all(np.isfinite(cov)):
            return value, math.nan
        grad = np.empty(theta.size)
        for i in range(theta.size):
            h = 1e-6 * max(abs(theta[i]), 1e-8)
            up, down = theta.copy(), theta.copy()
            up[i] += h
            down[i] -= h
            grad[i] = (func(up) - func(down)) / (2 * h)
        pinned = [self.fit.names.index(name) for name in self.fit.at_bound]
        if pinned and np.any(grad[pinned] != 0.0):
            return value, math.nan  # depends on an estimate stuck on its bound
        return value, float(math.sqrt(max(grad @ cov @ grad, 0.0)))

    def estimates(self) -> pd.DataFrame:
        """Annualised estimates with standard errors: ``parameter, estimate, se, unit``."""
        dt = self.dt_years
        names = self.fit.names
        idx = {n: i for i, n in enumerate(names)}
        rows: list[tuple[str, float, float, str]] = []

        def add(label: str, func: Any, unit: str) -> None:
            value, se = self._delta(func)
            rows.append((label, value, se, unit))

        add("vol", lambda t: t[idx["sigma"]] / math.sqrt(dt), "per sqrt(year)")
        fit = self.fit

        def drift(t: np.ndarray) -> float:
            clone = JumpFit(
                fit.model, names, t, fit.covariance, 0.0, fit.n, True, fit.max_jumps, fit.at_bound
            )
            return clone.log_mgf_one() / dt

        add("drift", drift, "per year")
        if fit.model == "merton":
            add("jumps.per_year", lambda t: t[idx["lam"]] / dt, "per year")
            add("jumps.mean", lambda t: t[idx["m"]], "log units")
            add("jumps.std", lambda t: t[idx["s"]], "log units")
        elif fit.model == "kou":
            add("jumps.per_year", lambda t: t[idx["lam"]] / dt, "per year")
            add("jumps.p_up", lambda t: t[idx["p"]], "probability")
            add("jumps.up_mean", lambda t: 1.0 / t[idx["eta1"]], "log units")
            add("jumps.down_mean", lambda t: 1.0 / t[idx["eta2"]], "log units")
        if self.wicks is not None:
            w = self.wicks
            rows += [
                ("wicks.per_year", w.per_year, w.per_year_se, "per year"),
                ("wicks.depth_mean", w.depth_mean, w.depth_mean_se, "fraction"),
                (
                    "wicks.depth_excess_mean",
                    w.depth_excess_mean,
                    w.depth_excess_mean_se,
                    "fraction beyond min_depth",
                ),
                ("wicks.recovery", w.recovery, w.recovery_se, "fraction"),
                ("wicks.count", float(w.count), math.nan, "events"),
            ]
        frame = pd.DataFrame(rows, columns=["parameter", "estimate", "se", "unit"])
        frame.insert(0, "asset", self.name)
        return frame


def asset_block(
    calibration: AssetCalibration, *, drift: bool = False, jumps: bool = True, wicks: bool = True
) -> dict[str, Any]:
    """The scenario ``market.assets.<name>`` mapping of one calibrated asset.

    Parameters
    ----------
    calibration : AssetCalibration
    drift : bool
        Write the estimated drift instead of 0.
    jumps, wicks : bool
        Include the jump and wick parts (switch off for a diffusion-only model).
    """
    est = calibration.estimates().set_index("parameter")["estimate"]
    block: dict[str, Any] = {
        "price": float(f"{calibration.price:.8g}"),
        "vol": round(float(est["vol"]), 6),
        "drift": round(float(est["drift"]), 6) if drift else 0.0,
    }
    fit = calibration.fit
    if jumps and fit.model == "merton":
        block["jumps"] = {
            "model": "merton",
            "per_year": round(float(est["jumps.per_year"]), 4),
            "mean": round(float(est["jumps.mean"]), 6),
            "std": round(float(est["jumps.std"]), 6),
        }
    elif jumps and fit.model == "kou":
        block["jumps"] = {
            "model": "kou",
            "per_year": round(float(est["jumps.per_year"]), 4),
            "p_up": round(float(est["jumps.p_up"]), 6),
            "up_mean": round(min(float(est["jumps.up_mean"]), 0.99), 6),
            "down_mean": round(float(est["jumps.down_mean"]), 6),
        }
    if wicks and calibration.wicks is not None and calibration.wicks.count > 0:
        block["wicks"] = calibration.wicks.to_spec(duration=calibration.wick_duration)
    return block


def calibrate_asset(
    candles: Candles,
    *,
    name: str,
    bar: str | float = "1h",
    jumps: JumpModelName = "merton",
    max_jumps: int = 4,
    wick_options: Mapping[str, Any] | None = None,
    start: JumpFit | None = None,
) -> AssetCalibration:
    """Calibrate one asset from its candles.

    Parameters
    ----------
    candles : Candles
    name : str
        Asset name in the scenario (``BTC``).
    bar : str or float
        Bar length of the returns fitted (``"1h"``) or seconds; at least the data's bar.
    jumps : {"merton", "kou", "none"}
    max_jumps : int
        Poisson truncation of the likelihood.
    wick_options : mapping, optional
        Keyword arguments of :func:`margin_sim.wicks_estimate.estimate_wicks`.
    start : JumpFit, optional
        Warm start for the optimiser (rolling refits).

    Raises
    ------
    DataError
        If the bar is not a multiple of the data's bar, or too few returns remain.
    """
    seconds = parse_duration(bar) if isinstance(bar, str) else float(bar)
    coarse = candles.resample(seconds)
    returns = coarse.log_returns()
    fit = fit_jump_diffusion(returns.to_numpy(), jumps, max_jumps=max_jumps, start=start)
    wick_estimate = None
    options = dict(wick_options or {})
    if candles.interval_seconds <= WICK_MAX_BAR:
        wick_estimate = estimate_wicks(candles, **options)
    window = options.get("recovery_window", "3min")
    wick_seconds = parse_duration(window) if isinstance(window, str) else float(window)
    return AssetCalibration(
        name=name,
        bar_seconds=seconds,
        fit=fit,
        wicks=wick_estimate,
        price=float(candles.frame["close"].iloc[-1]),
        source=candles.source,
        start=candles.start,
        end=candles.end,
        wick_duration=max(wick_seconds, candles.interval_seconds),
        returns=returns,
    )


def return_correlation(
    first: Candles, second: Candles, *, bar: str | float = "1h", clip_sigmas: float = 5.0
) -> tuple[float, float, int]:
    """Correlation of two assets' aligned bar log returns, outliers left out.

    Parameters
    ----------
    first, second : Candles
    bar : str or float
        Common bar length.
    clip_sigmas : float
        Bars where either return is beyond this many robust standard deviations from its
        median are dropped (jumps); ``inf`` keeps all.

    Returns
    -------
    correlation, se, n : float, float, int
        Pearson correlation, its large-sample SE ``(1 - rho^2)/sqrt(n)``, and bars used.

    Raises
    ------
    DataError
        If fewer than 30 aligned returns remain.
    """
    seconds = parse_duration(bar) if isinstance(bar, str) else float(bar)
    a = first.resample(seconds).log_returns()
    b = second.resample(seconds).log_returns()
    joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    keep = np.ones(len(joined), dtype=bool)
    for column in ("a", "b"):
        x = joined[column].to_numpy()
        centre = np.median(x)
        scale = 1.4826 * np.median(np.abs(x - centre))
        if scale > 0 and math.isfinite(clip_sigmas):
            keep &= np.abs(x - centre) <= clip_sigmas * scale
    joined = joined[keep]
    n = len(joined)
    if n < 30:
        raise DataError(
            f"correlation: only {n} aligned {format_duration(seconds)} returns of "
            f"{first.source} and {second.source} (need 30; do the files overlap in time?)"
        )
    rho = float(np.corrcoef(joined["a"], joined["b"])[0, 1])
    return rho, (1 - rho**2) / math.sqrt(n), n


@dataclass(frozen=True)
class Calibration:
    """A calibrated market: per-asset fits and pairwise correlations.

    Attributes
    ----------
    assets : dict of str to AssetCalibration
    correlations : dict of str to tuple (correlation, se, n)
        By pair name ``"BTC-ETH"``.
    """

    assets: dict[str, AssetCalibration]
    correlations: dict[str, tuple[float, float, int]]

    def market(
        self, *, drift: bool = False, jumps: bool = True, wicks: bool = True
    ) -> dict[str, Any]:
        """The scenario ``market`` mapping (validates with :class:`margin_sim.scenario.Market`)."""
        out: dict[str, Any] = {
            "assets": {
                name: asset_block(cal, drift=drift, jumps=jumps, wicks=wicks)
                for name, cal in self.assets.items()
            }
        }
        if self.correlations:
            out["correlation"] = {
                pair: round(value[0], 4) for pair, value in self.correlations.items()
            }
        return out

    def report(self) -> pd.DataFrame:
        """Every estimate with its standard error: ``asset, parameter, estimate, se, unit``."""
        frames = [cal.estimates() for cal in self.assets.values()]
        rows = [
            {
                "asset": pair,
                "parameter": "correlation",
                "estimate": rho,
                "se": se,
                "unit": f"{n} aligned returns",
            }
            for pair, (rho, se, n) in self.correlations.items()
        ]
        if rows:
            frames.append(pd.DataFrame(rows))
        return pd.concat(frames, ignore_index=True)

    def describe(self) -> str:
        """Readable text: data used, fit quality and the estimates with SEs."""
        lines = []
        for cal in self.assets.values():
            fit = cal.fit
            lines.append(
                f"{cal.name}: {cal.source}, {cal.start:%Y-%m-%d %H:%M} -> {cal.end:%Y-%m-%d %H:%M}"
                f" UTC, {fit.n} {format_duration(cal.bar_seconds)} returns, {fit.model} fit, "
                f"log L {fit.log_likelihood:.1f}{'' if fit.converged else ' (NOT converged)'}"
            )
            if fit.at_bound:
                lines.append(
                    f"  note: {', '.join(fit.at_bound)} on the optimiser's bound: a limit, "
                    "not an estimate (no standard error); try another bar size or model"
                )
        table = self.report()
        width = max(len(p) for p in table["parameter"])
        for row in table.itertuples():
            se = "" if not math.isfinite(row.se) else f" ± {row.se:.4g}"
            lines.append(
                f"  {row.asset:<8} {row.parameter:<{width}} {row.estimate:>12.6g}{se}  [{row.unit}]"
            )
        return "\n".join(lines)


def calibrate_market(
    data: Mapping[str, Candles | str | Path] | Sequence[str | Path],
    *,
    bar: str | float = "1h",
    jumps: JumpModelName = "merton",
    max_jumps: int = 4,
    wick_options: Mapping[str, Any] | None = None,
) -> Calibration:
    """Calibrate a market of one or more assets.

    Parameters
    ----------
    data : mapping of asset name to Candles or path, or a sequence of paths
        With a sequence, asset names come from the file names (``BTCUSDT_...`` -> ``BTC``).
    bar, jumps, max_jumps, wick_options
        As in :func:`calibrate_asset`.

    Returns
    -------
    Calibration

    Raises
    ------
    DataError
        If two files map to the same asset name, or a file cannot be used.
    """
    from margin_sim.data import asset_from_filename

    if isinstance(data, Mapping):
        items = list(data.items())
    else:
        items = [(asset_from_filename(p), p) for p in data]
    seen: set[str] = set()
    candles: dict[str, Candles] = {}
    for name, source in items:
        if name in seen:
            raise DataError(f"{name}: two data sets for the same asset; give one per asset")
        seen.add(name)
        candles[name] = source if isinstance(source, Candles) else load_candles(source)
    assets = {
        name: calibrate_asset(
            c, name=name, bar=bar, jumps=jumps, max_jumps=max_jumps, wick_options=wick_options
        )
        for name, c in candles.items()
    }
    names = list(candles)
    correlations = {
        f"{a}-{b}": return_correlation(candles[a], candles[b], bar=bar)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    return Calibration(assets, correlations)


def write_market_yaml(calibration: Calibration, path: str | Path, **options: Any) -> Path:
    """Write ``{"market": ...}`` as YAML, atomically (temporary file, then rename).

    Parameters
    ----------
    calibration : Calibration
    path : str or Path
    **options
        Passed to :meth:`Calibration.market` (``drift``, ``jumps``, ``wicks``).
    """
    path = Path(path)
    header = ["# Market block calibrated by `margin-sim calibrate` (estimates ± SE below)."]
    header += [f"#   {line}" for line in calibration.describe().splitlines()]
    text = (
        "\n".join(header)
        + "\n"
        + yaml.safe_dump({"market": calibration.market(**options)}, sort_keys=False)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
