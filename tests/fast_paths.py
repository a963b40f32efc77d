"""Shared check for the engine's compiled fast paths: same results as the general code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import margin_sim as ms
from margin_sim import engine

__all__ = ["assert_fast_equals_general"]

#: Per-path columns compared (``liquidated`` is compared exactly).
COLUMNS = ("p_liquidation", "p_ruin", "final_equity", "min_equity", "hours_to_liquidation")


def assert_fast_equals_general(
    file: str, overrides: dict, switch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulate a scenario with the fast path ``switch`` on and off and compare path by path.

    Per-path values within 1e-9 (relative and absolute), sampled liquidations identical, and
    the survival curves within 1e-8: where survival is ~1 its standard error comes from a
    difference of sums of squares whose rounding alone is ~1e-10 (the summation order differs).
    """
    scenario = ms.load_scenario(
        f"params/scenarios/{file}.yaml", {"paths": 1500, "horizon": "7d", **overrides}
    )
    fast = ms.simulate(scenario, progress=False)
    monkeypatch.setattr(engine, switch, False)
    general = ms.simulate(scenario, progress=False)
    frame_fast, frame_general = fast.per_path, general.per_path
    assert (frame_general["p_liquidation"] > 0).any()
    np.testing.assert_array_equal(frame_fast["liquidated"], frame_general["liquidated"])
    for column in COLUMNS:
        np.testing.assert_allclose(
            frame_fast[column], frame_general[column], rtol=1e-9, atol=1e-9, err_msg=column
        )
    for mode in scenario.modes:
        pd.testing.assert_frame_equal(
            fast.survival(mode), general.survival(mode), rtol=1e-9, atol=1e-8
        )
