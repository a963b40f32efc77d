"""The multi-position fast path gives the numbers of the general engine, path by path."""

from __future__ import annotations

import pytest
from fast_paths import assert_fast_equals_general

import margin_sim as ms
from margin_sim import _kernels, engine

pytestmark = pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba is not installed")

THREE = {
    "account.positions": [
        {"asset": "BTC", "side": "long", "leverage": 10, "margin": 600},
        {"asset": "BTC", "side": "long", "leverage": 20, "margin": 300},
        {"asset": "ETH", "side": "short", "leverage": 15, "margin": 500},
    ],
}
CASES = {
    "hedge": ("hedge", {}),
    "hedge-tight": (
        "hedge",
        {
            "account.balance": 2100,
            "account.positions.0.leverage": 20,
            "account.positions.1.leverage": 25,
            "ruin.equity_fraction": 0.3,
        },
    ),
    "hedge-wicks-random-funding": (
        "hedge",
        {
            "market.market_wicks.per_year": 300,
            "market.market_wicks.depth_mean": 0.2,
            "exchange.funding.model": "random",
            "exchange.funding.std": 0.0005,
            "account.positions.0.leverage": 15,
        },
    ),
    "three-positions-nested": ("hedge", THREE),
    "three-positions-ruin-implied": (
        "hedge",
        {**THREE, "account.balance": 1500, "ruin.equity_fraction": 0.2},
    ),
    "bybit": ("hedge", {"exchange": "bybit", "account.positions.1.leverage": 20}),
    "okx-daily": ("hedge", {"exchange": "okx", "step": "1d", "account.positions.0.leverage": 20}),
    "auto-add": ("hedge", {"account.positions.0.auto_add_margin": True}),
    "high-tiers": (
        "hedge",
        {
            "account.balance": 760000,
            "account.positions.0.margin": 400000,
            "account.positions.0.leverage": 10,
            "account.positions.1.margin": 300000,
            "account.positions.1.leverage": 12,
            "ruin.equity_fraction": 0.5,
        },
    ),
    # stop-losses (isolated: compiled; engine._multi_isolated)
    "stops-hedge": (
        "hedge",
        {"account.positions.0.stop_loss": 0.06, "account.positions.1.stop_loss": 0.08},
    ),
    "stops-nested": (
        "hedge",
        {**THREE, "account.positions.0.stop_loss": 0.03, "account.positions.2.stop_loss": 0.05},
    ),
    "stops-gaps-marked-lightly": (
        "hedge",
        {
            "account.positions.0.stop_loss": 0.03,
            "account.positions.1.stop_loss": 0.02,
            "account.positions.0.leverage": 15,
            "market.assets.BTC.wicks.per_year": 300,
            "market.assets.BTC.wicks.depth_mean": 0.2,
            "market.assets.BTC.wicks.mark_pass_through": 0.2,
            "market.market_wicks.per_year": 100,
        },
    ),
    "stop-then-cross-liquidation": (
        "hedge",
        {
            **THREE,
            "account.balance": 1500,
            "ruin.equity_fraction": 0.2,
            "account.positions.0.stop_loss": 0.02,
            "exchange.liquidation_fee": 0.001,  # below the maintenance rate: MM - fee > 0
        },
    ),
    "stop-beyond-liquidation": (
        "hedge",
        {
            "account.positions.0.leverage": 20,
            "account.positions.0.stop_loss": 0.25,
            "account.positions.1.stop_loss": 0.05,
        },
    ),
    "cross-liquidation-above-ruin": (
        "hedge",
        {
            "exchange.liquidation_fee": 0.0,
            "ruin.equity_fraction": 0.001,
            "account.balance": 2050,
            "account.positions.0.leverage": 20,
            "account.positions.1.leverage": 20,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_path_equals_general_engine(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    file, overrides = CASES[name]
    assert_fast_equals_general(file, overrides, "FAST_MULTI_POSITION", monkeypatch)


def test_fast_path_is_used_for_the_hedge(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above is void if the engine never takes the fast path."""
    scenario = ms.load_scenario("params/scenarios/hedge.yaml", {"paths": 500, "horizon": "1d"})
    calls: list[str] = []
    for name in ("isolated_scan", "cross_scan"):
        original = getattr(engine, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(engine, name, spy)
    ms.simulate(scenario, progress=False)
    assert sorted(calls) == ["cross_scan", "isolated_scan"]
