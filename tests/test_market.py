"""Tests of margin_sim.market: the path generator against closed forms and its own contracts.

Statistical checks use fixed seeds and tolerances of 4 standard errors; the oracles (moments
of Merton and Kou jump-diffusions, the Poisson law, Brownian-bridge conditional laws, the
capped-exponential mean by quadrature) are written out here, independently of the code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats

from margin_sim import market
from margin_sim._market_bridge import correlation_factor
from margin_sim.errors import ScenarioError
from margin_sim.market import (
    KIND_JUMP,
    KIND_MARKET_WICK,
    KIND_WICK,
    PathChunk,
    sample_paths,
    simulate_paths,
)
from margin_sim.scenario import Scenario, load_scenario

Z = 4.0  # tolerance in standard errors


def make_scenario(
    assets: dict[str, dict[str, Any]],
    *,
    correlation: dict[str, float] | None = None,
    market_wicks: dict[str, Any] | None = None,
    horizon: str = "30d",
    step: str = "1d",
    paths: int = 10_000,
    seed: int = 1,
) -> Scenario:
    first = next(iter(assets))
    return load_scenario(
        {
            "name": "test",
            "seed": seed,
            "paths": paths,
            "horizon": horizon,
            "step": step,
            "chunk_paths": 100_000,
            "market": {
                "assets": assets,
                "correlation": correlation or {},
                "market_wicks": market_wicks,
            },
            "exchange": "binance-usdm",
            "account": {
                "balance": 10_000,
                "positions": [{"asset": first, "side": "long", "leverage": 2, "margin": 100}],
            },
        }
    )


def one_chunk(scenario: Scenario, **kwargs: Any) -> PathChunk:
    chunks = list(simulate_paths(scenario, chunk_paths=10**8, **kwargs))
    assert len(chunks) == 1
    return chunks[0]


def assert_close(estimate: float, expected: float, standard_error: float) -> None:
    assert abs(estimate - expected) <= Z * standard_error, (
        f"{estimate:.6g} vs {expected:.6g}: {abs(estimate - expected) / standard_error:.1f} SE"
    )


def mean_and_variance_checks(sample: np.ndarray, mean: float, variance: float) -> None:
    """Sample mean and variance against theory, with their standard errors."""
    n = sample.size
    centred = sample - sample.mean()
    m2 = float(np.mean(centred**2))
    m4 = float(np.mean(centred**4))
    assert_close(float(sample.mean()), mean, math.sqrt(m2 / n))
    assert_close(float(sample.var(ddof=1)), variance, math.sqrt((m4 - m2**2) / n))


# ----------------------------------------------------------------------------- contract


def test_block_generator_is_the_spawned_child() -> None:
    child = np.random.SeedSequence(7).spawn(5)[3]
    ours = market._block_generator(7, 3).bit_generator.seed_seq
    assert np.array_equal(child.generate_state(8), ours.generate_state(8))


def test_chunk_contract() -> None:
    s = load_scenario("params/scenarios/degen.yaml")
    chunks = list(simulate_paths(s, paths=1234, chunk_paths=600))
    assert [c.log_price.shape[1] for c in chunks] == [1000, 234]  # 600 rounds up to 2 blocks
    chunk = chunks[1]
    n_assets, n, n_steps = 3, 234, s.n_steps
    assert chunk.assets == s.asset_names
    assert np.array_equal(chunk.path_index, np.arange(1000, 1234))
    assert chunk.log_price.shape == (n_assets, n, n_steps + 1)
    assert chunk.log_price.dtype == np.float64
    assert np.allclose(chunk.times_years, np.arange(n_steps + 1) * s.dt_years)
    vols = np.array([a.vol for a in s.market.assets.values()])
    assert np.allclose(chunk.step_variance, vols**2 * s.dt_years)
    assert np.array_equal(chunk.correlation, s.market.correlation_matrix())
    prices = np.array([a.price for a in s.market.assets.values()])
    assert np.allclose(chunk.log_price[:, :, 0], np.log(prices)[:, None])
    e = chunk.events
    m = e.path.size
    assert m > 0
    for field in ("log_before", "jump", "trough_last", "trough_mark"):
        assert getattr(e, field).shape == (n_assets, m)
        assert getattr(e, field).dtype == np.float64
    assert np.all((e.frac > 0) & (e.frac < 1))
    assert np.all((e.step >= 0) & (e.step < n_steps)) and np.all((e.path >= 0) & (e.path < n))
    key = (e.path * n_steps + e.step) + e.frac
    assert np.all(np.diff(key) >= 0)  # sorted by (path, step, frac)
    assert set(np.unique(e.kind)) == {KIND_JUMP, KIND_WICK, KIND_MARKET_WICK}
    jumps = e.kind == KIND_JUMP
    assert np.all(e.trough_last[:, jumps] == 0) and np.all(e.trough_mark[:, jumps] == 0)
    assert np.all((e.jump[:, jumps] != 0).sum(axis=0) == 1)  # one asset per permanent jump
    wicks = e.kind == KIND_WICK
    assert np.all((e.trough_last[:, wicks] < 0).sum(axis=0) == 1)
    with pytest.raises(AttributeError):
        chunk.log_price = chunk.log_price  # type: ignore[misc]


def test_bad_arguments_are_refused() -> None:
    s = load_scenario("params/scenarios/baseline.yaml")
    with pytest.raises(ScenarioError, match=r"^paths:"):
        next(iter(simulate_paths(s, paths=0)))
    with pytest.raises(ScenarioError, match=r"^chunk_paths:"):
        next(iter(simulate_paths(s, chunk_paths=-5)))
    with pytest.raises(ScenarioError, match=r"^seed:"):
        next(iter(simulate_paths(s, seed=-1)))
    with pytest.raises(ScenarioError, match=r"^paths:"):
        next(iter(simulate_paths(s, paths="many")))  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match=r"^n_paths:"):
        sample_paths(s, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match=r"^resolution:"):
        sample_paths(s, 1, resolution="7s")
    with pytest.raises(ScenarioError, match=r"^resolution:"):
        sample_paths(s, 1, resolution="2h")
    with pytest.raises(ScenarioError, match=r"^market\.correlation"):
        correlation_factor(np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]))


# -------------------------------------------------------------------- determinism


def test_same_seed_same_paths_for_any_chunk_size() -> None:
    s = load_scenario("params/scenarios/degen.yaml", {"horizon": "1d", "step": "1h"})

    def run(paths: int, chunk: int, seed: int = 5) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        chunks = list(simulate_paths(s, paths=paths, seed=seed, chunk_paths=chunk))
        log_price = np.concatenate([c.log_price for c in chunks], axis=1)
        fields: dict[str, list[np.ndarray]] = {}
        for c in chunks:
            for name in ("step", "frac", "kind"):
                fields.setdefault(name, []).append(getattr(c.events, name))
            fields.setdefault("path", []).append(c.path_index[c.events.path])
            for name in ("log_before", "jump", "trough_last", "trough_mark"):
                fields.setdefault(name, []).append(getattr(c.events, name).T)
        return log_price, {k: np.concatenate(v) for k, v in fields.items()}

    small_lp, small_ev = run(2300, 1000)
    large_lp, large_ev = run(2300, 100_000)
    assert small_lp.shape == (3, 2300, 25)
    assert np.array_equal(small_lp, large_lp)
    assert small_ev.keys() == large_ev.keys()
    for name in small_ev:
        assert np.array_equal(small_ev[name], large_ev[name]), name
    # path k does not depend on the total number of paths either
    prefix_lp, prefix_ev = run(1200, 700)
    assert np.array_equal(prefix_lp, small_lp[:, :1200])
    keep = small_ev["path"] < 1200
    for name in prefix_ev:
        assert np.array_equal(prefix_ev[name], small_ev[name][keep]), name
    other_lp, _ = run(2300, 1000, seed=6)
    assert not np.array_equal(other_lp, small_lp)


@pytest.mark.parametrize("name", ["baseline", "hedge", "degen"])  # 1, 2 and 3 assets
def test_a_run_split_at_first_path_gives_the_same_paths(name: str) -> None:
    s = load_scenario(f"params/scenarios/{name}.yaml", {"horizon": "2d"})
    whole = list(simulate_paths(s, paths=1500, seed=3, chunk_paths=1000))[1]
    # 300 paths: a truncated block, computed apart from the whole block of the longer run
    (part,) = simulate_paths(s, paths=300, seed=3, chunk_paths=1000, first_path=1000)
    assert np.array_equal(part.path_index, whole.path_index[:300])
    assert np.array_equal(part.log_price, whole.log_price[:, :300])
    rows = whole.events.path < 300
    assert rows.any()
    for field in ("path", "step", "frac", "kind"):
        assert np.array_equal(getattr(part.events, field), getattr(whole.events, field)[rows])
    for field in ("log_before", "jump", "trough_last", "trough_mark"):
        assert np.array_equal(getattr(part.events, field), getattr(whole.events, field)[:, rows])


# ------------------------------------------------------------------------- moments


MERTON = {"model": "merton", "per_year": 40, "mean": -0.03, "std": 0.08}
KOU = {"model": "kou", "per_year": 40, "p_up": 0.4, "up_mean": 0.05, "down_mean": 0.07}


def jump_moments(jumps: dict[str, Any]) -> tuple[float, float, float]:
    """E[J], E[J^2], E[e^J] of one log jump (Merton 1976; Kou 2002)."""
    if jumps["model"] == "merton":
        m, s = jumps["mean"], jumps["std"]
        return m, m**2 + s**2, math.exp(m + s**2 / 2)
    p, up, down = jumps["p_up"], jumps["up_mean"], jumps["down_mean"]
    eta1, eta2 = 1 / up, 1 / down
    return (
        p * up - (1 - p) * down,
        2 * p * up**2 + 2 * (1 - p) * down**2,
        p * eta1 / (eta1 - 1) + (1 - p) * eta2 / (eta2 + 1),
    )


@pytest.mark.parametrize("jumps", [MERTON, KOU], ids=["merton", "kou"])
def test_log_return_mean_and_variance_with_jumps(jumps: dict[str, Any]) -> None:
    vol, drift = 0.5, 0.1
    s = make_scenario({"X": {"price": 100, "vol": vol, "drift": drift, "jumps": jumps}})
    chunk = one_chunk(s, paths=100_000, seed=11)
    log_return = chunk.log_price[0, :, -1] - chunk.log_price[0, :, 0]
    horizon = 30 / 365
    rate = jumps["per_year"]
    mean_jump, mean_square_jump, mean_exp_jump = jump_moments(jumps)
    mu = drift - vol**2 / 2 - rate * (mean_exp_jump - 1)
    mean = mu * horizon + rate * horizon * mean_jump
    variance = vol**2 * horizon + rate * horizon * mean_square_jump
    mean_and_variance_checks(log_return, mean, variance)


def test_expected_price_is_compensated_with_jumps_and_wicks() -> None:
    drift = {"A": 0.3, "B": -0.2}
    wicks = {"per_year": 60, "depth_mean": 0.15, "depth_max": 0.4, "recovery": 0.3}
    s = make_scenario(
        {
            "A": {"price": 50, "vol": 0.6, "drift": drift["A"], "jumps": MERTON, "wicks": wicks},
            "B": {"price": 2, "vol": 0.9, "drift": drift["B"], "jumps": KOU, "wicks": wicks},
        },
        correlation={"A-B": 0.5},
        market_wicks={
            "per_year": 40,
            "depth_mean": 0.1,
            "depth_max": 0.45,
            "recovery": 0.2,
            "beta": {"A": 0.7, "B": 2.5},
        },
    )
    chunk = one_chunk(s, paths=50_000, seed=3)
    growth = np.exp(chunk.log_price[:, :, -1] - chunk.log_price[:, :, 0])
    horizon = 30 / 365
    mu = market.log_drift(s)
    for a, name in enumerate(s.asset_names):
        se = growth[a].std() / math.sqrt(growth.shape[1])
        assert_close(float(growth[a].mean()), math.exp(drift[name] * horizon), se)
        # the test has power: without compensation the mean would be many SE away
        vol = s.market.assets[name].vol
        uncompensated = growth[a] * math.exp(-(mu[a] - (drift[name] - vol**2 / 2)) * horizon)
        assert abs(uncompensated.mean() - math.exp(drift[name] * horizon)) > 10 * se


def test_wick_compensation_matches_quadrature() -> None:
    """E[min(beta d, cap)] with d = min(Exp(mean), cap), in closed form, against scipy.quad."""
    wick = {"per_year": 10, "depth_mean": 0.12, "depth_max": 0.3, "recovery": 0.25}
    betas = {"A": 0.6, "B": 1.0, "C": 3.0}
    s = make_scenario(
        {name: {"price": 1, "vol": 0.2} for name in betas},
        market_wicks={**wick, "beta": betas},
    )
    theta, cap = wick["depth_mean"], wick["depth_max"]
    for a, (_name, beta) in enumerate(betas.items()):

        def integrand(x: float, b: float = beta) -> float:
            return min(b * min(x, cap), cap) * math.exp(-x / theta) / theta

        mean_depth = integrate.quad(integrand, 0, 50 * theta, points=[cap / beta, cap])[0]
        expected = -0.02 + wick["per_year"] * (1 - wick["recovery"]) * mean_depth
        assert market.log_drift(s)[a] == pytest.approx(expected, rel=1e-9)


def test_diffusion_increment_correlation() -> None:
    correlation = {"A-B": 0.8, "A-C": -0.3, "B-C": 0.1}
    vols = {"A": 0.5, "B": 1.2, "C": 0.3}
    s = make_scenario(
        {name: {"price": 10, "vol": vol} for name, vol in vols.items()},
        correlation=correlation,
        horizon="1d",
        step="1h",
    )
    chunk = one_chunk(s, paths=20_000, seed=2)
    increments = np.diff(chunk.log_price, axis=2).reshape(3, -1)
    n = increments.shape[1]
    sample = np.corrcoef(increments)
    matrix = s.market.correlation_matrix()
    for i in range(3):
        sd = float(increments[i].std())
        expected_sd = list(vols.values())[i] * math.sqrt(s.dt_years)
        assert_close(sd, expected_sd, expected_sd / math.sqrt(2 * n))
        for j in range(i + 1, 3):
            rho = matrix[i, j]
            assert_close(float(sample[i, j]), rho, (1 - rho**2) / math.sqrt(n))


def test_perfect_correlation_is_allowed() -> None:
    s = make_scenario(
        {"A": {"price": 10, "vol": 0.5}, "B": {"price": 20, "vol": 0.8}},
        correlation={"A-B": 1.0},
        horizon="1d",
        step="1h",
    )
    chunk = one_chunk(s, paths=600, seed=4)
    increments = np.diff(chunk.log_price, axis=2)
    mu = market.log_drift(s) * s.dt_years
    shocks_a = (increments[0] - mu[0]) / 0.5
    shocks_b = (increments[1] - mu[1]) / 0.8
    assert np.allclose(shocks_a, shocks_b, rtol=0, atol=1e-12)
    assert shocks_a.std() > 0


# -------------------------------------------------------------------- event counts


def poisson_checks(counts: np.ndarray, mean: float) -> None:
    n = counts.size
    assert_close(float(counts.mean()), mean, math.sqrt(mean / n))
    # Var of the sample variance of Poisson counts: (mu4 - sigma^4)/n = (mu + 2 mu^2)/n
    assert_close(float(counts.var(ddof=1)), mean, math.sqrt((mean + 2 * mean**2) / n))
    for k in range(int(mean + 4 * math.sqrt(mean)) + 1):
        p = stats.poisson.pmf(k, mean)
        assert_close(float(np.mean(counts == k)), p, math.sqrt(p * (1 - p) / n) + 1e-12)


def test_jump_and_wick_counts_are_poisson() -> None:
    s = make_scenario(
        {
            "A": {"price": 1, "vol": 0.4, "jumps": {**MERTON, "per_year": 30}},
            "B": {"price": 1, "vol": 0.4, "wicks": {"per_year": 20, "depth_mean": 0.05}},
        },
        market_wicks={"per_year": 10, "depth_mean": 0.05},
    )
    n = 50_000
    chunk = one_chunk(s, paths=n, seed=8)
    e = chunk.events
    horizon = 30 / 365
    jumps_a = (e.kind == KIND_JUMP) & (e.jump[0] != 0)
    wicks_b = (e.kind == KIND_WICK) & (e.trough_last[1] < 0)
    market_wicks = e.kind == KIND_MARKET_WICK
    assert not np.any((e.kind == KIND_JUMP) & (e.jump[1] != 0))
    assert not np.any((e.kind == KIND_WICK) & (e.trough_last[0] != 0))
    for rows, rate in ((jumps_a, 30), (wicks_b, 20), (market_wicks, 10)):
        poisson_checks(np.bincount(e.path[rows], minlength=n), rate * horizon)
    # times uniform over the horizon
    position = (e.step + e.frac) / s.n_steps
    assert_close(float(position.mean()), 0.5, math.sqrt(1 / 12 / position.size))
    assert_close(float(e.frac.mean()), 0.5, math.sqrt(1 / 12 / e.frac.size))


def test_market_wicks_hit_every_asset_at_once() -> None:
    market_wick = {
        "per_year": 200,
        "depth_mean": 0.1,
        "depth_max": 0.35,
        "recovery": 0.6,
        "mark_pass_through": 0.4,
        "beta": {"A": 1.0, "B": 2.0, "C": 0.5, "D": 0.0},
    }
    s = make_scenario({name: {"price": 5, "vol": 0.3} for name in "ABCD"}, market_wicks=market_wick)
    chunk = one_chunk(s, paths=2000, seed=9)
    e = chunk.events
    assert np.all(e.kind == KIND_MARKET_WICK) and e.kind.size > 1000
    depth = -np.expm1(e.trough_last)  # d = 1 - exp(trough)
    # one event, one instant, every asset with beta > 0 hit; beta 0 untouched
    assert np.all(depth[:3] > 0) and np.all(depth[3] == 0) and np.all(e.jump[3] == 0)
    cap = market_wick["depth_max"]
    assert np.allclose(depth[1], np.minimum(2.0 * depth[0], cap), rtol=1e-12, atol=0)
    assert np.allclose(depth[2], 0.5 * depth[0], rtol=1e-12, atol=0)
    assert np.allclose(e.trough_mark, np.log1p(-0.4 * depth), rtol=1e-12, atol=1e-15)
    assert np.allclose(e.jump, np.log1p(-0.4 * depth), rtol=1e-12, atol=1e-15)  # 1 - 0.6
    # depth law: d = min(Exp(mean), cap)
    theta = market_wick["depth_mean"]
    mean_depth = theta * (1 - math.exp(-cap / theta))
    assert_close(float(depth[0].mean()), mean_depth, float(depth[0].std()) / math.sqrt(e.kind.size))
    assert_close(
        float(np.mean(depth[0] == cap)), math.exp(-cap / theta), 0.5 / math.sqrt(e.kind.size)
    )


# -------------------------------------------------------------------------- bridge


def test_event_values_follow_the_brownian_bridge() -> None:
    """Residuals of log_before from the bridge mean, scaled by the bridge sd, are N(0, 1),
    correlated like the diffusion across assets and independent of the step's increment."""
    rho, vols = 0.6, np.array([0.8, 0.5])
    full_recovery = {"depth_mean": 0.05, "recovery": 1.0}  # no permanent jumps: log = diffusion
    s = make_scenario(
        {
            "A": {"price": 3, "vol": vols[0], "wicks": {"per_year": 2000, **full_recovery}},
            "B": {"price": 7, "vol": vols[1]},
        },
        correlation={"A-B": rho},
        market_wicks={"per_year": 500, **full_recovery},
        horizon="10d",
        step="6h",
    )
    chunk = one_chunk(s, paths=3000, seed=12)
    e = chunk.events
    assert np.all(e.jump == 0)
    same_step = np.zeros(e.path.size, dtype=bool)
    same_step[1:] = (e.path[1:] == e.path[:-1]) & (e.step[1:] == e.step[:-1])
    previous_frac = np.where(same_step, np.roll(e.frac, 1), 0.0)
    previous = np.where(
        same_step, np.roll(e.log_before, 1, axis=1), chunk.log_price[:, e.path, e.step]
    )
    right = chunk.log_price[:, e.path, e.step + 1]
    weight = (e.frac - previous_frac) / (1 - previous_frac)
    mean = previous + weight * (right - previous)
    sd = np.sqrt(
        chunk.step_variance[:, None] * (e.frac - previous_frac) * (1 - e.frac) / (1 - previous_frac)
    )
    z = (e.log_before - mean) / sd
    assert same_step.sum() > 10_000  # several events in one step are exercised
    for rows in (same_step, ~same_step):
        m = int(rows.sum())
        for a in range(2):
            mean_and_variance_checks(z[a, rows], 0.0, 1.0)
        assert_close(float(np.corrcoef(z[:, rows])[0, 1]), rho, (1 - rho**2) / math.sqrt(m))
        increment = (right - chunk.log_price[:, e.path, e.step])[0, rows]
        assert_close(float(np.corrcoef(z[0, rows], increment)[0, 1]), 0.0, 1 / math.sqrt(m))


# ----------------------------------------------------------------------- fine bars


def test_sample_paths_agree_with_the_grid() -> None:
    s = load_scenario("params/scenarios/degen.yaml", {"horizon": "2d"})
    bars = sample_paths(s, 4, seed=21)
    chunk = one_chunk(s, paths=4, seed=21)
    per_step = 60
    n_bars = s.n_steps * per_step
    assert list(bars.columns) == [
        "path", "asset", "hours",
        "last_open", "last_high", "last_low", "last_close",
        "mark_open", "mark_high", "mark_low", "mark_close",
    ]  # fmt: skip
    assert len(bars) == 4 * 3 * n_bars
    for (k, name), group in bars.groupby(["path", "asset"], sort=False):
        a = s.asset_names.index(name)
        assert np.allclose(group["hours"].to_numpy(), np.arange(n_bars) / 60)
        grid = np.exp(chunk.log_price[a, k])
        for column in ("last_open", "mark_open"):
            assert np.allclose(group[column].to_numpy()[::per_step], grid[:-1], rtol=1e-13, atol=0)
        assert group["last_close"].iloc[-1] == pytest.approx(grid[-1], rel=1e-13)
        for price in ("last", "mark"):
            o, h, lo, c = (
                group[f"{price}_{x}"].to_numpy() for x in ("open", "high", "low", "close")
            )
            assert np.all(h >= np.maximum(o, c)) and np.all(lo <= np.minimum(o, c))
            assert np.array_equal(o[1:], c[:-1])
    # a different resolution keeps the grid values
    coarse = sample_paths(s, 4, seed=21, resolution="15min")
    first = coarse[(coarse.path == 0) & (coarse.asset == "SOL")]
    assert np.allclose(first["last_open"].to_numpy()[::4], np.exp(chunk.log_price[0, 0, :-1]))


def test_deep_wick_in_minute_low_but_not_in_later_close() -> None:
    wicks = {
        "per_year": 400,
        "depth_mean": 0.3,
        "depth_max": 0.5,
        "recovery": 1.0,
        "mark_pass_through": 0.5,
        "duration": "3min",
    }
    s = make_scenario({"X": {"price": 100, "vol": 0.3, "wicks": wicks}}, horizon="2d", step="1h")
    # ~1.1 wicks deeper than 20% per path (400/y x 2 d x e^(-0.2/0.3)): with 16 paths fewer
    # than 3 such wicks has probability ~1e-5, whatever the random stream
    bars = sample_paths(s, 16, seed=5)
    chunk = one_chunk(s, paths=16, seed=5)
    e = chunk.events
    minutes = (e.step + e.frac) * 60
    depth = -np.expm1(e.trough_last[0])
    checked = 0
    for i in np.flatnonzero(depth > 0.2):
        others = minutes[(e.path == e.path[i]) & (np.abs(minutes - minutes[i]) < 15)]
        if others.size > 1:
            continue  # keep the check about one wick alone
        path = bars[bars.path == e.path[i]]
        bar = int(minutes[i])
        before = math.exp(e.log_before[0, i])
        row = path.iloc[bar]
        assert row["last_low"] == pytest.approx(before * (1 - depth[i]), rel=1e-12)
        assert row["mark_low"] == pytest.approx(before * (1 - 0.5 * depth[i]), rel=1e-12)
        assert row["last_low"] < 0.85 * row["last_open"]
        later = path.iloc[bar + 5]
        assert later["last_close"] > 0.98 * before  # recovered: 5 minutes of 30% vol is ~0.1%
        assert later["last_low"] > 0.98 * before
        checked += 1
    assert checked >= 3


def test_sample_paths_is_reproducible() -> None:
    s = load_scenario("params/scenarios/baseline.yaml", {"horizon": "1d"})
    first = sample_paths(s, 2, seed=3)
    again = sample_paths(s, 3, seed=3)
    assert first.equals(again[again.path < 2].reset_index(drop=True))
    assert not first.equals(sample_paths(s, 2, seed=4))


def test_jumps_are_carried_to_later_events_and_grid_points() -> None:
    """With vol 0 the path is exact: ln S0 + mu t + every earlier jump (several per step too)."""
    wicks = {"per_year": 300, "depth_mean": 0.05, "recovery": 0.5}
    s = make_scenario(
        {
            "A": {"price": 3, "vol": 0.0, "jumps": {**KOU, "per_year": 500}, "wicks": wicks},
            "B": {"price": 9, "vol": 0.0, "drift": 0.4, "jumps": {**MERTON, "per_year": 200}},
        },
        market_wicks={"per_year": 100, "depth_mean": 0.05, "recovery": 0.2},
        horizon="5d",
        step="1d",
    )
    chunk = one_chunk(s, paths=40, seed=6)
    e = chunk.events
    mu = market.log_drift(s)
    start = np.log([3.0, 9.0])
    times = (e.step + e.frac) * s.dt_years
    assert np.sum(e.path == 0) > 10
    for k in range(40):
        rows = np.flatnonzero(e.path == k)
        total = np.zeros(2)
        for i in rows:  # events are in time order
            expected = start + mu * times[i] + total
            assert np.allclose(e.log_before[:, i], expected, rtol=0, atol=1e-12)
            total = total + e.jump[:, i]
        for step in range(s.n_steps + 1):
            before = rows[e.step[rows] < step]
            expected = start + mu * step * s.dt_years + e.jump[:, before].sum(axis=1)
            assert np.allclose(chunk.log_price[:, k, step], expected, rtol=0, atol=1e-12)
