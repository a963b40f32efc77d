"""The benchmark workloads: scenarios and, where one exists, their closed-form reference.

- ``W1``: ``params/scenarios/baseline.yaml`` (one BTC long 10x, Merton jumps, wicks, 30 days,
  isolated and cross), issue 5.
- ``W2``: ``params/scenarios/hedge.yaml`` (BTC long / ETH short, correlated, Merton and Kou
  jumps, asset and market-wide wicks), issue 5.
- ``J1``: W1 with the wicks off: the plain Merton jump-diffusion that ``sdepy`` can also run.
- ``D1``: W1 as a pure diffusion (no jumps, wicks, fees or funding; one flat 0.5% maintenance
  tier), isolated only: its liquidation probability is the GBM first-passage probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import margin_sim as ms
from margin_sim.reference import gbm_first_passage, liquidation_barrier
from margin_sim.scenario import Scenario

__all__ = ["FLAT_EXCHANGE", "WORKLOADS", "Workload", "diffusion_only", "load_workload"]

ROOT = Path(__file__).resolve().parent.parent

#: One flat maintenance tier, no fees or funding: the setting of the closed form.
FLAT_EXCHANGE = {
    "rule": "binance",
    "taker_fee": 0.0,
    "maker_fee": 0.0,
    "liquidation_fee": 0.0,
    "funding": {"interval": "8h", "rate": 0.0},
    "tiers": {"default": [{"floor": 0, "mmr": 0.005, "max_leverage": 125}]},
}


@dataclass(frozen=True)
class Workload:
    """A benchmark case.

    Attributes
    ----------
    name : str
        Short label (W1, W2, J1, D1).
    description : str
        One line for the results table.
    scenario : Scenario
        What is simulated.
    reference : float or None
        Closed-form isolated liquidation probability, where one exists.
    single_asset_jump_diffusion : bool
        True where sdepy can run the same process (no wicks, one asset).
    """

    name: str
    description: str
    scenario: Scenario
    reference: float | None
    single_asset_jump_diffusion: bool


def diffusion_only(scenario: Scenario, *, modes: tuple[str, ...] = ("isolated",)) -> Scenario:
    """The scenario with jumps, wicks, fees and funding removed and one flat 0.5% tier."""
    data = scenario.to_mapping()
    for asset in data["market"]["assets"].values():
        asset["jumps"] = None
        asset["wicks"] = None
    data["market"]["market_wicks"] = None
    data["exchange"] = dict(FLAT_EXCHANGE)
    data["modes"] = list(modes)
    return ms.load_scenario(data)


def diffusion_reference(scenario: Scenario) -> float:
    """GBM first-passage probability of the first position's flat-tier liquidation barrier."""
    position = scenario.account.positions[0]
    asset = scenario.market.assets[position.asset]
    barrier = liquidation_barrier(position.leverage, 0.005, position.side)
    direction = "down" if position.side == "long" else "up"
    return float(
        gbm_first_passage(
            barrier, asset.vol, scenario.horizon_years, asset.drift, direction=direction
        )
    )


def load_workload(name: str) -> Workload:
    """Build workload ``name`` (W1, W2, J1 or D1)."""
    w1 = ms.load_scenario(ROOT / "params/scenarios/baseline.yaml")
    if name == "W1":
        return Workload(name, "BTC 10x long, Merton jumps + wicks, 30d", w1, None, False)
    if name == "W2":
        w2 = ms.load_scenario(ROOT / "params/scenarios/hedge.yaml")
        return Workload(name, "BTC long / ETH short 5x, jumps + wicks, 30d", w2, None, False)
    if name == "J1":
        j1 = w1.with_overrides({"market.assets.BTC.wicks": None})
        return Workload(name, "W1 without wicks (Merton jump-diffusion)", j1, None, True)
    if name == "D1":
        d1 = diffusion_only(w1)
        return Workload(
            name, "W1 as pure diffusion, flat mmr, isolated", d1, diffusion_reference(d1), True
        )
    raise ValueError(f"unknown workload {name!r}; use one of {', '.join(WORKLOADS)}")


WORKLOADS: tuple[str, ...] = ("W1", "W2", "J1", "D1")
