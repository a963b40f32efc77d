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
from typing import Any

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


# ------------------------------------------------------------- exact per-path oracle


def _bridge_liquidation_probability(scenario: Scenario, side: str, leverage: float) -> np.ndarray:
    """Per-path P(liquidation | grid values) of one position on asset 0, computed here from
    the grid values of :func:`simulate_paths` (same seed): one minus the product over steps
    of the bridge survivals ``1 - exp(-2 (x0 - b)(x1 - b) / (vol^2 dt))`` (DESIGN.md sec. 10)."""
    direction = 1.0 if side == "long" else -1.0
    log_barrier = math.log(liquidation_barrier(leverage, MMR, side))
    out = []
    for chunk in simulate_paths(scenario):
        x = direction * (chunk.log_price[0] - log_barrier)
        start, end = x[:, :-1], x[:, 1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_survival = np.where(
                (start > 0) & (end > 0),
                np.log1p(-np.exp(-2.0 * start * end / chunk.step_variance[0])),
                -np.inf,
            )
        out.append(-np.expm1(log_survival.sum(axis=1)))
    return np.concatenate(out)


@pytest.mark.parametrize(
    "case",
    [
        Case(10, 0.8, "7d", "1h", "long", 3000, ("isolated", "cross"), 130),
        Case(20, 0.8, "2d", "1d", "short", 3000, ("isolated", "cross"), 131),
    ],
    ids=lambda c: c.label,
)
def test_per_path_probability_is_the_product_of_bridge_survivals(case: Case) -> None:
    scenario = diffusion_scenario(case)
    expected = _bridge_liquidation_probability(scenario, case.side, case.leverage)
    per_path = run_case(case).per_path
    for mode in case.modes:
        got = per_path[per_path["mode"] == mode].sort_values("path")["p_liquidation"]
        np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------- ruin


def _single_position_scenario(
    side: str, leverage: float, balance: float, margin: float, equity_fraction: float, **kw: Any
) -> Scenario:
    """Entry 1, no fees or funding, one flat tier; ``kw``: seed, paths, horizon, step, vol."""
    return ms.load_scenario(
        {
            "name": "ruin",
            "seed": kw["seed"],
            "paths": kw["paths"],
            "horizon": kw["horizon"],
            "step": kw["step"],
            "market": {"assets": {"X": {"price": 1.0, "vol": kw["vol"], "drift": 0.0}}},
            "exchange": {
                "rule": "binance",
                "taker_fee": 0.0,
                "maker_fee": 0.0,
                "liquidation_fee": 0.0,
                "funding": {"interval": "8h", "rate": 0.0},
                "tiers": {"default": [{"floor": 0, "mmr": MMR, "max_leverage": 200}]},
            },
            "account": {
                "balance": balance,
                "positions": [{"asset": "X", "side": side, "leverage": leverage, "margin": margin}],
            },
            "modes": ["isolated", "cross"],
            "ruin": {"equity_fraction": equity_fraction},
        }
    )


def _ruin_barriers(
    side: str, leverage: float, balance: float, margin: float, equity_fraction: float
) -> dict[str, float]:
    """Price (entry 1) at which the account is first ruined, per mode (NaN: never).

    Cross: equity ``B + s Q (P - 1)`` reaches ``f B`` at ``P_r = 1 - s (1 - f) B / Q``; the
    liquidation (at the wallet's barrier) leaves the maintenance margin, ``mmr Q P``, which
    is a ruin too when it is <= f B. Isolated: equity ``B - M + max(0, M + s Q (P - 1))``;
    ruin needs ``B - M <= f B``, and then happens at the nearer of the position's value
    falling to ``f B - (B - M)`` and its liquidation (which leaves ``B - M``).
    """
    s = 1.0 if side == "long" else -1.0
    quantity = margin * leverage
    nearer = max if side == "long" else min
    threshold = equity_fraction * balance
    cross_liq = float(liquidation_barrier(quantity / balance, MMR, side))
    cross = 1.0 - s * (balance - threshold) / quantity
    if not math.isnan(cross_liq):  # NaN: a long at <= 1x of the wallet is never liquidated
        assert MMR * quantity * cross_liq <= threshold  # the liquidation is a ruin
        cross = nearer(cross, cross_liq)
    if balance - margin > threshold:
        isolated = math.nan
    else:
        value_threshold = threshold - (balance - margin)
        isolated = nearer(
            1.0 - s * (margin - value_threshold) / quantity,
            float(liquidation_barrier(leverage, MMR, side)),
        )
    return {"isolated": isolated, "cross": cross}


RUIN_CASES = [
    # side, leverage, balance, margin, equity_fraction, seed, paths, horizon, step
    ("long", 10, 200, 100, 0.5, 140, 6000, "7d", "1h"),
    ("short", 10, 200, 100, 0.5, 141, 10000, "7d", "1d"),
    ("long", 10, 200, 100, 0.3, 142, 10000, "7d", "1d"),
    ("long", 5, 1000, 200, 0.9, 143, 10000, "30d", "1d"),
    ("short", 10, 100, 100, 0.5, 144, 6000, "2d", "1h"),
]


@pytest.mark.parametrize(
    "row", RUIN_CASES, ids=[f"{r[0]}-{r[1]}x-f{r[4]}-{r[8]}" for r in RUIN_CASES]
)
def test_ruin_probability_matches_first_passage(row: tuple) -> None:
    side, leverage, balance, margin, fraction, seed, paths, horizon, step = row
    scenario = _single_position_scenario(
        side,
        leverage,
        balance,
        margin,
        fraction,
        seed=seed,
        paths=paths,
        horizon=horizon,
        step=step,
        vol=0.8,
    )
    summary = ms.simulate(scenario, progress=False).summary()
    barriers = _ruin_barriers(side, leverage, balance, margin, fraction)
    for mode, barrier in barriers.items():
        p = summary.loc[mode, "ruin_probability"]
        se = summary.loc[mode, "ruin_probability_se"]
        if math.isnan(barrier):
            assert p == 0.0, mode
            continue
        expected = gbm_first_passage(
            barrier, 0.8, scenario.horizon_years, direction="down" if side == "long" else "up"
        )
        assert abs(p - expected) < Z_MAX * se, (mode, p, se, expected)


# ------------------------------------------------------------------------------ wicks


def test_wick_liquidation_matches_poisson_thinning() -> None:
    """No diffusion (vol 0) and wicks that recover fully: the price is 1 except at wick
    troughs, so a long is liquidated iff some wick's mark depth ``pass_through d`` reaches
    ``1 - barrier``. Wicks of depth ``min(Exp(mean), max)`` arrive at rate lambda, so
    P = 1 - exp(-lambda T P(d >= d*)) = 1 - exp(-lambda T exp(-d* / mean)) (thinning of a
    Poisson process). A short is never liquidated by a drop."""
    for side, pass_through, step, seed in [
        ("long", 1.0, "1h", 150),
        ("long", 0.5, "1d", 151),
        ("short", 1.0, "1h", 152),
    ]:
        scenario = ms.load_scenario(
            {
                **diffusion_scenario(
                    Case(10, 0.0, "7d", step, side, 20000, ("isolated",), seed)
                ).to_mapping(),
                "market": {
                    "assets": {
                        "X": {
                            "price": 1.0,
                            "vol": 0.0,
                            "wicks": {
                                "per_year": 100,
                                "depth_mean": 0.05,
                                "depth_max": 0.5,
                                "recovery": 1.0,
                                "mark_pass_through": pass_through,
                            },
                        }
                    }
                },
            }
        )
        row = ms.simulate(scenario, progress=False).summary().loc["isolated"]
        if side == "short":
            assert row["liquidation_probability"] == 0.0
            continue
        depth = (1.0 - liquidation_barrier(10, MMR, side)) / pass_through
        rate = 100 * scenario.horizon_years
        expected = -math.expm1(-rate * math.exp(-depth / 0.05))
        z = (row["liquidation_probability"] - expected) / row["liquidation_probability_se"]
        assert abs(z) < Z_MAX, (side, pass_through, row["liquidation_probability"], expected)


def test_market_wick_liquidation_of_two_assets_matches_poisson_thinning() -> None:
    """Two longs at 10x (margins 100, wallet 300), vol 0, one market-wide wick source with
    beta 1 and 2. Cross: the buffer at a trough of depth d (B drops 2d) is
    ``300 - 1000 d - 2000 d - mmr (1000 (1 - d) + 1000 (1 - 2d))`` = 0 at
    ``d* = (300 - 2000 mmr) / (3000 - 3000 mmr)``. Isolated: B (beta 2) goes first, at
    ``2 d >= 1 - barrier``."""
    mapping = {
        "name": "market-wicks",
        "seed": 153,
        "paths": 20000,
        "horizon": "7d",
        "step": "1h",
        "market": {
            "assets": {"A": {"price": 1.0, "vol": 0.0}, "B": {"price": 1.0, "vol": 0.0}},
            "market_wicks": {
                "per_year": 100,
                "depth_mean": 0.05,
                "depth_max": 0.5,
                "recovery": 1.0,
                "beta": {"A": 1.0, "B": 2.0},
            },
        },
        "exchange": diffusion_scenario(CASES[0]).exchange.model_dump(mode="json"),
        "account": {
            "balance": 300,
            "positions": [
                {"asset": "A", "side": "long", "leverage": 10, "margin": 100},
                {"asset": "B", "side": "long", "leverage": 10, "margin": 100},
            ],
        },
        "modes": ["isolated", "cross"],
        "ruin": {"equity_fraction": 0.0},
    }
    scenario = ms.load_scenario(mapping)
    summary = ms.simulate(scenario, progress=False).summary()
    rate = 100 * scenario.horizon_years
    depths = {
        "cross": (300 - 2000 * MMR) / (3000 - 3000 * MMR),
        "isolated": (1.0 - liquidation_barrier(10, MMR, "long")) / 2.0,
    }
    for mode, depth in depths.items():
        expected = -math.expm1(-rate * math.exp(-depth / 0.05))
        p = summary.loc[mode, "liquidation_probability"]
        se = summary.loc[mode, "liquidation_probability_se"]
        assert abs(p - expected) < Z_MAX * se, (mode, p, se, expected)


# ------------------------------------------------------- several positions, one driver


def _one_driver_scenario(step: str, paths: int, seed: int, modes: list[str]) -> Scenario:
    """Two 10x longs on assets with correlation 1 and the same vol: one price driver.

    Cross (wallet = both margins): buffer ``W - sum Q + (1 - mmr) sum Q R`` hits 0 at the
    single-position barrier ``R* = (1 - 1/L)/(1 - mmr)``. Isolated: both positions have that
    barrier on the same path, so P(any liquidation) is the single-position probability.
    """
    return ms.load_scenario(
        {
            "name": "one-driver",
            "seed": seed,
            "paths": paths,
            "horizon": "7d",
            "step": step,
            "market": {
                "assets": {"A": {"price": 1.0, "vol": 0.8}, "B": {"price": 50.0, "vol": 0.8}},
                "correlation": {"A-B": 1.0},
            },
            "exchange": diffusion_scenario(CASES[0]).exchange.model_dump(mode="json"),
            "account": {
                "balance": 200,
                "positions": [
                    {"asset": "A", "side": "long", "leverage": 10, "margin": 100},
                    {"asset": "B", "side": "long", "leverage": 10, "margin": 100},
                ],
            },
            "modes": modes,
            "ruin": {"equity_fraction": 0.0},
        }
    )


def test_cross_on_one_driver_matches_first_passage_at_hourly_steps() -> None:
    scenario = _one_driver_scenario("1h", 10000, 160, ["cross"])
    row = ms.simulate(scenario, progress=False).summary().loc["cross"]
    expected = gbm_first_passage(liquidation_barrier(10, MMR, "long"), 0.8, 7 * DAY_YEARS)
    z = (row["liquidation_probability"] - expected) / row["liquidation_probability_se"]
    assert abs(z) < Z_MAX, (row["liquidation_probability"], expected, z)


def test_cross_on_one_driver_matches_first_passage_at_daily_steps() -> None:
    scenario = _one_driver_scenario("1d", 400_000, 161, ["cross"])
    row = ms.simulate(scenario, progress=False).summary().loc["cross"]
    expected = gbm_first_passage(liquidation_barrier(10, MMR, "long"), 0.8, 7 * DAY_YEARS)
    z = (row["liquidation_probability"] - expected) / row["liquidation_probability_se"]
    assert abs(z) < Z_MAX, (row["liquidation_probability"], expected, z)


@pytest.mark.parametrize("step", ["1h", "1d"])
def test_isolated_positions_on_one_driver_liquidate_like_one_position(step: str) -> None:
    """Per path: with both assets on one driver, P(any of the two is liquidated | grid) is
    the single position's bridge probability (computed here from the grid values)."""
    scenario = _one_driver_scenario(step, 2000, 162, ["isolated"])
    chunks = list(simulate_paths(scenario))
    for chunk in chunks:  # the premise: one driver (same log returns)
        returns = chunk.log_price - chunk.log_price[:, :, :1]
        np.testing.assert_allclose(returns[0], returns[1], atol=1e-9)
    expected = _bridge_liquidation_probability(scenario, "long", 10)
    result = ms.simulate(scenario, progress=False)
    got = result.per_path.sort_values("path")["p_liquidation"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------ jumps


def _jump_only_liquidation_mc(
    rate: float, mean: float, std: float, horizon: float, log_barrier: float, n: int, seed: int
) -> tuple[float, float]:
    """P(min ln S <= log_barrier) for ln S(t) = mu t + compound Poisson (normal sizes), by
    Monte Carlo here. mu = -rate (E[e^J] - 1) keeps E[S_T] = S_0 (Merton 1976); with
    mu >= 0 the minimum is reached just after a jump (or at 0)."""
    rng = np.random.default_rng(seed)
    mu = -rate * math.expm1(mean + 0.5 * std**2)
    assert mu >= 0
    counts = rng.poisson(rate * horizon, n)
    width = int(counts.max())
    valid = np.arange(width)[None, :] < counts[:, None]
    times = np.sort(np.where(valid, rng.uniform(0, horizon, (n, width)), np.inf), axis=1)
    sizes = rng.normal(mean, std, (n, width))
    sizes[~valid] = 0.0
    level = np.where(valid, mu * np.where(valid, times, 0.0) + np.cumsum(sizes, axis=1), np.inf)
    hit = (level.min(axis=1, initial=np.inf) <= log_barrier).astype(float)
    p = hit.mean()
    return p, math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("step", ["1h", "1d"])
def test_jump_liquidation_matches_compound_poisson(step: str) -> None:
    """No diffusion: only permanent jumps (checked exactly after each jump) can liquidate."""
    rate, mean, std = 100.0, -0.03, 0.02
    base = diffusion_scenario(Case(10, 0.0, "7d", step, "long", 20000, ("isolated",), 170))
    mapping = base.to_mapping()
    mapping["market"]["assets"]["X"]["jumps"] = {
        "model": "merton",
        "per_year": rate,
        "mean": mean,
        "std": std,
    }
    scenario = ms.load_scenario(mapping)
    row = ms.simulate(scenario, progress=False).summary().loc["isolated"]
    expected, se_mc = _jump_only_liquidation_mc(
        rate,
        mean,
        std,
        scenario.horizon_years,
        math.log(liquidation_barrier(10, MMR, "long")),
        200_000,
        171,
    )
    se = math.hypot(row["liquidation_probability_se"], se_mc)
    assert 0.05 < expected < 0.95
    assert abs(row["liquidation_probability"] - expected) < Z_MAX * se, (
        row["liquidation_probability"],
        expected,
        se,
    )


# ---------------------------------------------------------------------------- funding


@pytest.mark.parametrize("side", ["long", "short"])
def test_funding_moves_the_isolated_barrier_at_each_payment(side: str) -> None:
    """Per path, exactly: funding (rate per 8h on the mark notional, paid at the grid point of
    each funding time) comes out of the isolated margin M, and Binance's isolated liquidation
    price with margin M_t is ``LP_t = (M_t - s Q EP) / (Q mmr - s Q)`` (DESIGN.md sec. 4).
    Step s uses the margin after the payments at its start; the liquidation probability is one
    minus the product of the bridge survivals to ``ln LP`` over the steps."""
    rate = 0.002
    case = Case(10, 0.8, "2d", "1h", side, 2000, ("isolated",), 180)
    mapping = diffusion_scenario(case).to_mapping()
    mapping["exchange"]["funding"] = {"interval": "8h", "rate": rate}
    scenario = ms.load_scenario(mapping)
    s = 1.0 if side == "long" else -1.0
    margin, quantity = 100.0, 1000.0
    steps = scenario.n_steps
    paid_at = (np.arange(steps + 1) % 8 == 0) & (np.arange(steps + 1) > 0)
    expected = []
    for chunk in simulate_paths(scenario):
        price = np.exp(chunk.log_price[0])
        payments = np.where(paid_at[None, :], s * quantity * price * rate, 0.0)
        margin_at = margin - np.cumsum(payments, axis=1)[:, :-1]  # margin during step s
        barrier = (margin_at - s * quantity) / (quantity * MMR - s * quantity)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_barrier = np.log(barrier)
            start = s * (chunk.log_price[0][:, :-1] - log_barrier)
            end = s * (chunk.log_price[0][:, 1:] - log_barrier)
            log_survival = np.where(
                (start > 0) & (end > 0),
                np.log1p(-np.exp(-2.0 * start * end / chunk.step_variance[0])),
                -np.inf,
            )
        expected.append(-np.expm1(log_survival.sum(axis=1)))
    result = ms.simulate(scenario, progress=False)
    got = result.per_path.sort_values("path")["p_liquidation"].to_numpy()
    np.testing.assert_allclose(got, np.concatenate(expected), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------- final equity


def test_final_equity_is_a_stopped_martingale_without_fees() -> None:
    """Drift 0, no fees or funding: the price is a martingale, equity is linear in it and
    stopped at the liquidation, so (optional stopping) E[final equity] = balance in cross,
    where a liquidated account keeps its maintenance margin ``mmr Q b`` (liquidation fee 0).
    Isolated (wallet = margin) loses that maintenance margin too: E = B - mmr Q b P(liq)."""
    case = Case(10, 0.8, "7d", "1d", "long", 20000, ("isolated", "cross"), 190)
    result = ms.simulate(diffusion_scenario(case), progress=False)
    summary = result.summary()
    balance, quantity = 100.0, 1000.0
    barrier = liquidation_barrier(10, MMR, "long")
    p_liq = reference_probability(case)
    expected = {"cross": balance, "isolated": balance - MMR * quantity * barrier * p_liq}
    for mode, value in expected.items():
        mean = summary.loc[mode, "expected_final_equity"]
        se = summary.loc[mode, "expected_final_equity_se"]
        assert abs(mean - value) < Z_MAX * se, (mode, mean, se, value)
    # paired, the difference is much sharper: isolated - cross = -mmr Q b P(liq)
    row = result.difference().loc["expected_final_equity"]
    lost = -MMR * quantity * barrier * p_liq
    assert row["se"] < 0.5 * summary.loc["cross", "expected_final_equity_se"]
    assert abs(row["difference"] - lost) < Z_MAX * row["se"], (row["difference"], row["se"], lost)


# ------------------------------------------------------------------ time to liquidation


@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_sampled_liquidation_times_follow_the_first_passage_law(mode: str) -> None:
    """Among liquidated paths, the sampled times are distributed as the first-passage time
    given that it is <= T: F(t) / F(T) with F = gbm_first_passage at horizon t. At the
    reference quantiles q of that law, the fraction of sampled times below must be q within
    4 binomial standard errors."""
    case = CASES[4]  # 10x long, vol 0.8, 7 days of hourly steps
    frame = run_case(case).per_path
    hours = frame.loc[frame["mode"] == mode, "hours_to_liquidation"].to_numpy()
    hours = hours[np.isfinite(hours)]
    assert hours.size > 1000
    barrier = liquidation_barrier(case.leverage, MMR, case.side)
    total = gbm_first_passage(barrier, case.vol, 7 * DAY_YEARS)
    grid = np.linspace(0.5, 7 * 24, 2000)
    law = np.asarray(gbm_first_passage(barrier, case.vol, grid / 8760.0)) / total
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        t_q = float(np.interp(q, law, grid))
        fraction = float(np.mean(hours <= t_q))
        assert abs(fraction - q) < Z_MAX * math.sqrt(q * (1 - q) / hours.size), (q, t_q, fraction)
