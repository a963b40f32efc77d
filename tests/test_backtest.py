"""Backtest: realised liquidations from candles, reliability table, Brier, a short real run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from margin_sim.backtest import (
    brier_score,
    realised_liquidations,
    reliability_table,
    run_backtest,
    wilson_interval,
)
from margin_sim.data import Candles, _find_gaps, load_candles
from margin_sim.exchange import ExchangeRules
from margin_sim.scenario import ExchangeSpec, load_exchange

MARKET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market"


def test_wilson_interval_covers_at_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    p, n = 0.07, 200
    k = rng.binomial(n, p, 4000)
    lo, hi = wilson_interval(k, n)
    coverage = np.mean((lo <= p) & (p <= hi))
    assert abs(coverage - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 4000) + 0.01
    # against the closed form at one point (Wilson 1927)
    z = stats.norm.ppf(0.975)
    phat = 10 / 50
    centre = (phat + z**2 / 100) / (1 + z**2 / 50)
    lo1, hi1 = wilson_interval(10, 50, z=z)
    assert math.isclose((float(lo1) + float(hi1)) / 2, centre, rel_tol=1e-12)


def test_brier_and_reliability() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.6, 20000)
    y = rng.random(20000) < p
    table = reliability_table(p, y)
    assert np.all(
        (table["realised_low"] <= table["mean_predicted"])
        & (table["mean_predicted"] <= table["realised_high"])
    )
    assert brier_score(p, y) < brier_score(np.full_like(p, y.mean()), y)


def test_realised_liquidations_on_a_known_path() -> None:
    index = pd.date_range("2024-01-01", periods=240, freq="1min", tz="UTC", unit="ns")
    close = np.full(240, 100.0)
    low = close.copy()
    low[150] = 80.0  # a wick at 02:30
    frame = pd.DataFrame(
        {"open": close, "high": close, "low": low, "close": close, "volume": 1.0}, index=index
    )
    interval = pd.Timedelta(minutes=1)
    candles = Candles(frame, interval, _find_gaps(index, interval), index[:0], "x")
    table = realised_liquidations(
        candles, asset="BTC", side="long", leverage=10, horizon="1h", entry_every="1h"
    )
    rules = ExchangeRules(ExchangeSpec.model_validate(load_exchange("binance-usdm")))
    lp = float(rules.isolated_liquidation_price("BTC", 1, 100.0, 100.0, 1000.0))
    assert 80 < lp < 100
    # entries at the close of the bars ending 01:00, 02:00, 03:00 (00:00 has no bar before)
    assert list(table.index.hour) == [1, 2, 3]
    assert list(table["liquidated"]) == [False, True, False]
    assert np.allclose(table["liquidation_price"], lp)


@pytest.mark.skipif(not MARKET.is_dir(), reason=f"market data not at {MARKET}")
@pytest.mark.requires_market_data
def test_short_real_backtest_end_to_end() -> None:
    candles = load_candles(MARKET / "BTCUSDT_spot_1m_20210420_20210520.csv.gz")
    candles = candles.slice("2021-05-10", "2021-05-21")
    result = run_backtest(
        candles,
        asset="BTC",
        leverages=(20.0,),
        sides=("long",),
        horizon="12h",
        refit_every="2d",
        history="5d",
        min_history="5d",
        paths=300,
        variants=("full", "diffusion", "gbm"),
    )
    records = result.records
    assert len(records) > 50 and records["liquidated"].any()
    for variant in result.variants:
        p = records[f"p_{variant}"]
        assert ((p >= 0) & (p <= 1)).all()
    # the refit never sees data after the entries it scores
    assert (records["refit"] <= records["entry_time"]).all()
    scores = result.scores()
    assert set(scores["variant"]) == {"full", "diffusion", "gbm"}
    assert not result.reliability("full").empty
