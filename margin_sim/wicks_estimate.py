"""Flash-crash wicks found in candles: bars whose low is far below both open and close.

A wick in the scenario model (:class:`margin_sim.scenario.WickSpec`) is a transient drop of
depth ``d`` (fraction of the price) that recovers a fraction ``recovery`` of itself within
minutes. In candles it shows as a bar (or a short run of bars, the recovery window) whose low
lies far below both the open and the closing price, relative to the local volatility, while
the close is back up.

Detection, per bar ``t`` with recovery window of ``w`` bars (close taken at bar ``t+w-1``)::

    shadow  = ln(min(open_t, close_{t+w-1}) / low_t)  >= z * sigma_local_t
    depth   = 1 - low_t / open_t                       >= min_depth
    recovery = (close_{t+w-1} - low_t) / (open_t - low_t) >= min_recovery
    low_t is the lowest low of bars t-w+1 .. t+w-1 (one wick counted once)

``sigma_local_t`` is a robust local volatility per bar: 1.4826 x the median absolute
close-to-close log return over the previous ``vol_window`` bars (bars before t only, so the
wick does not inflate its own yardstick). Up-wicks are the mirror image on highs.

Rate and depth: the rate written to the scenario is the observed rate of wicks deeper than
``d0 = min_depth`` (per year of bars present) and the depth mean is the mean observed depth.
The scenario draws depths from an exponential with that mean starting at 0, whose tail
``exp(-d / mean)`` is heavier than the observed one above ``d0`` (``exp(-(d - d0)/theta)``,
``theta = mean(d - d0)`` the maximum-likelihood mean excess of a left-truncated
exponential, also reported): a deliberately conservative choice. Extrapolating the
exponential below ``d0`` instead (rate ``n/T exp(d0/theta)``) explodes when ``theta`` is
small, because shallow "wicks" are really diffusion. Standard errors: Poisson for the rate,
``sd/sqrt(n)`` for means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from margin_sim.data import Candles
from margin_sim.durations import SECONDS_PER_YEAR, parse_duration

__all__ = ["WickEstimate", "detect_wicks", "estimate_wicks"]


def _local_vol(close: pd.Series, consecutive: np.ndarray, window: int) -> np.ndarray:
    returns = np.log(close).diff().where(consecutive)
    scale = returns.abs().rolling(window, min_periods=max(5, window // 3)).median().shift(1)
    return 1.4826 * scale.to_numpy()


def detect_wicks(
    candles: Candles,
    *,
    direction: str = "down",
    z: float = 6.0,
    min_depth: float = 0.005,
    min_recovery: float = 0.5,
    recovery_window: str | float = "3min",
    vol_window: int = 60,
) -> pd.DataFrame:
    """Find wicks in candles.

    Parameters
    ----------
    candles : Candles
        Short bars (1m-5m); longer bars cannot tell a wick from a move.
    direction : {"down", "up"}
        ``down`` uses lows (long liquidations), ``up`` highs (short liquidations).
    z : float
        Minimum shadow in local standard deviations per bar.
    min_depth : float
        Minimum depth, fraction of the price (``d0``).
    min_recovery : float
        Minimum recovered fraction of the drop by the end of the recovery window.
    recovery_window : str or float
        Time the price has to recover (``"3min"``) or seconds; at least one bar.
    vol_window : int
        Bars in the local-volatility window.

    Returns
    -------
    pandas.DataFrame
        One row per wick, indexed by the bar-open time of the trough bar: ``depth``
        (fraction), ``recovery`` (fraction, clipped to [0, 1]), ``shadow_sigmas``.
    """
    frame = candles.frame
    seconds = (
        parse_duration(recovery_window)
        if isinstance(recovery_window, str)
        else float(recovery_window)
    )
    w = max(1, round(seconds / candles.interval_seconds))
    index = frame.index
    consecutive = np.r_[False, np.diff(index.asi8) == candles.interval.value]
    sign = 1.0 if direction == "down" else -1.0
    if direction not in ("down", "up"):
        raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
    # mirror up-wicks into down-wicks: log prices negated
    open_ = frame["open"].to_numpy() ** sign
    close = frame["close"].to_numpy() ** sign
    extreme = (frame["low"] if sign > 0 else frame["high"]).to_numpy() ** sign
    n = len(frame)
    later = np.minimum(np.arange(n) + w - 1, n - 1)
    # the window must be contiguous (no gap or halt inside)
    run_ok = np.ones(n, dtype=bool)
    if w > 1:
        breaks = np.cumsum(~consecutive)
        run_ok = breaks[later] == breaks
    close_after = close[later]
    sigma = _local_vol(pd.Series(close, index=index), consecutive, vol_window)
    with np.errstate(invalid="ignore", divide="ignore"):
        shadow = np.log(np.minimum(open_, close_after) / extreme)
        depth = 1.0 - extreme / open_
        recovery = np.clip((close_after - extreme) / (open_ - extreme), 0.0, 1.0)
        sigmas = shadow / sigma
    lowest = pd.Series(extreme).rolling(2 * w - 1, center=True, min_periods=1).min().to_numpy()
    is_wick = (
        run_ok
        & np.isfinite(sigmas)
        & (sigmas >= z)
        & (depth >= min_depth)
        & (recovery >= min_recovery)
        & (extreme <= lowest)
    )
    return pd.DataFrame(
        {"depth": depth[is_wick], "recovery": recovery[is_wick], "shadow_sigmas": sigmas[is_wick]},
        index=index[is_wick],
    )


@dataclass(frozen=True)
class WickEstimate:
    """Wick statistics of one asset and direction.

    Attributes
    ----------
    count : int
        Wicks found (depth >= ``min_depth``).
    years : float
        Time covered by the bars, years.
    per_year, per_year_se : float
        Rate of wicks deeper than ``min_depth``, per year, and its SE (Poisson).
    depth_mean, depth_mean_se : float
        Mean depth of those wicks (fraction of the price) and its SE.
    depth_excess_mean, depth_excess_mean_se : float
        Mean depth beyond ``min_depth`` (exponential-tail scale ``theta``) and its SE.
    depth_max_seen : float
        Deepest wick found.
    recovery, recovery_se : float
        Mean recovered fraction and its SE.
    min_depth : float
        Detection threshold ``d0``.
    events : pandas.DataFrame
        The wicks, as returned by :func:`detect_wicks`.
    """

    count: int
    years: float
    per_year: float
    per_year_se: float
    depth_mean: float
    depth_mean_se: float
    depth_excess_mean: float
    depth_excess_mean_se: float
    depth_max_seen: float
    recovery: float
    recovery_se: float
    min_depth: float
    events: pd.DataFrame

    def to_spec(self, *, duration: float, depth_max: float = 0.5) -> dict[str, float | str]:
        """The scenario's ``wicks`` mapping (``mark_pass_through`` = 1: last-price candles)."""
        from margin_sim.durations import format_duration

        mean = min(max(self.depth_mean, 1e-4), 0.9)
        cap = min(0.95, max(depth_max, mean, 1.5 * self.depth_max_seen))
        return {
            "per_year": round(float(self.per_year), 4),
            "depth_mean": round(float(mean), 6),
            "depth_max": round(float(cap), 4),
            "recovery": round(float(min(max(self.recovery, 0.0), 1.0)), 4),
            "mark_pass_through": 1.0,
            "duration": format_duration(duration),
        }


def estimate_wicks(
    candles: Candles,
    *,
    direction: str = "down",
    z: float = 6.0,
    min_depth: float = 0.005,
    min_recovery: float = 0.5,
    recovery_window: str | float = "3min",
    vol_window: int = 60,
) -> WickEstimate:
    """Wick rate, depth and recovery from candles (see the module docstring).

    Parameters are those of :func:`detect_wicks`.

    Returns
    -------
    WickEstimate
        With no wick found, the rate is 0 and the depth mean falls back to ``min_depth``.
        Events less than one bar from a gap are still counted; halts were dropped on loading.
    """
    events = detect_wicks(
        candles,
        direction=direction,
        z=z,
        min_depth=min_depth,
        min_recovery=min_recovery,
        recovery_window=recovery_window,
        vol_window=vol_window,
    )
    years = len(candles.frame) * candles.interval_seconds / SECONDS_PER_YEAR
    n = len(events)
    if n == 0:
        return WickEstimate(
            0,
            years,
            0.0,
            math.nan,
            min_depth,
            math.nan,
            0.0,
            math.nan,
            0.0,
            1.0,
            math.nan,
            min_depth,
            events,
        )
    depths = events["depth"].to_numpy()
    spread = float(np.std(depths, ddof=1)) if n > 1 else math.nan
    recov = events["recovery"].to_numpy()
    recov_se = float(np.std(recov, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return WickEstimate(
        count=n,
        years=years,
        per_year=n / years,
        per_year_se=math.sqrt(n) / years,
        depth_mean=float(np.mean(depths)),
        depth_mean_se=spread / math.sqrt(n),
        depth_excess_mean=float(np.mean(depths - min_depth)),
        depth_excess_mean_se=float(np.mean(depths - min_depth)) / math.sqrt(n),
        depth_max_seen=float(events["depth"].max()),
        recovery=float(np.mean(recov)),
        recovery_se=recov_se,
        min_depth=min_depth,
        events=events,
    )
