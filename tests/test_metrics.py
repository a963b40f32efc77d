"""Tests of margin_sim.metrics: VaR/CVaR, summaries, paired differences, survival curves.

Most tests build :class:`~margin_sim.metrics.ChunkOutcome` objects by hand, so the summaries
are checked against numpy computed here, independently of the engine; one test checks a real
engine run's summary against its own per-path table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import margin_sim as ms
from margin_sim.metrics import SUMMARY_COLUMNS, ChunkOutcome, SimulationResult, value_at_risk
from margin_sim.scenario import Scenario

#: DESIGN.md section 6: the summary fields every mode must have (contract).
SECTION_6_SUMMARY = (
    "ruin_probability",
    "ruin_probability_se",
    "liquidation_probability",
    "liquidation_probability_se",
    "expected_final_equity",
    "expected_loss",
    "var_95",
    "cvar_95",
    "median_hours_to_liquidation",
)
#: DESIGN.md section 6: the per-path columns (contract).
SECTION_6_PER_PATH = (
    "p_liquidation",
    "p_ruin",
    "liquidated",
    "hours_to_liquidation",
    "final_equity",
    "min_equity",
)


# ------------------------------------------------------------------------ value_at_risk


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("seed", [0, 1])
def test_value_at_risk_matches_numpy_quantile(level: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    losses = rng.standard_t(3, 5001) * 100.0
    var, cvar = value_at_risk(losses, level)
    assert var == pytest.approx(np.quantile(losses, level), rel=1e-12)
    # expected shortfall: mean of the losses at or beyond the quantile, by sorting
    ordered = np.sort(losses)
    tail = ordered[np.searchsorted(ordered, var, side="left") :]
    assert cvar == pytest.approx(tail.mean(), rel=1e-12)
    assert cvar >= var


def test_value_at_risk_of_a_known_distribution() -> None:
    """Uniform losses on a fine grid: VaR -> level, CVaR -> (1 + level) / 2."""
    losses = np.linspace(0.0, 1.0, 100_001)
    var, cvar = value_at_risk(losses, 0.95)
    assert var == pytest.approx(0.95, abs=1e-9)
    assert cvar == pytest.approx(0.975, abs=1e-5)


def test_value_at_risk_edge_cases() -> None:
    assert all(math.isnan(x) for x in value_at_risk(np.array([]), 0.95))
    assert value_at_risk(np.full(10, 3.0), 0.95) == (3.0, 3.0)
    var, cvar = value_at_risk(np.array([1.0, 2.0, 3.0, 1000.0]), 0.95)
    assert var == pytest.approx(np.quantile([1, 2, 3, 1000], 0.95))
    assert cvar == pytest.approx(1000.0)


# ---------------------------------------------------------------- synthetic outcomes


def _scenario(tiny_scenario: dict[str, Any]) -> Scenario:
    return ms.load_scenario(tiny_scenario)


def _synthetic_outcomes(
    n: int, steps: int, chunk: int, seed: int
) -> tuple[dict[str, list[ChunkOutcome]], dict[str, dict[str, np.ndarray]]]:
    """Random but internally consistent per-path outcomes for both modes, in chunks."""
    rng = np.random.default_rng(seed)
    outcomes: dict[str, list[ChunkOutcome]] = {}
    columns: dict[str, dict[str, np.ndarray]] = {}
    common = rng.uniform(0, 1, n)  # shared path effect: the modes are positively correlated
    for mode, scale in (("isolated", 1.0), ("cross", 0.5)):
        p_liq = np.clip(scale * common**3 + rng.uniform(0, 0.05, n), 0, 0.999)
        p_ruin = np.clip(p_liq + rng.uniform(0, 0.1, n), 0, 1)
        liquidated = rng.uniform(0, 1, n) < p_liq
        hours = np.where(liquidated, rng.uniform(0, 24, n), np.nan)
        final = 10_000 - 9_000 * p_liq - rng.normal(0, 100, n)
        minimum = final - rng.uniform(0, 500, n)
        # a per-path survival curve: the total hazard -ln(1 - p) spread over the steps
        weights = rng.uniform(0, 1, (n, steps))
        hazard = weights / weights.sum(axis=1, keepdims=True) * (-np.log1p(-p_liq))[:, None]
        curve = np.exp(-np.concatenate([np.zeros((n, 1)), np.cumsum(hazard, axis=1)], axis=1))
        columns[mode] = {
            "p_liquidation": 1 - curve[:, -1],
            "p_ruin": p_ruin,
            "liquidated": liquidated,
            "hours_to_liquidation": hours,
            "final_equity": final,
            "min_equity": minimum,
            "curve": curve,
        }
        outcomes[mode] = [
            ChunkOutcome(
                path_index=np.arange(start, min(start + chunk, n)),
                p_liquidation=columns[mode]["p_liquidation"][start : start + chunk],
                p_ruin=p_ruin[start : start + chunk],
                liquidated=liquidated[start : start + chunk],
                hours_to_liquidation=hours[start : start + chunk],
                final_equity=final[start : start + chunk],
                min_equity=minimum[start : start + chunk],
                no_liquidation_by=curve[start : start + chunk],
            )
            for start in range(0, n, chunk)
        ]
    return outcomes, columns


@pytest.fixture
def synthetic(
    tiny_scenario: dict[str, Any],
) -> tuple[SimulationResult, dict[str, dict[str, np.ndarray]]]:
    scenario = _scenario(tiny_scenario)
    n = 3000
    outcomes, columns = _synthetic_outcomes(n, scenario.n_steps, 700, seed=4)
    result = SimulationResult.from_outcomes(scenario, paths=n, seed=1, outcomes=outcomes)
    return result, columns


def test_summary_has_the_section_6_fields(synthetic: tuple) -> None:
    result, _ = synthetic
    summary = result.summary()
    assert set(SECTION_6_SUMMARY) <= set(summary.columns)
    assert set(SECTION_6_SUMMARY) <= set(SUMMARY_COLUMNS)
    assert list(summary.index) == ["isolated", "cross"]
    assert set(SECTION_6_PER_PATH) <= set(result.per_path.columns)
    assert len(result.per_path) == 2 * 3000
    counts = result.per_path.groupby("mode", observed=True)["path"].nunique()
    assert counts.to_dict() == {"isolated": 3000, "cross": 3000}


def test_summary_matches_numpy(synthetic: tuple) -> None:
    result, columns = synthetic
    summary = result.summary()
    balance = result.scenario.account.balance
    for mode, data in columns.items():
        row = summary.loc[mode]
        n = data["p_ruin"].size
        assert row["ruin_probability"] == pytest.approx(data["p_ruin"].mean(), rel=1e-12)
        assert row["ruin_probability_se"] == pytest.approx(
            data["p_ruin"].std(ddof=1) / math.sqrt(n), rel=1e-10
        )
        assert row["liquidation_probability"] == pytest.approx(
            data["p_liquidation"].mean(), rel=1e-12
        )
        assert row["liquidation_probability_se"] == pytest.approx(
            data["p_liquidation"].std(ddof=1) / math.sqrt(n), rel=1e-10
        )
        final = data["final_equity"]
        assert row["expected_final_equity"] == pytest.approx(final.mean(), rel=1e-12)
        assert row["expected_loss"] == pytest.approx(balance - final.mean(), rel=1e-10)
        assert row["var_95"] == pytest.approx(np.quantile(balance - final, 0.95), rel=1e-12)
        assert row["cvar_95"] >= row["var_95"]
        hours = data["hours_to_liquidation"]
        assert row["median_hours_to_liquidation"] == pytest.approx(
            np.median(hours[np.isfinite(hours)]), rel=1e-12
        )


def test_difference_has_paired_standard_errors(synthetic: tuple) -> None:
    result, columns = synthetic
    difference = result.difference()
    for metric, column in (
        ("ruin_probability", "p_ruin"),
        ("liquidation_probability", "p_liquidation"),
        ("expected_final_equity", "final_equity"),
    ):
        a, b = columns["isolated"][column], columns["cross"][column]
        d = a - b
        row = difference.loc[metric]
        assert row["difference"] == pytest.approx(d.mean(), rel=1e-10)
        assert row["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), rel=1e-10)
        assert row["z"] == pytest.approx(d.mean() / row["se"], rel=1e-10)
        assert row["isolated"] == pytest.approx(a.mean()) and row["cross"] == pytest.approx(
            b.mean()
        )
    # the modes are positively correlated here, so pairing shrinks the standard error
    summary = result.summary()
    unpaired = math.hypot(
        summary.loc["isolated", "liquidation_probability_se"],
        summary.loc["cross", "liquidation_probability_se"],
    )
    assert difference.loc["liquidation_probability", "se"] < unpaired


def test_difference_pairs_by_path_not_by_row_order(tiny_scenario: dict[str, Any]) -> None:
    """Chunks given in a different order per mode must still be paired path by path."""
    scenario = _scenario(tiny_scenario)
    outcomes, columns = _synthetic_outcomes(1000, scenario.n_steps, 250, seed=9)
    outcomes["cross"] = outcomes["cross"][::-1]
    result = SimulationResult.from_outcomes(scenario, paths=1000, seed=1, outcomes=outcomes)
    d = columns["isolated"]["final_equity"] - columns["cross"]["final_equity"]
    row = result.difference().loc["expected_final_equity"]
    assert row["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), rel=1e-10)


def test_survival_curve_is_the_mean_of_the_path_curves(synthetic: tuple) -> None:
    result, columns = synthetic
    for mode, data in columns.items():
        curve = result.survival(mode)
        assert list(curve.columns) == ["hours", "survival", "survival_se"]
        expected = data["curve"].mean(axis=0)
        np.testing.assert_allclose(curve["survival"].to_numpy(), expected, rtol=1e-10)
        se = data["curve"].std(axis=0, ddof=1) / math.sqrt(data["curve"].shape[0])
        np.testing.assert_allclose(curve["survival_se"].to_numpy(), se, rtol=1e-6, atol=1e-12)
        assert curve["survival"].iloc[0] == 1.0
        assert np.all(np.diff(curve["survival"].to_numpy()) <= 1e-15)
        assert curve["survival"].iloc[-1] == pytest.approx(
            1 - result.summary().loc[mode, "liquidation_probability"], abs=1e-12
        )
        step_hours = result.scenario.step / 3600.0
        np.testing.assert_allclose(
            curve["hours"].to_numpy(), np.arange(len(curve)) * step_hours, rtol=1e-12
        )


def test_unsimulated_mode_is_a_key_error(tiny_scenario: dict[str, Any]) -> None:
    scenario = _scenario(tiny_scenario)
    outcomes, _ = _synthetic_outcomes(100, scenario.n_steps, 100, seed=2)
    del outcomes["cross"]
    result = SimulationResult.from_outcomes(scenario, paths=100, seed=1, outcomes=outcomes)
    assert list(result.summary().index) == ["isolated"]
    with pytest.raises(KeyError, match="cross"):
        result.survival("cross")
    with pytest.raises(KeyError, match="cross"):
        result.difference()
    assert "P(ruin)" in result.report()


# ----------------------------------------------------------------------- real engine run


@pytest.fixture(scope="module")
def engine_result() -> SimulationResult:
    scenario = ms.load_scenario(
        Path(__file__).resolve().parent.parent / "params" / "scenarios" / "baseline.yaml",
        {"paths": 2000, "horizon": "2d", "account.positions.0.leverage": 20},
    )
    return ms.simulate(scenario, progress=False)


def test_engine_summary_is_computed_from_its_per_path_table(
    engine_result: SimulationResult,
) -> None:
    summary = engine_result.summary()
    balance = engine_result.scenario.account.balance
    for mode in engine_result.modes:
        frame = engine_result.per_path[engine_result.per_path["mode"] == mode]
        assert len(frame) == 2000
        assert frame["path"].is_unique
        final = frame["final_equity"].to_numpy()
        assert summary.loc[mode, "ruin_probability"] == pytest.approx(frame["p_ruin"].mean())
        assert summary.loc[mode, "var_95"] == pytest.approx(np.quantile(balance - final, 0.95))
        assert summary.loc[mode, "liquidated_fraction"] == pytest.approx(frame["liquidated"].mean())


def test_engine_survival_curve_is_non_increasing_from_one(engine_result: SimulationResult) -> None:
    for mode in engine_result.modes:
        curve = engine_result.survival(mode)
        survival = curve["survival"].to_numpy()
        assert survival[0] == 1.0
        assert np.all(np.diff(survival) <= 1e-15)
        assert np.all((survival >= 0) & (survival <= 1))
        assert np.all(curve["survival_se"].to_numpy() >= 0)
        assert len(curve) == engine_result.scenario.n_steps + 1
    isolated = engine_result.survival("isolated")["survival"].iloc[-1]
    assert isolated < 0.99  # the curve actually moves in this scenario


def test_report_is_a_readable_table(engine_result: SimulationResult) -> None:
    text = engine_result.report()
    for label in ("P(ruin)", "P(liquidated)", "VaR 95%", "isolated", "cross", "paired"):
        assert label in text
    assert isinstance(engine_result.summary(), pd.DataFrame)
