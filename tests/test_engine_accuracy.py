"""The engine's accuracy contract (issue 5, DESIGN.md section 5).

Pure diffusion (no fees, funding, jumps or wicks; one flat maintenance tier, mmr 0.5%; entry
price 1): the engine's liquidation probability must match the closed-form first-passage
probability of geometric Brownian motion (:func:`margin_sim.reference.gbm_first_passage`,
reflection principle) at a barrier :func:`margin_sim.reference.liquidation_barrier`, at every
grid step from 1 minute to 1 day, long and short, isolated and cross (with wallet == margin the
cross account has the same barrier). Every case uses its own seed, so the z-scores of the cases
are independent and can be pooled.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

import margin_sim as ms
from margin_sim.market import simulate_paths
from margin_sim.metrics import SimulationResult
from margin_sim.reference import (
    discrete_monitoring_probability,
    gbm_first_passage,
    liquidation_barrier,
)
from margin_sim.scenario import Scenario

MMR = 0.005
DAY_YEARS = 1.0 / 365.0
#: Tolerance in standard errors for one case: 4 keeps false alarms rare over ~20 cases; the
#: pooled test below checks that the z-scores as a whole look like standard normals.
Z_MAX = 4.0


@dataclass(frozen=True)
class Case:
    """One accuracy case: leverage, annual vol, horizon and step (text), side, paths, modes."""

    leverage: float
    vol: float
    horizon: str
    step: str
    side: str
    paths: int
    modes: tuple[str, ...]
    seed: int

    @property
    def label(self) -> str:
        return (
            f"{self.leverage:g}x-vol{self.vol:g}-{self.horizon}-step{self.step}-{self.side}"
            f"-{'+'.join(self.modes)}"
        )


CASES = (
    # 1-minute steps: 1-day horizon only (1440 steps), one mode each to stay fast
    Case(20, 0.8, "1d", "1min", "long", 3000, ("isolated",), 101),
    Case(15, 1.0, "1d", "1min", "short", 3000, ("cross",), 102),
    # hourly steps
    Case(10, 0.8, "1d", "1h", "long", 20000, ("isolated", "cross"), 103),  # table row 1
    Case(20, 0.8, "1d", "1h", "long", 8000, ("isolated", "cross"), 104),  # table row 4
    Case(10, 0.8, "7d", "1h", "long", 5000, ("isolated", "cross"), 105),  # table row 2
    Case(20, 0.8, "1d", "1h", "short", 8000, ("isolated", "cross"), 106),
    Case(50, 0.3, "1d", "1h", "long", 8000, ("isolated",), 107),
    Case(25, 0.5, "1d", "1h", "long", 8000, ("cross",), 108),
    Case(8, 0.6, "7d", "1h", "short", 4000, ("isolated", "cross"), 109),
    # daily steps
    Case(5, 0.8, "30d", "1d", "long", 10000, ("isolated", "cross"), 110),  # table row 3
    Case(10, 0.8, "7d", "1d", "long", 10000, ("isolated", "cross"), 111),  # table row 2
    Case(3, 1.2, "30d", "1d", "short", 10000, ("isolated", "cross"), 112),
    Case(10, 0.8, "7d", "1d", "short", 10000, ("isolated",), 113),
    Case(2, 1.0, "30d", "1d", "long", 10000, ("cross",), 114),
    Case(5, 0.8, "30d", "1d", "short", 10000, ("isolated", "cross"), 115),
)


def diffusion_scenario(case: Case) -> Scenario:
    """Entry 1, margin = wallet = 100, no fees or funding, one flat tier (mmr 0.5%)."""
    margin = 100.0
    return ms.load_scenario(
        {
            "name": case.label,
            "seed": case.seed,
            "paths": case.paths,
            "horizon": case.horizon,
            "step": case.step,
            "chunk_paths": 10000,
            "market": {"assets": {"X": {"price": 1.0, "vol": case.vol, "drift": 0.0}}},
            "exchange": {
                "rule": "binance",
                "taker_fee": 0.0,
                "maker_fee": 0.0,
                "liquidation_fee": 0.0,
                "funding": {"interval": "8h", "rate": 0.0},
                "tiers": {"default": [{"floor": 0, "mmr": MMR, "max_leverage": 200}]},
            },
            "account": {
                "balance": margin,
                "positions": [
                    {"asset": "X", "side": case.side, "leverage": case.leverage, "margin": margin}
                ],
            },
            "modes": list(case.modes),
            "ruin": {"equity_fraction": 0.0},
        }
    )


def reference_probability(case: Case, horizon_years: float | None = None) -> float:
    """Closed-form continuous first-passage probability of the case's barrier."""
    scenario = diffusion_scenario(case)
    horizon = scenario.horizon_years if horizon_years is None else horizon_years
    return float(
        gbm_first_passage(
            liquidation_barrier(case.leverage, MMR, case.side),
            case.vol,
            horizon,
            direction="down" if case.side == "long" else "up",
        )
    )


@functools.cache
def run_case(case: Case) -> SimulationResult:
    """The engine's result for a case (cached: several tests read the same run)."""
    return ms.simulate(diffusion_scenario(case), progress=False)


def case_z(case: Case, mode: str) -> float:
    row = run_case(case).summary().loc[mode]
    return (row["liquidation_probability"] - reference_probability(case)) / row[
        "liquidation_probability_se"
    ]


# ----------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize(
    ("leverage", "horizon_days", "expected"),
    [(10, 1, 0.017404), (10, 7, 0.383553), (5, 30, 0.379657), (20, 1, 0.275320)],
)
def test_reference_values_of_issue_5(leverage: float, horizon_days: int, expected: float) -> None:
    barrier = liquidation_barrier(leverage, MMR, "long")
    assert barrier == pytest.approx((1 - 1 / leverage) / (1 - MMR), rel=1e-14)
    value = gbm_first_passage(barrier, 0.8, horizon_days * DAY_YEARS)
    assert round(value, 6) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- the engine


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c.step == "1min" else c for c in CASES],
    ids=[c.label for c in CASES],
)
def test_liquidation_probability_matches_first_passage(case: Case) -> None:
    summary = run_case(case).summary()
    expected = reference_probability(case)
    for mode in case.modes:
        p = summary.loc[mode, "liquidation_probability"]
        se = summary.loc[mode, "liquidation_probability_se"]
        assert 0 < se < 0.02, (mode, se)
        z = (p - expected) / se
        assert abs(z) < Z_MAX, f"{case.label} {mode}: {p:.5f} ± {se:.5f} vs {expected:.5f}"


@pytest.mark.slow
def test_pooled_z_scores_look_standard_normal() -> None:
    """Across independent cases the z-scores should have mean ~0 and sum of squares ~ chi2:
    catches a small bias shared by all cases, and standard errors that are too large."""
    z = np.array([case_z(case, case.modes[0]) for case in CASES])
    m = z.size
    assert abs(z.mean()) < 4.0 / math.sqrt(m), z
    chi2 = float(np.sum(z**2))
    assert stats.chi2.ppf(1e-4, m) < chi2 < stats.chi2.ppf(1 - 1e-4, m), z


@pytest.mark.parametrize("case", [c for c in CASES if len(c.modes) == 2], ids=lambda c: c.label)
def test_cross_with_wallet_equal_to_margin_has_the_isolated_barrier(case: Case) -> None:
    per_path = run_case(case).per_path
    isolated = per_path[per_path["mode"] == "isolated"].sort_values("path")
    cross = per_path[per_path["mode"] == "cross"].sort_values("path")
    np.testing.assert_allclose(
        isolated["p_liquidation"].to_numpy(),
        cross["p_liquidation"].to_numpy(),
        rtol=1e-10,
        atol=1e-14,
    )


def test_closes_only_check_is_biased_low_and_the_engine_is_not() -> None:
    """Checking only the hourly closes misses crossings between them (0.0125 instead of
    0.0174 in issue 5's first row); the bridge correction removes that bias."""
    case = Case(10, 0.8, "1d", "1h", "long", 40000, ("isolated",), 120)
    scenario = diffusion_scenario(case)
    expected = reference_probability(case)
    log_barrier = math.log(liquidation_barrier(case.leverage, MMR, case.side))
    hits = np.concatenate(
        [
            (chunk.log_price[0] <= log_barrier).any(axis=1)
            for chunk in simulate_paths(scenario, paths=case.paths, seed=case.seed)
        ]
    )
    closes = hits.mean()
    closes_se = math.sqrt(closes * (1 - closes) / hits.size)
    z_closes = (closes - expected) / closes_se
    summary = run_case(case).summary().loc["isolated"]
    z_engine = (summary["liquidation_probability"] - expected) / summary[
        "liquidation_probability_se"
    ]
    assert z_closes < -4.0, (closes, expected, z_closes)
    assert abs(z_engine) < Z_MAX, (summary["liquidation_probability"], expected, z_engine)
    # and the closes-only number is what Broadie-Glasserman-Kou predicts for hourly checks
    predicted = discrete_monitoring_probability(
        liquidation_barrier(case.leverage, MMR, case.side), case.vol, 1 * DAY_YEARS, 1 / 8760
    )
    assert abs(closes - predicted) < 4 * closes_se, (closes, predicted)


def test_sampled_liquidations_agree_with_their_probabilities() -> None:
    """``liquidated`` is drawn from ``p_liquidation``: their per-path difference has mean 0."""
    differences = []
    for case in CASES[2:6] + CASES[9:12]:
        per_path = run_case(case).per_path
        for mode in case.modes:
            frame = per_path[per_path["mode"] == mode]
            diff = frame["liquidated"].to_numpy(float) - frame["p_liquidation"].to_numpy()
            se = diff.std(ddof=1) / math.sqrt(diff.size)
            assert abs(diff.mean()) < Z_MAX * se, (case.label, mode, diff.mean(), se)
            differences.append(diff)
    pooled = np.concatenate(differences)
    assert abs(pooled.mean()) < Z_MAX * pooled.std(ddof=1) / math.sqrt(pooled.size)


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[9]], ids=lambda c: c.label)
def test_survival_curve_ends_at_one_minus_liquidation_probability(case: Case) -> None:
    result = run_case(case)
    summary = result.summary()
    for mode in case.modes:
        curve = result.survival(mode)
        assert curve["survival"].iloc[0] == pytest.approx(1.0, abs=1e-15)
        assert curve["survival"].iloc[-1] == pytest.approx(
            1.0 - summary.loc[mode, "liquidation_probability"], abs=1e-12
        )
        assert curve["survival_se"].iloc[-1] == pytest.approx(
            summary.loc[mode, "liquidation_probability_se"], rel=1e-6
        )
        assert curve["hours"].iloc[-1] == pytest.approx(result.scenario.horizon / 3600.0)


def test_survival_curve_matches_first_passage_at_intermediate_times() -> None:
    case = CASES[4]  # 10x long, 7 days of hourly steps
    curve = run_case(case).survival("isolated").set_index("hours")
    for days in (1, 2, 4, 7):
        row = curve.loc[24.0 * days]
        expected = 1.0 - reference_probability(case, days * DAY_YEARS)
        assert abs(row["survival"] - expected) < Z_MAX * row["survival_se"], (days, row)
