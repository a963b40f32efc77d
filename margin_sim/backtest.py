"""Out-of-sample backtest of predicted isolated liquidation probabilities on real candles.

For every entry time (each hour by default) of a real short-bar series, a hypothetical isolated
position (long or short, given leverage, the venue's rules) is opened at the close of the bar
ending at that time. REALISED: whether the real path reached its liquidation price within the
horizon, judged on the real lows (longs) or highs (shorts) of the bars inside the horizon.
PREDICTED: the model's liquidation probability for the same position, with market parameters
calibrated only on data BEFORE the scoring window (refits every ``refit_every``, on the
preceding ``history`` or on everything before when ``history`` is None).

Simplification: with the position size fixed (one maintenance tier), the isolated liquidation
price is a fixed fraction of the entry price, so the predicted probability depends only on
(side, leverage, horizon, market parameters), never on the price level. One model evaluation
per (refit, side, leverage, model variant) is therefore enough.

Model variants scored: ``full`` (jumps and wicks as calibrated), ``no_wicks``, ``diffusion``
(the same fit with jumps and wicks switched off: how much risk the diffusion part alone
explains), all evaluated by :func:`margin_sim.engine.simulate`; and ``gbm`` (a normal model
fitted on its own, i.e. the total variance as a diffusion), by the closed form
:func:`margin_sim.reference.gbm_first_passage`.

Caveats: liquidation is triggered on the MARK price, while candles are last (or spot) prices;
using lows/highs is conservative. Funding is set to 0 in both the realised check and the model.
Entries an hour apart with a 24 h horizon overlap: the Wilson intervals use an effective sample
size ``n * spacing / horizon`` so that they are not falsely narrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from margin_sim.calibrate import AssetCalibration, asset_block, calibrate_asset
from margin_sim.data import Candles
from margin_sim.durations import SECONDS_PER_YEAR, format_duration, parse_duration
from margin_sim.errors import DataError

__all__ = [
    "BUCKET_EDGES",
    "MODEL_VARIANTS",
    "BacktestResult",
    "brier_score",
    "realised_liquidations",
    "reliability_table",
    "run_backtest",
    "wilson_interval",
]

#: Predicted-probability buckets of the reliability table.
BUCKET_EDGES = (0.0, 0.001, 0.01, 0.03, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
MODEL_VARIANTS = ("full", "no_wicks", "diffusion", "gbm")


def _seconds(value: str | float) -> float:
    return parse_duration(value) if isinstance(value, str) else float(value)


def wilson_interval(successes: Any, trials: Any, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (Wilson 1927), vectorised.

    Parameters
    ----------
    successes, trials : array_like
        Counts; ``trials`` may be fractional (an effective sample size).
    z : float
        Normal quantile (1.96 for 95 %).
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def brier_score(predicted: Any, realised: Any) -> float:
    """Mean squared difference between predicted probabilities and 0/1 outcomes."""
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(realised, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def _exchange_mapping(exchange: str | dict[str, Any]) -> dict[str, Any]:
    from margin_sim.scenario import load_exchange

    data = dict(load_exchange(exchange)) if isinstance(exchange, str) else dict(exchange)
    data["funding"] = {"interval": "8h", "rate": 0.0}
    return data


def realised_liquidations(
    candles: Candles,
    *,
    asset: str,
    side: str,
    leverage: float,
    horizon: str | float = "24h",
    entry_every: str | float = "1h",
    margin: float = 1000.0,
    exchange: str | dict[str, Any] = "binance-usdm",
    min_coverage: float = 0.99,
) -> pd.DataFrame:
    """Did the real path liquidate a position opened at each entry time?

    Parameters
    ----------
    candles : Candles
        Short bars (1m); entry at the close of the bar ending at each multiple of
        ``entry_every``.
    asset : str
        Asset name in the exchange's tier tables.
    side : {"long", "short"}
    leverage : float
    horizon, entry_every : str or float
        Durations (text or seconds).
    margin : float
        Isolated margin, quote currency (sets the tier through the notional).
    exchange : str or mapping
        Exchange rule set (name in ``params/exchanges`` or a mapping).
    min_coverage : float
        Entries whose horizon has fewer than this fraction of its bars are skipped.

    Returns
    -------
    pandas.DataFrame
        Indexed by entry time: ``entry_price``, ``liquidation_price``, ``extreme`` (lowest low
        or highest high inside the horizon), ``liquidated`` (bool).
    """
    from margin_sim.exchange import ExchangeRules
    from margin_sim.scenario import ExchangeSpec

    if side not in ("long", "short"):
        raise DataError(f"side: must be 'long' or 'short', got {side!r}")
    rules = ExchangeRules(ExchangeSpec.model_validate(_exchange_mapping(exchange)))
    bar = candles.interval
    h_bars = round(_seconds(horizon) / candles.interval_seconds)
    every = pd.Timedelta(seconds=_seconds(entry_every))
    frame = candles.frame
    grid = pd.date_range(frame.index[0], frame.index[-1], freq=bar)
    full = frame.reindex(grid)
    column = "low" if side == "long" else "high"
    values = full[column]
    rolled = values.rolling(h_bars, min_periods=max(1, math.ceil(min_coverage * h_bars)))
    extreme = (rolled.min() if side == "long" else rolled.max()).shift(-h_bars)
    close = full["close"]
    entry_open = grid[((grid + bar).as_unit("ns").asi8 % every.value) == 0]
    entry_close_times = entry_open + bar
    prices = close.reindex(entry_open).to_numpy()
    ext = extreme.reindex(entry_open).to_numpy()
    ok = np.isfinite(prices) & np.isfinite(ext)
    prices, ext, times = prices[ok], ext[ok], entry_close_times[ok]
    sign = 1 if side == "long" else -1
    notional = margin * leverage
    quantity = notional / prices
    lp = rules.isolated_liquidation_price(asset, sign, quantity, prices, margin)
    liquidated = np.where(sign > 0, ext <= lp, ext >= lp) & np.isfinite(lp)
    return pd.DataFrame(
        {"entry_price": prices, "liquidation_price": lp, "extreme": ext, "liquidated": liquidated},
        index=pd.DatetimeIndex(times, name="entry_time"),
    )


def _model_probability(
    calibration: AssetCalibration,
    variant: str,
    *,
    asset: str,
    side: str,
    leverage: float,
    horizon: float,
    step: float,
    margin: float,
    exchange: dict[str, Any],
    paths: int,
    seed: int,
) -> float:
    from margin_sim.engine import simulate
    from margin_sim.scenario import load_scenario

    block = asset_block(
        calibration, jumps=variant == "full" or variant == "no_wicks", wicks=variant == "full"
    )
    scenario = load_scenario(
        {
            "name": f"backtest-{asset}-{side}-{leverage:g}x-{variant}",
            "seed": seed,
            "paths": paths,
            "horizon": format_duration(horizon),
            "step": format_duration(step),
            "market": {"assets": {asset: block}},
            "exchange": exchange,
            "account": {
                "balance": margin,
                "positions": [
                    {"asset": asset, "side": side, "leverage": leverage, "margin": margin}
                ],
            },
            "modes": ["isolated"],
        }
    )
    summary = simulate(scenario, progress=False).summary()
    return float(summary.loc["isolated", "liquidation_probability"])


def _gbm_probability(
    returns: pd.Series, bar_seconds: float, *, ratio: float, side: str, horizon: float
) -> float:
    from margin_sim.reference import gbm_first_passage

    vol = float(np.std(returns.to_numpy(), ddof=1)) / math.sqrt(bar_seconds / SECONDS_PER_YEAR)
    return float(
        gbm_first_passage(
            ratio,
            vol,
            horizon / SECONDS_PER_YEAR,
            0.0,
            direction="down" if side == "long" else "up",
        )
    )


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of :func:`run_backtest`.

    Attributes
    ----------
    records : pandas.DataFrame
        One row per (entry time, side, leverage): ``side, leverage, refit, entry_price,
        liquidation_price, liquidated`` and one ``p_<variant>`` column per model variant.
    refits : pandas.DataFrame
        One row per refit: the time, the data window, the fitted parameters (annualised).
    horizon, entry_every : float
        Seconds.
    variants : tuple of str
    """

    records: pd.DataFrame
    refits: pd.DataFrame
    horizon: float
    entry_every: float
    variants: tuple[str, ...]

    @property
    def overlap(self) -> float:
        """Entries per independent horizon (>= 1): divides n in the Wilson intervals."""
        return max(1.0, self.horizon / self.entry_every)

    def scores(self) -> pd.DataFrame:
        """Brier score, mean predicted and realised frequency per variant, side and leverage."""
        rows = []
        groups = [("all", "all", self.records)] + [
            (side, lev, g) for (side, lev), g in self.records.groupby(["side", "leverage"])
        ]
        for side, lev, group in groups:
            y = group["liquidated"].to_numpy(dtype=float)
            climatology = brier_score(np.full(y.size, y.mean()), y) if y.size else math.nan
            for variant in self.variants:
                p = group[f"p_{variant}"].to_numpy()
                rows.append(
                    {
                        "side": side,
                        "leverage": lev,
                        "variant": variant,
                        "n": y.size,
                        "brier": brier_score(p, y),
                        "brier_climatology": climatology,
                        "mean_predicted": float(p.mean()),
                        "realised": float(y.mean()),
                    }
                )
        return pd.DataFrame(rows)

    def reliability(self, variant: str = "full") -> pd.DataFrame:
        """Calibration by predicted-probability bucket, see :func:`reliability_table`."""
        return reliability_table(
            self.records[f"p_{variant}"], self.records["liquidated"], overlap=self.overlap
        )


def reliability_table(
    predicted: Any, realised: Any, *, edges: Sequence[float] = BUCKET_EDGES, overlap: float = 1.0
) -> pd.DataFrame:
    """Predicted versus realised frequency by bucket, with 95 % Wilson intervals.

    Parameters
    ----------
    predicted, realised : array_like
        Probabilities and 0/1 outcomes.
    edges : sequence of float
        Bucket edges; a probability p falls in ``[edges[i], edges[i+1])`` (the last closed).
    overlap : float
        Overlap factor of the outcomes; intervals use ``n / overlap`` trials.

    Returns
    -------
    pandas.DataFrame
        ``bucket, n, mean_predicted, realised, realised_low, realised_high``; empty buckets
        are left out.
    """
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(realised, dtype=np.float64)
    which = np.clip(np.searchsorted(np.asarray(edges), p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        mask = which == b
        n = int(mask.sum())
        if n == 0:
            continue
        k = float(y[mask].sum())
        lo, hi = wilson_interval(k / overlap, n / overlap)
        rows.append(
            {
                "bucket": f"[{edges[b]:g}, {edges[b + 1]:g})",
                "n": n,
                "mean_predicted": float(p[mask].mean()),
                "realised": k / n,
                "realised_low": float(lo),
                "realised_high": float(hi),
            }
        )
    return pd.DataFrame(rows)


def run_backtest(
    candles: Candles,
    *,
    asset: str,
    leverages: Sequence[float] = (10.0, 25.0),
    sides: Sequence[str] = ("long", "short"),
    horizon: str | float = "24h",
    entry_every: str | float = "1h",
    refit_every: str | float = "1d",
    history: str | float | None = "14d",
    min_history: str | float = "7d",
    bar: str | float = "1h",
    jumps: str = "merton",
    exchange: str | dict[str, Any] = "binance-usdm",
    margin: float = 1000.0,
    paths: int = 2000,
    step: str | float = "1h",
    seed: int = 0,
    variants: Sequence[str] = MODEL_VARIANTS,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Score predicted isolated liquidation probabilities against the real path, out of sample.

    Parameters
    ----------
    candles : Candles
        A real short-bar (1m) series of one asset.
    asset : str
        Asset name (tier table of the exchange).
    leverages, sides
        Positions scored at every entry.
    horizon, entry_every, refit_every : str or float
        Durations: liquidation horizon, spacing of entries, spacing of refits.
    history : str or float or None
        Length of the fitting window before each refit; None for everything before.
    min_history : str or float
        No entry is scored before this much data precedes the first refit.
    bar : str or float
        Bar of the fitted returns.
    jumps : {"merton", "kou"}
    exchange : str or mapping
        Venue rules; funding is set to 0.
    margin : float
        Isolated margin, quote currency.
    paths, step, seed
        Monte Carlo settings of each model evaluation (same seed at every refit: common
        random numbers across refits).
    variants : sequence of str
        Subset of :data:`MODEL_VARIANTS`.
    progress : callable, optional
        Called with a line of text after each refit.

    Returns
    -------
    BacktestResult

    Raises
    ------
    DataError
        If no refit window has enough history.
    """
    unknown = set(variants) - set(MODEL_VARIANTS)
    if unknown:
        raise DataError(f"variants: unknown {sorted(unknown)} (known: {list(MODEL_VARIANTS)})")
    horizon_s = _seconds(horizon)
    step_s = min(_seconds(step), horizon_s)
    refit = pd.Timedelta(seconds=_seconds(refit_every))
    history_td = None if history is None else pd.Timedelta(seconds=_seconds(history))
    first = candles.start + pd.Timedelta(seconds=_seconds(min_history))
    refit_times = pd.date_range(first.ceil(refit), candles.end, freq=refit)
    if len(refit_times) == 0:
        raise DataError(
            f"{candles.source}: shorter than min_history {format_duration(_seconds(min_history))}"
        )
    exchange_map = _exchange_mapping(exchange)
    realised = {
        (side, float(lev)): realised_liquidations(
            candles,
            asset=asset,
            side=side,
            leverage=lev,
            horizon=horizon_s,
            entry_every=entry_every,
            margin=margin,
            exchange=exchange_map,
        )
        for side in sides
        for lev in leverages
    }
    frames = []
    refit_rows = []
    previous = None
    for refit_time in refit_times:
        window_start = None if history_td is None else refit_time - history_td
        fit_data = candles.slice(window_start, refit_time)
        calibration = calibrate_asset(
            fit_data,
            name=asset,
            bar=bar,
            jumps=jumps,
            start=previous,  # type: ignore[arg-type]
        )
        previous = calibration.fit
        est = calibration.estimates().set_index("parameter")["estimate"].to_dict()
        refit_rows.append({"refit": refit_time, "data_start": fit_data.start, **est})
        for (side, lev), table in realised.items():
            scored = table[(table.index >= refit_time) & (table.index < refit_time + refit)]
            if scored.empty:
                continue
            out = scored.copy()
            out.insert(0, "leverage", lev)
            out.insert(0, "side", side)
            out["refit"] = refit_time
            ratio = float(np.median(scored["liquidation_price"] / scored["entry_price"]))
            for variant in variants:
                if variant == "gbm":
                    prob = _gbm_probability(
                        calibration.returns,
                        calibration.bar_seconds,
                        ratio=ratio,
                        side=side,
                        horizon=horizon_s,
                    )
                else:
                    prob = _model_probability(
                        calibration,
                        variant,
                        asset=asset,
                        side=side,
                        leverage=lev,
                        horizon=horizon_s,
                        step=step_s,
                        margin=margin,
                        exchange=exchange_map,
                        paths=paths,
                        seed=seed,
                    )
                out[f"p_{variant}"] = prob
            frames.append(out)
        if progress is not None:
            progress(f"refit {refit_time:%Y-%m-%d %H:%M}: vol {est['vol']:.3f}")
    if not frames:
        raise DataError(f"{candles.source}: no entry could be scored (series too short?)")
    records = pd.concat(frames).reset_index()
    return BacktestResult(
        records=records,
        refits=pd.DataFrame(refit_rows),
        horizon=horizon_s,
        entry_every=_seconds(entry_every),
        variants=tuple(variants),
    )
