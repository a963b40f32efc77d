"""The one-position fast path gives the numbers of the general engine, path by path."""

from __future__ import annotations

import pytest
from fast_paths import assert_fast_equals_general

from margin_sim import _kernels

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
    assert_fast_equals_general(file, overrides, "FAST_SINGLE_POSITION", monkeypatch)
