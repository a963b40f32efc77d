"""The one-position fast path gives the numbers of the general engine, path by path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import margin_sim as ms
from margin_sim import _kernels, engine

pytestmark = pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba is not installed")

CASES = {
    "baseline": ("baseline", {}),
    "short-tight": (
        "baseline",
        {
            "account.positions.0.side": "short",
            "account.positions.0.leverage": 20,
            "account.balance": 1500,
            "ruin.equity_fraction": 0.6,
        },
    ),
    "cross-ruin-and-wicks": (
        "baseline",
        {
            "account.balance": 2000,
            "market.assets.BTC.wicks.per_year": 200,
            "market.assets.BTC.wicks.depth_mean": 0.15,
            "exchange.funding.model": "random",
            "exchange.funding.std": 0.0005,
        },
    ),
    "wallet-equals-margin": ("baseline", {"account.balance": 1000, "ruin.equity_fraction": 0.3}),
    "bybit": ("baseline", {"exchange": "bybit", "account.balance": 3000}),
    "okx-daily": ("baseline", {"exchange": "okx", "step": "1d", "account.balance": 2500}),
    # with a stop-loss (engine._single_stop_outcome)
    "stop-long": ("baseline", {"account.positions.0.stop_loss": 0.05}),
    "stop-short-tight-ruin": (
        "baseline",
        {
            "account.positions.0.side": "short",
            "account.positions.0.leverage": 20,
            "account.positions.0.stop_loss": 0.03,
            "account.balance": 1100,
            "ruin.equity_fraction": 0.6,
        },
    ),
    "stop-gaps-random-funding": (
        "baseline",
        {
            "account.positions.0.stop_loss": 0.08,
            "account.balance": 2000,
            "market.assets.BTC.wicks.per_year": 300,
            "market.assets.BTC.wicks.depth_mean": 0.15,
            "market.assets.BTC.jumps.per_year": 200,
            "exchange.funding.model": "random",
            "exchange.funding.std": 0.0005,
        },
    ),
    "stop-gap-past-bankruptcy": (  # last-price wicks far deeper than the mark sees
        "baseline",
        {
            "account.positions.0.stop_loss": 0.03,
            "market.assets.BTC.wicks.per_year": 400,
            "market.assets.BTC.wicks.depth_mean": 0.2,
            "market.assets.BTC.wicks.mark_pass_through": 0.2,
        },
    ),
    "stop-beyond-liquidation": (
        "baseline",
        {"account.positions.0.leverage": 20, "account.positions.0.stop_loss": 0.2},
    ),
    "stop-isolated-ruin": (
        "baseline",
        {
            "account.positions.0.stop_loss": 0.04,
            "account.balance": 1000,
            "ruin.equity_fraction": 0.3,
        },
    ),
    "stop-bybit": (
        "baseline",
        {"exchange": "bybit", "account.balance": 3000, "account.positions.0.stop_loss": 0.06},
    ),
    "stop-okx-daily": (
        "baseline",
        {"exchange": "okx", "step": "1d", "account.positions.0.stop_loss": 0.07},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_path_equals_general_engine(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    file, overrides = CASES[name]
    scenario = ms.load_scenario(
        f"params/scenarios/{file}.yaml", {"paths": 1500, "horizon": "7d", **overrides}
    )
    fast = ms.simulate(scenario, progress=False)
    monkeypatch.setattr(engine, "FAST_SINGLE_POSITION", False)
    general = ms.simulate(scenario, progress=False)
    frame_fast, frame_general = fast.per_path, general.per_path
    assert (frame_general["p_liquidation"] > 0).any()
    np.testing.assert_array_equal(frame_fast["liquidated"], frame_general["liquidated"])
    for column in ("p_liquidation", "p_ruin", "final_equity", "min_equity", "hours_to_liquidation"):
        np.testing.assert_allclose(
            frame_fast[column], frame_general[column], rtol=1e-9, atol=1e-9, err_msg=column
        )
    for mode in scenario.modes:
        pd.testing.assert_frame_equal(
            fast.survival(mode), general.survival(mode), rtol=1e-9, atol=1e-12
        )
