"""Shared fixtures of the test suite.

RuntimeWarnings raised inside ``margin_sim`` (overflow, invalid value in log, ...) are test
errors: see ``filterwarnings`` in pyproject.toml (``error::RuntimeWarning:margin_sim.*``);
tests/test_packaging.py checks that the filter is still in place.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

__all__ = ["REPO_ROOT", "TINY_SCENARIO"]

#: The repository's top folder (the one holding pyproject.toml).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: A small valid scenario: one BTC long at 10x on binance-usdm, 200 paths over one day of
#: hourly steps. Prices in USDT, vol and drift annualised, rates per year.
TINY_SCENARIO: dict[str, Any] = {
    "name": "tiny",
    "seed": 1,
    "paths": 200,
    "horizon": "1d",
    "step": "1h",
    "chunk_paths": 100,
    "market": {
        "assets": {
            "BTC": {
                "price": 60000.0,
                "vol": 0.6,
                "drift": 0.0,
                "jumps": {"model": "merton", "per_year": 10.0, "mean": -0.02, "std": 0.05},
                "wicks": {"per_year": 6.0, "depth_mean": 0.06, "depth_max": 0.5, "recovery": 0.9},
            }
        }
    },
    "exchange": "binance-usdm",
    "account": {
        "balance": 10000.0,
        "positions": [{"asset": "BTC", "side": "long", "leverage": 10.0, "margin": 1000.0}],
    },
    "modes": ["isolated", "cross"],
    "ruin": {"equity_fraction": 0.5},
}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def market_data_dir(repo_root: Path) -> Path:
    """``../shared/data/market`` next to the repository; skips the test when it is absent."""
    folder = (repo_root.parent / "shared" / "data" / "market").resolve()
    if not folder.is_dir():
        pytest.skip(f"market data folder {folder} is absent (needs ../shared/data/market)")
    return folder


@pytest.fixture
def tiny_scenario() -> dict[str, Any]:
    """A fresh copy of :data:`TINY_SCENARIO` (a mapping for ``ms.load_scenario``); edit freely."""
    return copy.deepcopy(TINY_SCENARIO)
