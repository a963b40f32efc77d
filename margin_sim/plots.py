"""Plotly figure builders shared by the notebooks, the explorer widgets and the reports.

Every builder is a plain function from results (pandas frames, mappings) to a
``plotly.graph_objects.Figure``; none of them runs a simulation. Each figure carries its
name in ``layout.meta["figure"]`` (``"sample_paths"``, ``"final_equity"``, ``"survival"``,
``"probability_vs_leverage"``, ``"summary_table"``) so a report's figures can be found again.

Colours and trace order are stable for a given input shape, so the explorer can copy a new
figure's data into a ``FigureWidget`` in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from margin_sim.scenario import Scenario

__all__ = [
    "MODE_COLORS",
    "SUMMARY_COLUMNS",
    "coarsen_bars",
    "final_equity_figure",
    "initial_liquidation_prices",
    "probability_vs_leverage_figure",
    "sample_paths_figure",
    "summary_table_figure",
    "survival_figure",
]

#: Line colour of each margin mode.
MODE_COLORS: dict[str, str] = {"isolated": "#1f77b4", "cross": "#d62728"}

#: Summary columns shown in :func:`summary_table_figure`: (column, header, d3 number format).
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("liquidation_probability", "P(liquidation)", ".4f"),
    ("liquidation_probability_se", "± SE", ".4f"),
    ("ruin_probability", "P(ruin)", ".4f"),
    ("ruin_probability_se", "± SE", ".4f"),
    ("expected_final_equity", "E[final equity]", ",.2f"),
    ("expected_loss", "E[loss]", ",.2f"),
    ("var_95", "VaR 95%", ",.2f"),
    ("cvar_95", "CVaR 95%", ",.2f"),
    ("median_hours_to_liquidation", "median h to liq.", ",.1f"),
)

# sample paths avoid the modes' blue and red, so a liquidation line never looks like a path
_PATH_COLORS = ("#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
_Z95 = 1.959963984540054  # two-sided 95% normal quantile
_AXIS = {
    "gridcolor": "#ebf0f8",
    "linecolor": "#ebf0f8",
    "zerolinecolor": "#ebf0f8",
    "zerolinewidth": 2,
    "automargin": True,
    "ticks": "",
    "title": {"standoff": 15},
}
# A small white template in the spirit of plotly's "plotly_white": the full built-in
# templates cost ~25 ms to validate per figure, which the explorer pays on every slider move.
_TEMPLATE: dict[str, Any] = {
    "layout": {
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"color": "#2a3f5f"},
        "hovermode": "closest",
        "hoverlabel": {"align": "left"},
        "xaxis": _AXIS,
        "yaxis": _AXIS,
    }
}
_BASE_LAYOUT: dict[str, Any] = {
    "height": 440,
    "margin": {"l": 60, "r": 20, "t": 100, "b": 50},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0.0},
}


def _mode_color(mode: str) -> str:
    return MODE_COLORS.get(mode, "#7f7f7f")


def _make_figure(traces: list[dict[str, Any]], layout: dict[str, Any]) -> go.Figure:
    """The figure of plain trace and layout mappings, with the light template.

    The builders assemble plain mappings and construct the figure once, without plotly's
    per-property validation (``_validate=False``): validating every trace property costs
    ~15× the rest of a builder, which the explorer pays on every slider move. The tests
    construct every builder's output again with validation on.
    """
    return go.Figure(data=traces, layout={"template": _TEMPLATE, **layout}, _validate=False)


def _vlines(marks: Sequence[tuple[float, str, str]], *, log_x: bool = False) -> dict[str, Any]:
    """Vertical lines across the plot with a label on top, as layout shapes and annotations.

    (``Figure.add_vline`` does the same but validates each shape separately, which is slow.)
    """
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "line": {"color": "#444", "width": 1, "dash": dash},
        }
        for x, _, dash in marks
    ]
    annotations = [
        {
            "x": float(np.log10(x)) if log_x else x,
            "xref": "x",
            "yref": "paper",
            "y": 1,
            "yanchor": "bottom",
            "text": text,
            "showarrow": False,
        }
        for x, text, _ in marks
        if not log_x or x > 0
    ]
    return {"shapes": shapes, "annotations": annotations}


def _layout(name: str, title: str, **extra: Any) -> dict[str, Any]:
    layout = {
        **_BASE_LAYOUT,
        "meta": {"figure": name},
        "title": {"text": title, "x": 0.0, "y": 0.97, "yanchor": "top"},
    }
    layout.update(extra)
    if "legend" in extra:
        layout["legend"] = {**_BASE_LAYOUT["legend"], **extra["legend"]}
    return layout


# ------------------------------------------------------------------- liquidation lines


def initial_liquidation_prices(scenario: Scenario, position: int = 0) -> dict[str, float]:
    """Liquidation (mark) price of one position at the start, in each mode of the scenario.

    Parameters
    ----------
    scenario : Scenario
    position : int
        Index into ``scenario.account.positions``.

    Returns
    -------
    dict of str to float
        Mode -> price, quote currency; NaN where no price liquidates the position. Cross
        uses the wallet less every opening fee, with the other positions at their entry
        prices; funding paid later moves these prices, so they are the lines at entry.
    """
    from margin_sim.exchange import liquidation_price, resolve_exchange

    rules = resolve_exchange(scenario.exchange)
    target = scenario.account.positions[position]
    prices = {name: asset.price for name, asset in scenario.market.assets.items()}
    entry = prices[target.asset]
    quantity = target.notional / entry
    fees = sum(p.notional * rules.taker_fee for p in scenario.account.positions)
    others = [
        {
            "side": p.side,
            "quantity": p.notional / prices[p.asset],
            "entry_price": prices[p.asset],
            "mark_price": prices[p.asset],
            "asset": p.asset,
        }
        for k, p in enumerate(scenario.account.positions)
        if k != position
    ]
    out: dict[str, float] = {}
    for mode in scenario.modes:
        if mode == "isolated":
            out[mode] = liquidation_price(
                target.side, entry, quantity, target.margin,
                exchange=rules, mode="isolated", asset=target.asset,
            )  # fmt: skip
        else:
            out[mode] = liquidation_price(
                target.side, entry, quantity, max(scenario.account.balance - fees, 0.0),
                exchange=rules, mode="cross", others=others, asset=target.asset,
            )  # fmt: skip
    return out


# ------------------------------------------------------------------------ sample paths


def coarsen_bars(bars: pd.DataFrame, max_points: int | None) -> pd.DataFrame:
    """Merge consecutive bars of each (path, asset) so none has more than ``max_points`` bars.

    Parameters
    ----------
    bars : DataFrame
        Bars as from :func:`margin_sim.market.sample_paths`.
    max_points : int or None
        Longest series wanted; None or a series already short enough returns ``bars``.

    Returns
    -------
    DataFrame
        Same columns; each merged bar opens with the first bar, closes with the last and
        keeps the lowest low and highest high, so wick troughs stay exact.
    """
    keys = ["path", "asset"]
    longest = int(bars.groupby(keys).size().max()) if len(bars) else 0
    if not max_points or longest <= max_points:
        return bars
    factor = -(-longest // max_points)
    ordered = bars.sort_values([*keys, "hours"], kind="stable")
    block = ordered.groupby(keys).cumcount().to_numpy() // factor
    grouped = ordered.groupby([ordered["path"].to_numpy(), ordered["asset"].to_numpy(), block])
    how = {"hours": "first"}
    for price in ("last", "mark"):
        how |= {
            f"{price}_open": "first",
            f"{price}_high": "max",
            f"{price}_low": "min",
            f"{price}_close": "last",
        }
    merged = grouped.agg(how)
    merged.index = merged.index.set_names(["path", "asset", "block"])
    return merged.reset_index().drop(columns="block")[list(bars.columns)]


def _first_crossing(
    hours: np.ndarray,
    mark_low: np.ndarray,
    mark_high: np.ndarray,
    mark_close: np.ndarray,
    level: float,
    lower: bool,
    recovery_hours: float,
) -> tuple[float, bool] | None:
    """Time of the first bar whose mark range reaches ``level``, and whether it was a wick.

    A wick liquidation is one where the mark price is back on the safe side of the level
    ``recovery_hours`` after the crossing (a flash crash that recovered); otherwise the
    price broke down through the level.
    """
    hit = mark_low <= level if lower else mark_high >= level
    if not hit.any():
        return None
    first = int(np.argmax(hit))
    later = int(np.searchsorted(hours, hours[first] + recovery_hours, side="right")) - 1
    close = mark_close[max(later, first)]
    return float(hours[first]), bool(close > level if lower else close < level)


def sample_paths_figure(
    bars: pd.DataFrame,
    liquidation_prices: Mapping[str, float] | None = None,
    *,
    asset: str | None = None,
    max_points: int | None = 20_000,
    recovery_hours: float = 1.0,
    title: str | None = None,
) -> go.Figure:
    """Sample price paths with the liquidation price of each mode and the liquidations marked.

    Parameters
    ----------
    bars : DataFrame
        Minute bars from :func:`margin_sim.market.sample_paths`: columns ``path, asset,
        hours, last_open/high/low/close, mark_open/high/low/close`` (prices in quote currency,
        ``hours`` since the start).
    liquidation_prices : mapping of str to float, optional
        Mode -> liquidation mark price of the position in ``asset`` (see
        :func:`initial_liquidation_prices`); NaN or missing draws no line.
    asset : str, optional
        The asset to draw; the first one in ``bars`` by default.
    max_points : int, optional
        Longest trace; longer paths are merged into bars of several minutes that keep each
        minute's low and high, so wick troughs stay exact. None keeps every minute.
    recovery_hours : float
        A liquidation is marked as a wick (✕) when the mark price is back on the safe side
        of the line this many hours after crossing it, otherwise as a breakdown (●).
    title : str, optional

    Returns
    -------
    go.Figure
        One solid line per path (last price, bar close) and one dotted line (mark price, bar
        low: what long liquidations are checked against), the liquidation line per mode and
        a marker at each path's first crossing per mode.
    """
    if asset is None:
        asset = str(bars["asset"].iloc[0])
    data = bars.loc[bars["asset"] == asset]
    data = coarsen_bars(data, max_points).sort_values(["path", "hours"], kind="stable")
    start = float(data["last_close"].iloc[0]) if len(data) else np.nan
    levels = {mode: float(p) for mode, p in (liquidation_prices or {}).items() if np.isfinite(p)}
    traces: list[dict[str, Any]] = []
    crossings: dict[str, list[tuple[float, bool]]] = {mode: [] for mode in levels}
    # the dotted line is the side of the mark range liquidations are checked against
    low_or_high = "mark_high" if levels and min(levels.values()) > start else "mark_low"
    for k, (path, one) in enumerate(data.groupby("path", sort=True)):
        color = _PATH_COLORS[k % len(_PATH_COLORS)]
        hours = one["hours"].to_numpy(dtype=float)
        traces.append(
            dict(
                type="scatter",
                x=hours.astype(np.float32),
                y=one["last_close"].to_numpy(dtype=np.float32),
                mode="lines",
                line={"color": color, "width": 1.2},
                name=f"path {path}: last",
                legendgroup=f"path{path}",
            )
        )
        for mode, level in levels.items():
            hit = _first_crossing(
                hours,
                one["mark_low"].to_numpy(dtype=float),
                one["mark_high"].to_numpy(dtype=float),
                one["mark_close"].to_numpy(dtype=float),
                level,
                level < start,
                recovery_hours,
            )
            if hit is not None:
                crossings[mode].append(hit)
        traces.append(
            dict(
                type="scatter",
                x=hours.astype(np.float32),
                y=one[low_or_high].to_numpy(dtype=np.float32),
                mode="lines",
                line={"color": color, "width": 0.8, "dash": "dot"},
                name=f"path {path}: mark {low_or_high.removeprefix('mark_')}",
                legendgroup=f"path{path}",
                showlegend=False,
            )
        )
    end = float(data["hours"].max()) if len(data) else 1.0
    # Show the paths, and a liquidation line only when it is near them: a line far below
    # (cross margin at low leverage) would squash the paths into a flat band.
    low = float(data[["last_low", "mark_low"]].min().min()) if len(data) else 0.0
    high = float(data[["last_high", "mark_high"]].max().max()) if len(data) else 1.0
    span = max(high - low, 1e-9 * max(abs(high), 1.0))
    near = [v for v in levels.values() if low - 0.5 * span <= v <= high + 0.5 * span]
    y_range = [min([low, *near]) - 0.05 * span, max([high, *near]) + 0.05 * span]
    for mode, level in levels.items():
        color = _mode_color(mode)
        shown = "" if level in near else " (off the chart)"
        traces.append(
            dict(
                type="scatter",
                x=[0.0, end],
                y=[level, level],
                mode="lines",
                line={"color": color, "width": 2, "dash": "dash"},
                name=f"{mode} liquidation {level:,.0f}{shown}",
            )
        )
        hits = crossings[mode]
        for wick, symbol, label in ((True, "x", "wick"), (False, "circle", "breakdown")):
            times = [t for t, w in hits if w == wick]
            traces.append(
                dict(
                    type="scatter",
                    x=times,
                    y=[level] * len(times),
                    mode="markers",
                    marker={"color": color, "symbol": symbol, "size": 11, "line": {"width": 2}},
                    name=f"{mode}: {label} liquidation ({len(times)})",
                )
            )
    spacing = np.diff(data["hours"].to_numpy()[:2]) * 60 if len(data) > 1 else np.array([1.0])
    minutes = max(round(float(spacing[0])), 1)
    resolution = "1-minute bars" if minutes == 1 else f"{minutes}-minute bars (lows kept)"
    return _make_figure(
        traces,
        _layout(
            "sample_paths",
            title or f"Sample {asset} paths, {resolution}",
            xaxis={"title": {"text": "hours"}},
            yaxis={"title": {"text": f"{asset} price"}, "tickformat": ",.0f", "range": y_range},
            height=500,
        ),
    )


# ------------------------------------------------------------------------ distributions


def final_equity_figure(
    per_path: pd.DataFrame,
    *,
    balance: float | None = None,
    ruin_equity: float | None = None,
    bins: int = 60,
    as_loss: bool = False,
    title: str | None = None,
    currency: str = "USDT",
) -> go.Figure:
    """Distribution of the account's final equity (or loss) in each mode, on shared bins.

    Parameters
    ----------
    per_path : DataFrame
        One row per (path, mode) with columns ``mode`` and ``final_equity`` (quote currency).
    balance : float, optional
        Starting wallet balance; drawn as a vertical line.
    ruin_equity : float, optional
        Ruin threshold (equity); drawn as a vertical line.
    bins : int
        Number of bins over the common range.
    as_loss : bool
        Draw the loss ``balance - final equity`` instead (needs ``balance``).
    title : str, optional
    currency : str
        Quote currency named on the axis.

    Returns
    -------
    go.Figure
        One bar trace per mode, probability per bin.
    """
    if as_loss and balance is None:
        raise ValueError("as_loss=True needs the starting balance")
    per_path = per_path[["mode", "final_equity"]]
    if as_loss:
        per_path = per_path.assign(final_equity=balance - per_path["final_equity"])
        balance, ruin_equity = (
            None,
            None if ruin_equity is None or balance is None else balance - ruin_equity,
        )
    modes = list(dict.fromkeys(per_path["mode"]))
    values = per_path["final_equity"].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    if high <= low:
        high = low + max(abs(low) * 1e-3, 1.0)
    edges = np.linspace(low, high, bins + 1)
    centers = 0.5 * (edges[1:] + edges[:-1])
    traces: list[dict[str, Any]] = []
    for mode in modes:
        x = per_path.loc[per_path["mode"] == mode, "final_equity"].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        counts, _ = np.histogram(x, bins=edges)
        share = counts / max(x.size, 1)
        traces.append(
            dict(
                type="bar",
                x=centers,
                y=share,
                width=float(edges[1] - edges[0]),
                name=f"{mode} (mean {x.mean():,.0f})" if x.size else mode,
                marker={"color": _mode_color(mode)},
                opacity=0.6,
            )
        )
    what = "loss" if as_loss else "final equity"
    marks = [
        (float(value), f"{label} {value:,.0f}", dash)
        for value, label, dash in ((balance, "start", "solid"), (ruin_equity, "ruin", "dot"))
        if value is not None and np.isfinite(value)
    ]
    return _make_figure(
        traces,
        _layout(
            "final_equity",
            title or ("Loss of the account" if as_loss else "Final account equity"),
            **_vlines(marks),
            barmode="overlay",
            bargap=0.0,
            xaxis={"title": {"text": f"{what} ({currency})"}, "tickformat": ",.0f"},
            yaxis={"title": {"text": "share of paths"}, "tickformat": ".0%"},
        ),
    )


def survival_figure(
    curves: Mapping[str, pd.DataFrame], *, title: str | None = None, z: float = _Z95
) -> go.Figure:
    """Probability of not yet being liquidated against time, per mode, with confidence bands.

    Parameters
    ----------
    curves : mapping of str to DataFrame
        Mode -> frame with columns ``hours, survival, survival_se`` (``SimulationResult
        .survival(mode)``).
    z : float
        Band half-width in standard errors (1.96: pointwise 95%).
    title : str, optional

    Returns
    -------
    go.Figure
        Per mode a band trace (``fill="toself"``) and then the curve.
    """
    traces: list[dict[str, Any]] = []
    for mode, curve in curves.items():
        hours = curve["hours"].to_numpy(dtype=float)
        survival = curve["survival"].to_numpy(dtype=float)
        se = curve["survival_se"].to_numpy(dtype=float)
        upper = np.clip(survival + z * se, 0.0, 1.0)
        lower = np.clip(survival - z * se, 0.0, 1.0)
        color = _mode_color(mode)
        traces.append(
            dict(
                type="scatter",
                x=np.concatenate([hours, hours[::-1]]),
                y=np.concatenate([upper, lower[::-1]]),
                fill="toself",
                fillcolor=color,
                opacity=0.2,
                line={"width": 0},
                hoverinfo="skip",
                name=f"{mode} 95% band",
                showlegend=False,
            )
        )
        traces.append(
            dict(
                type="scatter",
                x=hours,
                y=survival,
                mode="lines",
                line={"color": color, "width": 2, "shape": "hv"},
                name=mode,
            )
        )
    return _make_figure(
        traces,
        _layout(
            "survival",
            title or "Probability of not yet being liquidated",
            xaxis={"title": {"text": "hours"}},
            yaxis={"title": {"text": "survival probability"}, "tickformat": ".0%"},
        ),
    )


def probability_vs_leverage_figure(
    table: pd.DataFrame,
    *,
    leverage: float | None = None,
    current: pd.DataFrame | None = None,
    metrics: Sequence[str] = ("liquidation_probability", "ruin_probability"),
    title: str | None = None,
    z: float = _Z95,
) -> go.Figure:
    """Liquidation and ruin probability against leverage for each margin mode.

    Parameters
    ----------
    table : DataFrame
        Columns ``leverage, mode`` and, for each metric, ``<metric>`` and ``<metric>_se``.
    leverage : float, optional
        Current leverage, marked with a vertical line.
    current : DataFrame, optional
        Same columns as ``table``: the current setting's probabilities, drawn as stars
        (one trace per metric after the curves).
    metrics : sequence of str
        Probabilities to draw; the first solid, the second dashed.
    z : float
        Error bars of ``z`` standard errors.
    title : str, optional

    Returns
    -------
    go.Figure
        One trace per (metric, mode), in that order, then with ``current`` one star trace
        per metric; x = leverage on a log axis.
    """
    dashes = ("solid", "dash", "dot")
    traces: list[dict[str, Any]] = []
    modes = list(dict.fromkeys(table["mode"]))
    for k, metric in enumerate(metrics):
        for mode in modes:
            rows = table.loc[table["mode"] == mode].sort_values("leverage")
            se_column = f"{metric}_se"
            error = (
                {"type": "data", "array": z * rows[se_column].to_numpy(dtype=float)}
                if se_column in rows
                else None
            )
            traces.append(
                dict(
                    type="scatter",
                    x=rows["leverage"].to_numpy(dtype=float),
                    y=rows[metric].to_numpy(dtype=float),
                    error_y=error,
                    mode="lines+markers",
                    line={"color": _mode_color(mode), "dash": dashes[k % len(dashes)]},
                    name=f"{mode}: {metric.replace('_', ' ')}",
                )
            )
    if current is not None:
        symbols = ("star", "star-diamond", "star-square")
        for k, metric in enumerate(metrics):
            traces.append(
                dict(
                    type="scatter",
                    x=current["leverage"].to_numpy(dtype=float),
                    y=current[metric].to_numpy(dtype=float),
                    mode="markers",
                    marker={
                        "color": [_mode_color(m) for m in current["mode"]],
                        "symbol": symbols[k % len(symbols)],
                        "size": 14,
                        "line": {"color": "#222", "width": 1},
                    },
                    name=f"now: {metric.replace('_', ' ')}",
                )
            )
    marks = [] if leverage is None else [(float(leverage), f"{leverage:g}x", "dot")]
    return _make_figure(
        traces,
        _layout(
            "probability_vs_leverage",
            title or "Probability against leverage",
            **_vlines(marks, log_x=True),
            xaxis={"title": {"text": "leverage"}, "type": "log"},
            yaxis={"title": {"text": "probability"}, "range": [0, 1.02], "tickformat": ".0%"},
        ),
    )


def summary_table_figure(
    summary: pd.DataFrame,
    *,
    difference: pd.Series | Mapping[str, float] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Isolated-versus-cross summary as a table with standard errors.

    Parameters
    ----------
    summary : DataFrame
        ``SimulationResult.summary()``: indexed by mode, the columns of DESIGN.md section 6
        (probabilities as fractions, money in quote currency, times in hours).
    difference : Series or mapping, optional
        Isolated minus cross for the same columns (paired standard errors), added as a row.
    title : str, optional

    Returns
    -------
    go.Figure
        A ``go.Table`` whose cells hold the unrounded numbers (the display format rounds).
    """
    columns = [c for c in SUMMARY_COLUMNS if c[0] in summary.columns]
    labels = [str(mode) for mode in summary.index]
    values: list[list[float | None]] = [
        [_finite_or_none(summary.loc[mode, name]) for mode in summary.index]
        for name, _, _ in columns
    ]
    if difference is not None:
        labels.append("isolated − cross")
        for k, (name, _, _) in enumerate(columns):
            values[k].append(_finite_or_none(difference.get(name, np.nan)))
    formats: list[str | None] = [fmt for _, _, fmt in columns]
    for k, (name, _, fmt) in enumerate(columns):
        if name == "median_hours_to_liquidation":
            # no liquidation at all: say "none" (a number format would show a blank as 0.0)
            values[k] = [
                "none" if v is None else format(v, fmt)
                for v in values[k]  # type: ignore[misc]
            ]
            formats[k] = None
    table = {
        "type": "table",
        "header": {
            "values": ["mode", *(header for _, header, _ in columns)],
            "fill": {"color": "#eef1f6"},
            "align": "center",
        },
        "cells": {
            "values": [labels, *values],
            "format": [None, *formats],
            "align": ["left", *(["right"] * len(columns))],
            "height": 28,
        },
    }
    return _make_figure(
        [table],
        _layout(
            "summary_table",
            title or "Isolated versus cross",
            height=140 + 30 * len(labels),
        ),
    )


def _finite_or_none(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None
