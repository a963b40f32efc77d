"""Plot builders: figures carry the data they were given, liquidations are marked right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from margin_sim import plots
from margin_sim.scenario import load_scenario


def _bars(closes: dict[int, np.ndarray], lows: dict[int, np.ndarray]) -> pd.DataFrame:
    """Minute bars of one asset; the mark equals the last price."""
    frames = []
    for path, close in closes.items():
        n = close.size
        low = lows[path]
        frames.append(
            pd.DataFrame(
                {
                    "path": path,
                    "asset": "BTC",
                    "hours": np.arange(1, n + 1) / 60.0,
                    "last_open": close,
                    "last_high": close,
                    "last_low": low,
                    "last_close": close,
                    "mark_open": close,
                    "mark_high": close,
                    "mark_low": low,
                    "mark_close": close,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def wick_and_breakdown() -> pd.DataFrame:
    minutes = 600
    flat = np.full(minutes, 100.0)
    flat_low = flat.copy()
    flat_low[99] = 80.0  # one-minute wick to 80, closes back at 100
    falling = np.linspace(100.0, 60.0, minutes)
    return _bars({0: flat, 1: falling}, {0: flat_low, 1: falling - 0.5})


def _valid(figure: go.Figure) -> go.Figure:
    """The builders skip plotly's validation for speed: validate their output here."""
    go.Figure(figure.to_plotly_json())  # raises ValueError on any invalid property
    return figure


def _trace(figure: go.Figure, name: str) -> go.Scatter:
    matches = [t for t in figure.data if t.name is not None and t.name.startswith(name)]
    assert len(matches) == 1, [t.name for t in figure.data]
    return matches[0]


def test_sample_paths_marks_wick_and_breakdown(wick_and_breakdown: pd.DataFrame) -> None:
    figure = _valid(
        plots.sample_paths_figure(
            wick_and_breakdown, {"isolated": 90.0, "cross": 70.0}, max_points=None
        )
    )
    assert figure.layout.meta["figure"] == "sample_paths"
    wick = _trace(figure, "isolated: wick")
    assert list(wick.x) == [pytest.approx(100 / 60)]
    assert list(wick.y) == [90.0]
    breakdown = _trace(figure, "isolated: breakdown")
    falling_low = np.linspace(100.0, 60.0, 600) - 0.5
    first = int(np.argmax(falling_low <= 90.0))
    assert list(breakdown.x) == [pytest.approx((first + 1) / 60)]
    # cross at 70: the wick to 80 does not reach it, the falling path does
    assert len(_trace(figure, "cross: wick").x) == 0
    assert len(_trace(figure, "cross: breakdown").x) == 1
    line = _trace(figure, "isolated liquidation")
    assert list(line.y) == [90.0, 90.0]
    last = _trace(figure, "path 1: last")
    np.testing.assert_allclose(np.asarray(last.y), np.linspace(100.0, 60.0, 600), rtol=1e-6)


def test_sample_paths_coarsening_keeps_the_wick_trough(wick_and_breakdown: pd.DataFrame) -> None:
    figure = _valid(
        plots.sample_paths_figure(wick_and_breakdown, {"isolated": 90.0}, max_points=50)
    )
    dotted = [t for t in figure.data if t.line is not None and t.line.dash == "dot"]
    assert len(dotted) == 2
    assert all(len(t.x) <= 50 for t in dotted)
    assert min(np.asarray(dotted[0].y)) == pytest.approx(80.0)
    assert len(_trace(figure, "isolated: wick").x) == 1


def test_sample_paths_without_lines_or_finite_prices(wick_and_breakdown: pd.DataFrame) -> None:
    figure = _valid(plots.sample_paths_figure(wick_and_breakdown, {"isolated": float("nan")}))
    assert not any("liquidation" in (t.name or "") for t in figure.data)
    assert len(figure.data) == 4  # two paths, last and mark each


def test_final_equity_shares_sum_to_one() -> None:
    rng = np.random.default_rng(3)
    per_path = pd.DataFrame(
        {
            "path": np.tile(np.arange(500), 2),
            "mode": ["isolated"] * 500 + ["cross"] * 500,
            "final_equity": np.concatenate(
                [rng.normal(9000, 500, 500), rng.normal(8000, 2000, 500)]
            ),
        }
    )
    figure = _valid(plots.final_equity_figure(per_path, balance=10000, ruin_equity=5000, bins=40))
    assert figure.layout.meta["figure"] == "final_equity"
    assert [t.name.split(" ")[0] for t in figure.data] == ["isolated", "cross"]
    for trace in figure.data:
        assert np.sum(trace.y) == pytest.approx(1.0)
        assert len(trace.x) == 40
    np.testing.assert_array_equal(figure.data[0].x, figure.data[1].x)
    assert len(figure.layout.shapes) == 2


def test_survival_curve_and_band() -> None:
    hours = np.arange(0.0, 25.0)
    survival = np.exp(-hours / 10)
    se = np.full_like(hours, 0.2)
    curve = pd.DataFrame({"hours": hours, "survival": survival, "survival_se": se})
    figure = _valid(plots.survival_figure({"isolated": curve, "cross": curve.assign(survival=1.0)}))
    band, line = figure.data[0], figure.data[1]
    np.testing.assert_array_equal(line.y, survival)
    assert band.fill == "toself"
    assert np.min(band.y) >= 0.0
    assert np.max(band.y) <= 1.0
    np.testing.assert_allclose(band.y[0], min(1.0, survival[0] + 1.959963984540054 * 0.2))


def test_probability_vs_leverage_traces() -> None:
    table = pd.DataFrame(
        {
            "leverage": [10, 2, 5, 10, 2, 5],
            "mode": ["isolated"] * 3 + ["cross"] * 3,
            "liquidation_probability": [0.5, 0.0, 0.2, 0.1, 0.0, 0.01],
            "liquidation_probability_se": [0.01] * 6,
            "ruin_probability": [0.05, 0.0, 0.02, 0.1, 0.0, 0.01],
            "ruin_probability_se": [0.01] * 6,
        }
    )
    figure = _valid(plots.probability_vs_leverage_figure(table, leverage=5))
    assert len(figure.data) == 4
    first = figure.data[0]
    assert first.name == "isolated: liquidation probability"
    np.testing.assert_array_equal(first.x, [2, 5, 10])
    np.testing.assert_array_equal(first.y, [0.0, 0.2, 0.5])
    np.testing.assert_allclose(first.error_y.array, 1.959963984540054 * 0.01)


def test_summary_table_keeps_raw_numbers() -> None:
    summary = pd.DataFrame(
        {
            "liquidation_probability": [0.123456789, 0.01],
            "liquidation_probability_se": [0.001, 0.0002],
            "median_hours_to_liquidation": [12.5, np.nan],
        },
        index=pd.Index(["isolated", "cross"], name="mode"),
    )
    figure = _valid(
        plots.summary_table_figure(summary, difference={"liquidation_probability": 0.11})
    )
    cells = figure.data[0].cells.values
    assert list(cells[0]) == ["isolated", "cross", "isolated − cross"]
    assert list(cells[1]) == [0.123456789, 0.01, 0.11]
    # median hours as text, "none" where nothing was liquidated (a blank would show as 0.0)
    assert list(cells[3]) == ["12.5", "none", "none"]
    assert figure.data[0].cells.format[3] is None


def test_initial_liquidation_price_matches_binance_formula(tiny_scenario: dict) -> None:
    scenario = load_scenario(tiny_scenario)
    prices = plots.initial_liquidation_prices(scenario)
    # Binance isolated: LP = (WB + cum - s Q EP) / (Q mmr - s Q), first BTC tier (mmr 0.4%,
    # cum 0) since the notional at LP is below 50,000 USDT.
    quantity, entry, wallet = 10000 / 60000, 60000.0, 1000.0
    expected = (wallet - quantity * entry) / (quantity * 0.004 - quantity)
    assert prices["isolated"] == pytest.approx(expected, rel=1e-12)
    cross_wallet = 10000 - 10000 * 0.0005
    assert prices["cross"] == pytest.approx(
        (cross_wallet - quantity * entry) / (quantity * 0.004 - quantity), rel=1e-12
    )


def test_probability_vs_leverage_current_stars() -> None:
    table = pd.DataFrame(
        {
            "leverage": [2, 10, 2, 10],
            "mode": ["isolated", "isolated", "cross", "cross"],
            "liquidation_probability": [0.0, 0.5, 0.0, 0.1],
            "ruin_probability": [0.0, 0.05, 0.0, 0.1],
        }
    )
    current = table.iloc[[1, 3]].assign(leverage=7.0)
    figure = _valid(plots.probability_vs_leverage_figure(table, current=current, leverage=7.0))
    star = _trace(figure, "now: liquidation")
    np.testing.assert_array_equal(star.x, [7.0, 7.0])
    np.testing.assert_array_equal(star.y, [0.5, 0.1])
    assert figure.layout.shapes[0].x0 == 7.0


def test_loss_distribution_is_balance_minus_equity() -> None:
    per_path = pd.DataFrame(
        {"mode": ["isolated"] * 4, "final_equity": [10000.0, 9000.0, 9000.0, 5000.0]}
    )
    figure = _valid(plots.final_equity_figure(per_path, balance=10000, as_loss=True, bins=5))
    bars = figure.data[0]
    # losses 0, 1000, 1000, 5000 on 5 bins of 1000 from 0 to 5000
    np.testing.assert_allclose(bars.x, [500, 1500, 2500, 3500, 4500])
    np.testing.assert_allclose(bars.y, [0.25, 0.5, 0.0, 0.0, 0.25])
    with pytest.raises(ValueError, match="balance"):
        plots.final_equity_figure(per_path, as_loss=True)
