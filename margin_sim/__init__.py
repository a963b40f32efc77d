"""margin_sim: isolated versus cross margin for leveraged perpetual futures, by Monte Carlo.

``import margin_sim as ms``; the entry points load lazily so that importing the package is
cheap and the numerics never pull in notebook or plotting libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_ENTRY_POINTS = {
    "load_scenario": "margin_sim.scenario",
    "Scenario": "margin_sim.scenario",
    "apply_overrides": "margin_sim.scenario",
    "parse_duration": "margin_sim.durations",
    "MarginSimError": "margin_sim.errors",
    "ScenarioError": "margin_sim.errors",
    "ExchangeError": "margin_sim.errors",
    "GridError": "margin_sim.errors",
    "DataError": "margin_sim.errors",
    "simulate_paths": "margin_sim.market",
    "sample_paths": "margin_sim.market",
    "liquidation_price": "margin_sim.exchange",
    "bankruptcy_price": "margin_sim.exchange",
    "maintenance_margin": "margin_sim.exchange",
    "simulate": "margin_sim.engine",
    "SimulationResult": "margin_sim.engine",
    "KEEP_PATHS_LIMIT": "margin_sim.engine",
    "PathsNotKeptError": "margin_sim.metrics",
    "run_grid": "margin_sim.grid",
    "load_grid": "margin_sim.grid",
    "run_report": "margin_sim.notebooks",
    "load_candles": "margin_sim.data",
    "run_backtest": "margin_sim.backtest",
    "calibrate_market": "margin_sim.calibrate",
}

__all__ = ["__version__", *sorted(_ENTRY_POINTS)]


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module 'margin_sim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
