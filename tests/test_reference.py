"""Tests of margin_sim.reference against independent oracles: scipy laws, quadrature, MC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import zeta

from margin_sim.errors import ScenarioError
from margin_sim.reference import (
    BGK_BETA,
    bgk_shift,
    discrete_monitoring_probability,
    gbm_first_passage,
    kou_first_passage,
    kou_levy_exponent,
    liquidation_barrier,
)

DAY = 1.0 / 365.0


def _hitting_cdf_by_quadrature(distance: float, speed: float, vol: float, horizon: float) -> float:
    """P(first time BM with drift ``speed`` towards a level at ``distance`` > 0 hits it <= T).

    Integrates the Bachelier-Levy first-passage density
    a / (s sqrt(2 pi t^3)) exp(-(a - m t)^2 / (2 s^2 t)), valid for either sign of m
    (defective when the drift points away).
    """

    def density(t: float) -> float:
        return (
            distance
            / (vol * np.sqrt(2 * np.pi * t**3))
            * np.exp(-((distance - speed * t) ** 2) / (2 * vol**2 * t))
        )

    value, _ = integrate.quad(density, 0.0, horizon, limit=200, epsabs=1e-13, epsrel=1e-11)
    return value


# --------------------------------------------------------------------------- GBM


@pytest.mark.parametrize(
    ("leverage", "vol", "days", "expected"),
    [
        (10, 0.8, 1, 0.017404),
        (10, 0.8, 7, 0.383553),
        (5, 0.8, 30, 0.379657),
        (20, 0.8, 1, 0.275320),
    ],
)
def test_reference_table_of_issue_5(leverage: float, vol: float, days: float, expected: float):
    barrier = liquidation_barrier(leverage, 0.005, "long")
    assert gbm_first_passage(barrier, vol, days * DAY) == pytest.approx(expected, abs=6e-7)


@pytest.mark.parametrize("ratio", [0.5, 0.8, 0.95, 0.99])
@pytest.mark.parametrize("vol", [0.2, 0.8, 1.5])
@pytest.mark.parametrize("days", [0.5, 7, 90])
def test_down_matches_inverse_gaussian(ratio: float, vol: float, days: float):
    # With drift 0 the log price drifts towards a lower level at m = vol^2/2; the hitting
    # time of a level a by such a BM is inverse Gaussian with mean a/m and shape a^2/vol^2.
    distance = -np.log(ratio)
    speed = 0.5 * vol**2
    shape = distance**2 / vol**2
    law = stats.invgauss(mu=(distance / speed) / shape, scale=shape)
    assert gbm_first_passage(ratio, vol, days * DAY) == pytest.approx(law.cdf(days * DAY), abs=1e-9)


@pytest.mark.parametrize("ratio", [1.05, 1.3, 2.0])
@pytest.mark.parametrize("drift", [0.5, 1.0])
def test_up_matches_inverse_gaussian(ratio: float, drift: float):
    vol, horizon = 0.6, 30 * DAY
    distance = np.log(ratio)
    speed = drift - 0.5 * vol**2  # > 0: towards the upper level
    shape = distance**2 / vol**2
    law = stats.invgauss(mu=(distance / speed) / shape, scale=shape)
    got = gbm_first_passage(ratio, vol, horizon, drift, direction="up")
    assert got == pytest.approx(law.cdf(horizon), abs=1e-9)


@pytest.mark.parametrize("drift", [-2.0, -0.3, 0.0, 0.3, 1.0, 3.0])
@pytest.mark.parametrize("direction", ["down", "up"])
def test_matches_first_passage_density_any_drift(drift: float, direction: str):
    vol, horizon = 0.7, 20 * DAY
    ratio = 0.85 if direction == "down" else 1.0 / 0.85
    nu = drift - 0.5 * vol**2
    distance = abs(np.log(ratio))
    speed = -nu if direction == "down" else nu
    expected = _hitting_cdf_by_quadrature(distance, speed, vol, horizon)
    got = gbm_first_passage(ratio, vol, horizon, drift, direction=direction)
    assert got == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("leverage", [2, 5, 10, 25, 50, 100])
@pytest.mark.parametrize("drift", [-0.5, 0.0, 0.4])
def test_short_is_mirror_of_long(leverage: float, drift: float):
    # -ln S has log drift -nu, i.e. price drift vol^2 - mu, and the level 1/B below.
    vol, horizon = 0.8, 7 * DAY
    barrier = liquidation_barrier(leverage, 0.005, "short")
    up = gbm_first_passage(barrier, vol, horizon, drift, direction="up")
    mirrored = gbm_first_passage(1 / barrier, vol, horizon, vol**2 - drift, direction="down")
    assert up == pytest.approx(mirrored, rel=1e-12, abs=1e-15)


def test_vectorised_broadcasting_matches_scalars():
    ratios = np.array([[0.7], [0.9], [0.99]])
    horizons = np.array([DAY, 7 * DAY, 30 * DAY, 0.0])
    grid = gbm_first_passage(ratios, 0.8, horizons, 0.1)
    assert grid.shape == (3, 4)
    for i, r in enumerate(ratios[:, 0]):
        for j, t in enumerate(horizons):
            assert grid[i, j] == gbm_first_passage(float(r), 0.8, float(t), 0.1)
    assert isinstance(gbm_first_passage(0.9, 0.8, DAY), float)


def test_edge_cases():
    # already at or past the level
    assert gbm_first_passage(1.0, 0.8, DAY) == 1.0
    assert gbm_first_passage(1.2, 0.8, DAY) == 1.0
    assert gbm_first_passage(0.8, 0.8, DAY, direction="up") == 1.0
    # unreachable levels, and "no level" from a long at 1x
    assert gbm_first_passage(0.0, 0.8, DAY) == 0.0
    assert gbm_first_passage(np.inf, 0.8, DAY, direction="up") == 0.0
    assert gbm_first_passage(liquidation_barrier(1.0, 0.005, "long"), 0.8, DAY) == 0.0
    # no time, no noise: deterministic exp(nu T)
    assert gbm_first_passage(0.9, 0.8, 0.0) == 0.0
    assert gbm_first_passage(0.9, 0.0, 1.0, drift=-0.2) == 1.0  # e^-0.2 = 0.82 < 0.9
    assert gbm_first_passage(0.9, 0.0, 1.0, drift=-0.05) == 0.0
    assert gbm_first_passage(1.1, 0.0, 1.0, drift=0.2, direction="up") == 1.0
    # extreme parameters: no overflow, still a probability
    with np.errstate(all="raise"):
        p = gbm_first_passage(0.01, 5.0, 10.0, drift=-5.0)
    assert 0.0 <= p <= 1.0
    # continuity as vol -> 0 on the deterministic side
    assert gbm_first_passage(0.9, 1e-6, 1.0, drift=-0.05) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ScenarioError, match="direction"):
        gbm_first_passage(0.9, 0.8, DAY, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="side"):
        liquidation_barrier(10, 0.005, "flat")  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="leverage"):
        liquidation_barrier(0, 0.005, "long")
    with pytest.raises(ScenarioError, match="vol"):
        gbm_first_passage(0.9, -0.1, DAY)


@pytest.mark.parametrize("leverage", [1.5, 3, 10, 125])
@pytest.mark.parametrize("mmr", [0.0, 0.004, 0.05])
def test_liquidation_barrier_solves_margin_equation(leverage: float, mmr: float):
    # margin balance = maintenance requirement at the barrier, per unit quantity, entry 1
    long = liquidation_barrier(leverage, mmr, "long")
    short = liquidation_barrier(leverage, mmr, "short")
    assert 1 / leverage + (long - 1) == pytest.approx(long * mmr, abs=1e-14)
    assert 1 / leverage - (short - 1) == pytest.approx(short * mmr, abs=1e-14)
    if 1 / leverage > mmr:  # otherwise the position is liquidated on entry
        assert long < 1 < short


def test_liquidation_barrier_vectorised_and_nan_for_unleveraged_long():
    lev = np.array([0.5, 1.0, 2.0])
    out = liquidation_barrier(lev, 0.005, "long")
    assert np.isnan(out[0]) and np.isnan(out[1]) and out[2] > 0
    assert not np.any(np.isnan(liquidation_barrier(lev, 0.005, "short")))


# --------------------------------------------------------------------------- BGK


def test_bgk_constant_is_minus_zeta_half_over_root_two_pi():
    assert pytest.approx(-zeta(0.5) / np.sqrt(2 * np.pi), rel=1e-14) == BGK_BETA
    assert bgk_shift(0.8, 1 / 8760) == pytest.approx(np.exp(BGK_BETA * 0.8 * np.sqrt(1 / 8760)))


@pytest.mark.parametrize("direction", ["down", "up"])
def test_bgk_shift_moves_level_away_and_lowers_probability(direction: str):
    ratio = 0.9 if direction == "down" else 1.1
    steps = np.array([1 / 365, 1 / 8760, 1 / 525600, 1e-18])
    discrete = discrete_monitoring_probability(ratio, 0.8, 7 * DAY, steps, direction=direction)
    continuous = gbm_first_passage(ratio, 0.8, 7 * DAY, direction=direction)
    assert np.all(np.diff(discrete) > 0)  # finer checks -> closer to continuous, from below
    assert np.all(discrete < continuous)
    assert discrete[-1] == pytest.approx(continuous, abs=1e-6)


def test_bgk_matches_close_only_monte_carlo():
    # Check only the 24 hourly closes of one day, 10x long: issue 5 says about 0.0125.
    rng = np.random.default_rng(20240601)
    vol, horizon, n_steps, paths = 0.8, DAY, 24, 400_000
    barrier = liquidation_barrier(10, 0.005, "long")
    dt = horizon / n_steps
    increments = rng.standard_normal((paths, n_steps), dtype=np.float32)
    log_price = np.cumsum(-0.5 * vol**2 * dt + vol * np.sqrt(dt) * increments, axis=1)
    hit = (log_price.min(axis=1) <= np.log(barrier)).astype(float)
    estimate, se = hit.mean(), hit.std(ddof=1) / np.sqrt(paths)
    approx = discrete_monitoring_probability(barrier, vol, horizon, dt)
    assert approx == pytest.approx(0.0125, abs=5e-5)
    assert abs(estimate - approx) < 4 * se + 2e-4  # BGK error is o(sqrt(dt))
    assert estimate < gbm_first_passage(barrier, vol, horizon) - 10 * se


# --------------------------------------------------------------------------- Kou

KOU = {"vol": 0.6, "p_up": 0.4, "up_mean": 0.03, "down_mean": 0.06}


@pytest.mark.parametrize("direction", ["down", "up"])
@pytest.mark.parametrize("drift", [-0.4, 0.0, 0.5])
def test_kou_without_jumps_is_gbm(direction: str, drift: float):
    horizons = np.array([0.25, 1, 7, 30]) * DAY
    for distance in (0.02, 0.1, 0.4):
        ratio = np.exp(-distance) if direction == "down" else np.exp(distance)
        kou = kou_first_passage(
            distance, horizons, drift=drift, per_year=0.0, direction=direction, **KOU
        )
        gbm = gbm_first_passage(ratio, KOU["vol"], horizons, drift, direction=direction)
        np.testing.assert_allclose(kou, gbm, atol=1e-9)


def test_kou_drift_convention_compensates_jumps():
    params = {**KOU, "per_year": 30.0, "drift": 0.2}
    assert kou_levy_exponent(1.0, **params) == pytest.approx(0.2, abs=1e-14)
    assert kou_levy_exponent(0.0, **params) == pytest.approx(0.0, abs=1e-14)


def test_kou_limits():
    common = {**KOU, "per_year": 20.0}
    assert kou_first_passage(0.0, DAY, **common) == 1.0
    assert kou_first_passage(0.1, 0.0, **common) == 0.0
    probs = kou_first_passage(0.1, np.array([1, 3, 10, 30, 100]) * DAY, **common)
    assert np.all(np.diff(probs) > 0) and np.all((probs > 0) & (probs < 1))
    with pytest.raises(ScenarioError, match="up_mean"):
        kou_first_passage(0.1, DAY, **{**common, "up_mean": 1.5})


def _kou_monte_carlo(
    distance: float,
    horizon: float,
    *,
    direction: str,
    drift: float,
    per_year: float,
    vol: float,
    p_up: float,
    up_mean: float,
    down_mean: float,
    n_steps: int,
    paths: int,
    seed: int,
) -> tuple[float, float]:
    """Conditional Monte Carlo of P(tau <= T) for the Kou process (independent of the module).

    Each step is split at a uniform time where the step's jumps (if any) are placed; between
    knots the path is a Brownian bridge whose chance of touching the level is
    exp(-2 d0 d1 / (vol^2 h)); a knot at or beyond the level is a hit. Each path's
    probability of having hit is averaged (lower variance than counting hits).
    """
    rng = np.random.default_rng(seed)
    sign = -1.0 if direction == "down" else 1.0  # distance to the level: distance - sign x
    eta1, eta2 = 1 / up_mean, 1 / down_mean
    zeta_ = p_up * eta1 / (eta1 - 1) + (1 - p_up) * eta2 / (eta2 + 1) - 1
    c = drift - 0.5 * vol**2 - per_year * zeta_
    dt = horizon / n_steps
    x = np.zeros(paths)
    survive = np.ones(paths)

    def advance(x: np.ndarray, h: np.ndarray) -> np.ndarray:
        nonlocal survive
        x_new = x + c * h + vol * np.sqrt(h) * rng.standard_normal(paths)
        d0, d1 = distance - sign * x, distance - sign * x_new
        inside = (d0 > 0) & (d1 > 0)
        exponent = -2 * np.where(inside, d0 * d1, 0.0) / (vol**2 * h)
        survive = survive * np.where(inside, -np.expm1(exponent), 0.0)
        return x_new

    for _ in range(n_steps):
        u = rng.random(paths)
        x = advance(x, u * dt)
        count = rng.poisson(per_year * dt, paths)
        jump = np.zeros(paths)
        for k in range(3):  # P(more than 3 jumps in a step) ~ (lambda dt)^4 / 24, negligible
            up = rng.random(paths) < p_up
            size = np.where(up, rng.exponential(up_mean, paths), -rng.exponential(down_mean, paths))
            jump += np.where(count > k, size, 0.0)
        x = x + jump
        survive = survive * (distance - sign * x > 0)
        x = advance(x, (1 - u) * dt)
    hit = 1.0 - survive
    return float(hit.mean()), float(hit.std(ddof=1) / np.sqrt(paths))


@pytest.mark.parametrize(
    ("direction", "distance", "days", "drift"),
    [("down", 0.1, 7, 0.0), ("up", 0.08, 5, 0.3)],
)
def test_kou_matches_monte_carlo(direction: str, distance: float, days: float, drift: float):
    params = {**KOU, "per_year": 60.0}
    horizon = days * DAY
    estimate, se = _kou_monte_carlo(
        distance,
        horizon,
        direction=direction,
        drift=drift,
        n_steps=int(days * 24),
        paths=40_000,
        seed=99,
        **params,
    )
    reference = kou_first_passage(distance, horizon, drift=drift, direction=direction, **params)
    assert abs(estimate - reference) < 4 * se
    # the test has power: ignoring the jumps would be far off
    ratio = np.exp(-distance) if direction == "down" else np.exp(distance)
    diffusion_only = gbm_first_passage(ratio, KOU["vol"], horizon, drift, direction=direction)
    assert abs(reference - diffusion_only) > 10 * se
