"""Properties of the engine that must hold on every path or in paired comparisons.

Paired comparisons run two scenarios that differ only in something the path generator does not
read (funding, stop-loss, balance, mode), with the same seed, so both see the same paths and
the engine's counter-based draws are the same: per-path inequalities then hold exactly.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import margin_sim as ms
from margin_sim.market import simulate_paths
from margin_sim.metrics import SUMMARY_COLUMNS, SimulationResult
from margin_sim.scenario import Scenario, load_exchange, read_yaml_mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = REPO_ROOT / "params" / "scenarios"
BASELINE = SCENARIOS / "baseline.yaml"
Z = 4.0  # tolerance of statistical checks, standard errors


def _load(name: str, overrides: tuple[tuple[str, Any], ...] = ()) -> Scenario:
    """A shipped scenario with overrides; ``exchange.*`` keys edit an inline copy of its
    exchange file (a named exchange is a plain string in the scenario)."""
    plain = {key: value for key, value in overrides if not key.startswith("exchange.")}
    exchange = {key[len("exchange.") :]: v for key, v in overrides if key.startswith("exchange.")}
    if exchange:
        name_of_exchange = read_yaml_mapping(SCENARIOS / f"{name}.yaml")["exchange"]
        plain["exchange"] = ms.apply_overrides(load_exchange(name_of_exchange), exchange)
    return ms.load_scenario(SCENARIOS / f"{name}.yaml", plain)


@functools.cache
def _run(name: str, overrides: tuple[tuple[str, Any], ...] = ()) -> SimulationResult:
    """Simulate a shipped scenario with overrides (cached; tests share runs)."""
    return ms.simulate(_load(name, overrides), progress=False)


def _mode(result: SimulationResult, mode: str) -> pd.DataFrame:
    frame = result.per_path[result.per_path["mode"] == mode].sort_values("path")
    return frame.reset_index(drop=True)


def _paired_mean_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))


def _final_prices(scenario: Scenario) -> np.ndarray:
    """Last grid price of every asset and path, (A, n), regenerated from the same seed."""
    return np.concatenate([np.exp(c.log_price[:, :, -1]) for c in simulate_paths(scenario)], axis=1)


#: Baseline-like: one BTC long at 10x, jumps and wicks, 2 days of hourly steps.
BASE = (("paths", 4000), ("horizon", "2d"))
#: The same with a wallet only twice the margin, so that cross can be liquidated too.
TIGHT = (*BASE, ("account.balance", 2000), ("account.positions.0.leverage", 20))


# ------------------------------------------------------------------- per-path bounds


@pytest.mark.parametrize(
    "overrides",
    [
        BASE,
        (*BASE, ("account.positions.0.side", "short")),
        (*BASE, ("account.positions.0.leverage", 50)),
        (
            *BASE,
            ("market.assets.BTC.wicks.depth_mean", 0.3),
            ("market.assets.BTC.wicks.per_year", 200),
        ),
        (*BASE, ("exchange.funding.rate", 0.002)),
    ],
    ids=["long", "short", "50x", "deep-wicks", "funding"],
)
def test_isolated_loss_never_exceeds_margin_plus_fees(overrides: tuple) -> None:
    scenario = _load("baseline", overrides)
    result = _run("baseline", overrides)
    isolated = _mode(result, "isolated")
    position = scenario.account.positions[0]
    quantity = position.notional / scenario.market.assets["BTC"].price
    fee = scenario.exchange.taker_fee
    price_end = _final_prices(scenario)[0, isolated["path"].to_numpy()]
    free = scenario.account.balance - position.margin - fee * position.notional
    floor = free - fee * quantity * price_end  # the closing fee grows with the price
    final = isolated["final_equity"].to_numpy()
    assert np.all(final >= floor - 1e-9 * scenario.account.balance), (final - floor).min()
    # before closing fees, equity never falls below the free wallet
    assert np.all(isolated["min_equity"].to_numpy() >= free - 1e-9 * scenario.account.balance)
    # a liquidated isolated position loses exactly its margin: the free wallet is what is left
    liquidated = isolated["liquidated"].to_numpy()
    assert liquidated.any()
    np.testing.assert_allclose(final[liquidated], free, rtol=1e-12)


def test_isolated_loss_bounded_with_several_positions() -> None:
    overrides = (("paths", 1000), ("horizon", "1d"))
    scenario = _load("degen", overrides)
    isolated = _mode(_run("degen", overrides), "isolated")
    fee = scenario.exchange.taker_fee
    prices = _final_prices(scenario)[:, isolated["path"].to_numpy()]
    floor = np.full(len(isolated), scenario.account.balance)
    for position in scenario.account.positions:
        asset = scenario.asset_names.index(position.asset)
        quantity = position.notional / scenario.market.assets[position.asset].price
        floor = floor - position.margin - fee * position.notional - fee * quantity * prices[asset]
    assert np.all(isolated["final_equity"].to_numpy() >= floor - 1e-9)


def test_probabilities_are_probabilities_and_times_are_in_the_horizon() -> None:
    for name, overrides in [
        ("baseline", TIGHT),
        ("hedge", (("paths", 1000), ("horizon", "2d"))),
        ("degen", (("paths", 1000), ("horizon", "1d"))),
    ]:
        result = _run(name, overrides)
        frame = result.per_path
        for column in ("p_liquidation", "p_ruin"):
            values = frame[column].to_numpy()
            assert np.all((values >= 0) & (values <= 1)), (name, column)
        hours = frame["hours_to_liquidation"].to_numpy()
        liquidated = frame["liquidated"].to_numpy(bool)
        assert np.array_equal(np.isfinite(hours), liquidated), name
        horizon_hours = result.scenario.horizon / 3600.0
        assert np.all((hours[liquidated] >= 0) & (hours[liquidated] <= horizon_hours)), name
        # a sampled liquidation needs a positive probability
        assert np.all(frame["p_liquidation"].to_numpy()[liquidated] > 0), name
        assert np.isfinite(frame[["final_equity", "min_equity"]].to_numpy()).all(), name


# ------------------------------------------------------------------ isolated vs cross


def test_cross_with_idle_wallet_liquidates_less_often_but_loses_more() -> None:
    result = _run("baseline", TIGHT)
    isolated, cross = _mode(result, "isolated"), _mode(result, "cross")
    p_iso = isolated["p_liquidation"].to_numpy()
    p_cross = cross["p_liquidation"].to_numpy()
    # the cross barrier is farther on every path: paired, path by path
    assert np.all(p_cross <= p_iso + 1e-12), (p_cross - p_iso).max()
    diff, se = _paired_mean_se(p_iso, p_cross)
    assert diff > Z * se
    assert cross["liquidated"].sum() >= 5  # the comparison below has something to compare
    iso_loss = isolated["final_equity"].to_numpy()[isolated["liquidated"].to_numpy()]
    cross_loss = cross["final_equity"].to_numpy()[cross["liquidated"].to_numpy()]
    # a liquidated cross account keeps ~nothing; a liquidated isolated one keeps its free wallet
    assert cross_loss.max() < iso_loss.min()
    assert np.all(cross_loss >= 0)


def test_perfectly_correlated_hedge_is_never_liquidated_in_cross() -> None:
    overrides = (
        ("paths", 2000),
        ("horizon", "7d"),
        ("market.assets.ETH.vol", 0.6),
        ("market.assets.ETH.jumps", None),
        ("market.assets.BTC.jumps", None),
        ("market.assets.ETH.wicks", None),
        ("market.assets.BTC.wicks", None),
        ("market.market_wicks", None),
        ("market.correlation.BTC-ETH", 1.0),
        ("account.positions.0.leverage", 20),
        ("account.positions.0.margin", 500),
        ("account.positions.1.leverage", 20),
        ("account.positions.1.margin", 500),
        ("account.balance", 1000),
    )
    result = _run("hedge", overrides)
    cross = _mode(result, "cross")
    assert cross["p_liquidation"].max() < 1e-12
    assert not cross["liquidated"].any()
    # each leg on its own margin is liquidated often: the hedge is doing the work
    isolated = _mode(result, "isolated")
    assert isolated["p_liquidation"].mean() > 0.2
    # the cross account's PnL and funding cancel exactly: only the four taker fees are lost
    scenario = result.scenario
    fee = scenario.exchange.taker_fee
    notional = scenario.account.positions[0].notional
    growth = _final_prices(scenario)[0, cross["path"].to_numpy()] / 60000.0
    expected = scenario.account.balance - fee * notional * (2.0 + 2.0 * growth)
    np.testing.assert_allclose(cross["final_equity"].to_numpy(), expected, rtol=1e-9)


def test_paired_difference_has_smaller_standard_error_than_unpaired() -> None:
    result = _run("baseline", TIGHT)
    summary = result.summary()
    difference = result.difference()
    row = difference.loc["liquidation_probability"]
    se_iso = summary.loc["isolated", "liquidation_probability_se"]
    se_cross = summary.loc["cross", "liquidation_probability_se"]
    assert row["se"] < math.sqrt(se_iso**2 + se_cross**2)
    assert row["isolated"] == pytest.approx(summary.loc["isolated", "liquidation_probability"])
    assert row["cross"] == pytest.approx(summary.loc["cross", "liquidation_probability"])
    assert row["difference"] == pytest.approx(row["isolated"] - row["cross"], abs=1e-12)
    assert row["z"] == pytest.approx(row["difference"] / row["se"])
    assert set(difference.index) >= {"ruin_probability", "liquidation_probability"}


# ------------------------------------------------------------------------------ ruin


def test_isolated_with_idle_wallet_cannot_be_ruined_at_zero_equity() -> None:
    result = _run("baseline", (*BASE, ("ruin.equity_fraction", 0.0)))
    isolated = _mode(result, "isolated")
    assert isolated["liquidated"].any()
    np.testing.assert_array_equal(isolated["p_ruin"].to_numpy(), 0.0)
    assert result.summary().loc["isolated", "ruin_probability"] == 0.0


@pytest.mark.parametrize("equity_fraction", [0.5, 0.001])
def test_cross_ruin_is_at_least_the_nested_liquidation(equity_fraction: float) -> None:
    """A cross liquidation leaves ~0 equity, so it is a ruin: P(ruin) >= P(liquidation).
    With a threshold below the maintenance margin, equity can only reach it through the
    liquidation, so the two are equal."""
    result = _run("baseline", (*TIGHT, ("ruin.equity_fraction", equity_fraction)))
    cross = _mode(result, "cross")
    diff, se = _paired_mean_se(cross["p_ruin"].to_numpy(), cross["p_liquidation"].to_numpy())
    assert cross["p_liquidation"].mean() > 0.01
    assert diff > -Z * se, (diff, se)
    if equity_fraction < 0.01:
        assert abs(diff) < Z * se + 1e-12, (diff, se)
    else:
        assert diff > Z * se  # half the wallet is lost far more often than all of it


def test_ruin_when_isolated_margin_is_the_whole_wallet_matches_liquidation() -> None:
    """Isolated margin = balance and threshold 0.1%: ruin happens exactly by liquidation."""
    overrides = (
        *BASE,
        ("account.balance", 1000),
        ("ruin.equity_fraction", 0.001),
        ("modes", ("isolated",)),
    )
    isolated = _mode(_run("baseline", overrides), "isolated")
    p_liq = isolated["p_liquidation"].to_numpy()
    diff, se = _paired_mean_se(isolated["p_ruin"].to_numpy(), p_liq)
    assert p_liq.mean() > 0.01
    assert abs(diff) < Z * se + 1e-12, (diff, se)


# ----------------------------------------------------------------- cash-flow effects


def test_positive_funding_brings_a_long_isolated_liquidation_earlier() -> None:
    base = (*BASE, ("exchange.funding.rate", 0.0))
    funded = (*BASE, ("exchange.funding.rate", 0.003))
    p0 = _mode(_run("baseline", base), "isolated")["p_liquidation"].to_numpy()
    p1 = _mode(_run("baseline", funded), "isolated")["p_liquidation"].to_numpy()
    assert np.all(p1 >= p0 - 1e-12), (p0 - p1).max()
    diff, se = _paired_mean_se(p1, p0)
    assert diff > Z * se, (diff, se)
    # and a short receives it: fewer liquidations
    short0 = _mode(_run("baseline", (*base, ("account.positions.0.side", "short"))), "isolated")[
        "p_liquidation"
    ].to_numpy()
    short1 = _mode(_run("baseline", (*funded, ("account.positions.0.side", "short"))), "isolated")[
        "p_liquidation"
    ].to_numpy()
    assert np.all(short1 <= short0 + 1e-12)
    diff, se = _paired_mean_se(short0, short1)
    assert diff > Z * se, (diff, se)


def test_stop_loss_reduces_isolated_liquidation() -> None:
    unfunded = (*BASE, ("exchange.funding.rate", 0.0))  # no funding: the bound below is exact
    with_stop = (*unfunded, ("account.positions.0.stop_loss", 0.04))
    plain = _mode(_run("baseline", unfunded), "isolated")
    stopped = _mode(_run("baseline", with_stop), "isolated")
    p0 = plain["p_liquidation"].to_numpy()
    p1 = stopped["p_liquidation"].to_numpy()
    assert np.all(p1 <= p0 + 1e-12)
    diff, se = _paired_mean_se(p0, p1)
    assert diff > Z * se
    assert p1.mean() < 0.5 * p0.mean()


def test_a_stop_gapped_by_a_jump_fills_at_the_price_after_the_jump() -> None:
    """Issue 5: a stop-loss is "filled at the first price beyond the stop, so a gap or wick
    fills worse". With frequent -8% jumps, a 2x long (liquidation ~50% away) with a 4% stop
    is often gapped through its stop: those paths lose ~8% of the notional, not 4%. A path
    still open at the horizon ends above the stop (an end below it is a certain crossing), so
    a loss beyond 6% of the notional can only be a gap fill."""
    overrides = (
        ("paths", 2000),
        ("horizon", "2d"),
        ("exchange.funding.rate", 0.0),
        ("market.assets.BTC.wicks", None),
        ("market.assets.BTC.jumps.per_year", 50),
        ("market.assets.BTC.jumps.mean", -0.08),
        ("market.assets.BTC.jumps.std", 0.005),
        ("account.positions.0.leverage", 2),
        ("account.positions.0.stop_loss", 0.04),
        ("modes", ("isolated",)),
    )
    scenario = _load("baseline", overrides)
    isolated = _mode(_run("baseline", overrides), "isolated")
    notional = scenario.account.positions[0].notional
    loss = scenario.account.balance - isolated["final_equity"].to_numpy()
    assert not isolated["liquidated"].any()
    assert np.count_nonzero(loss > 0.06 * notional) > 20, np.sort(loss)[-5:] / notional


def test_deep_frequent_wicks_liquidate_far_more() -> None:
    quiet = (*BASE, ("market.assets.BTC.wicks", None))
    wild = (
        *BASE,
        ("market.assets.BTC.wicks.per_year", 300),
        ("market.assets.BTC.wicks.depth_mean", 0.3),
        ("market.assets.BTC.wicks.depth_max", 0.8),
    )
    a = _run("baseline", quiet).summary().loc["isolated"]
    b = _run("baseline", wild).summary().loc["isolated"]
    se = math.hypot(a["liquidation_probability_se"], b["liquidation_probability_se"])
    assert b["liquidation_probability"] - a["liquidation_probability"] > Z * se
    assert b["liquidation_probability"] > 2 * a["liquidation_probability"]
    # a wick deeper than the cross buffer liquidates the cross account as well
    c = _run("baseline", (*wild, ("account.balance", 2000))).summary().loc["cross"]
    assert c["liquidation_probability"] > 4 * c["liquidation_probability_se"]


# ------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("name", ["baseline", "hedge"])
def test_same_seed_same_numbers_for_any_chunk_size(name: str) -> None:
    scenario = _load(name, (("horizon", "1d"),))
    results = [
        ms.simulate(scenario, paths=3000, seed=5, progress=False, chunk_paths=chunk)
        for chunk in (500, 1000, 5000)
    ]
    first = results[0]
    for other in results[1:]:
        pd.testing.assert_frame_equal(first.summary(), other.summary(), check_exact=True)
        pd.testing.assert_frame_equal(
            first.per_path.sort_values(["mode", "path"]).reset_index(drop=True),
            other.per_path.sort_values(["mode", "path"]).reset_index(drop=True),
            check_exact=True,
        )
        for mode in first.modes:
            pd.testing.assert_frame_equal(
                first.survival(mode), other.survival(mode), check_exact=False, rtol=1e-12
            )
    different = ms.simulate(scenario, paths=3000, seed=6, progress=False)
    assert not np.array_equal(
        different.per_path["final_equity"].to_numpy(), first.per_path["final_equity"].to_numpy()
    )


# ------------------------------------------------------------------- shipped scenarios


@pytest.mark.parametrize("name", ["hedge", "degen"])
def test_multi_asset_scenarios_run_end_to_end(name: str) -> None:
    overrides = (("paths", 500), ("horizon", "1d"))
    result = _run(name, overrides)
    summary = result.summary()
    assert list(summary.index) == ["isolated", "cross"]
    assert list(summary.columns[: len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    finite = summary.drop(columns=["median_hours_to_liquidation"])
    assert np.isfinite(finite.to_numpy(float)).all(), summary
    assert len(result.per_path) == 2 * 500
    for mode in ("isolated", "cross"):
        p = summary.loc[mode, ["ruin_probability", "liquidation_probability"]].to_numpy(float)
        assert np.all((p >= 0) & (p <= 1))
        assert summary.loc[mode, "expected_final_equity"] <= result.scenario.account.balance * 2


# ----------------------------------------------------------------- stops and auto-add


@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("step", ["1h", "1d"])
@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_a_stop_nearer_than_liquidation_leaves_only_gaps_to_liquidate(
    step: str, mode: str, side: str
) -> None:
    """Pure diffusion (no jumps or wicks): a continuous price reaches a 5% stop before the
    ~9.5% liquidation price of a 10x position, so the position is never liquidated, in either
    mode, at any step (engine.py: "where a stop is nearer than the liquidation price only a
    jump or trough can liquidate the position")."""
    overrides = (
        ("paths", 4000),
        ("horizon", "7d"),
        ("step", step),
        ("market.assets.BTC.jumps", None),
        ("market.assets.BTC.wicks", None),
        ("account.balance", 1000),
        ("account.positions.0.stop_loss", 0.05),
        ("account.positions.0.side", side),
        ("modes", (mode,)),
    )
    frame = _mode(_run("baseline", overrides), mode)
    assert frame["p_liquidation"].max() < 1e-12, (
        frame["p_liquidation"].mean(),
        frame["liquidated"].mean(),
    )
    assert not frame["liquidated"].any()


def test_auto_add_margin_with_one_position_has_the_cross_barrier() -> None:
    """Auto-add puts the whole free wallet behind the single isolated position: its
    liquidation and ruin probabilities are the cross account's, path by path."""
    result = _run("baseline", (*TIGHT, ("account.positions.0.auto_add_margin", True)))
    isolated, cross = _mode(result, "isolated"), _mode(result, "cross")
    for column in ("p_liquidation", "p_ruin"):
        np.testing.assert_allclose(
            isolated[column].to_numpy(), cross[column].to_numpy(), rtol=1e-9, atol=1e-12
        )
    plain = _mode(_run("baseline", TIGHT), "isolated")
    assert isolated["p_liquidation"].mean() < plain["p_liquidation"].mean()


def test_a_path_whose_equity_touched_the_threshold_is_ruined_for_certain() -> None:
    """min_equity (grid points and wick troughs of the sampled trajectory) at or below the
    ruin threshold means ruin happened on that path: its p_ruin must be 1."""
    cases = [
        ("baseline", TIGHT),
        ("hedge", (("paths", 1000), ("horizon", "2d"), ("ruin.equity_fraction", 0.95))),
        ("degen", (("paths", 1000), ("horizon", "1d"))),
    ]
    touched_any = 0
    for name, overrides in cases:
        result = _run(name, overrides)
        threshold = result.scenario.ruin.equity_fraction * result.scenario.account.balance
        for mode in result.modes:
            frame = _mode(result, mode)
            touched = frame["min_equity"].to_numpy() <= threshold - 1e-9
            touched_any += int(touched.sum())
            p_ruin = frame["p_ruin"].to_numpy()[touched]
            assert np.all(p_ruin >= 1 - 1e-12), (name, mode, p_ruin.min())
    assert touched_any > 100


@pytest.mark.parametrize("side", ["long", "short"])
def test_fees_and_funding_on_a_still_price_are_accounted_exactly(side: str) -> None:
    """vol 0, no jumps or wicks, drift 0: the price stays at entry, so the final equity is
    the balance minus the opening and closing taker fees and the 21 funding payments of 7
    days (every 8h in (0, T]), paid by a long and received by a short, in both modes."""
    rate = 0.0005
    overrides = (
        ("paths", 500),
        ("horizon", "7d"),
        ("market.assets.BTC.vol", 0.0),
        ("market.assets.BTC.jumps", None),
        ("market.assets.BTC.wicks", None),
        ("account.positions.0.side", side),
        ("exchange.funding.rate", rate),
    )
    scenario = _load("baseline", overrides)
    result = _run("baseline", overrides)
    position = scenario.account.positions[0]
    s = 1.0 if side == "long" else -1.0
    fee = scenario.exchange.taker_fee
    expected = (
        scenario.account.balance - 2 * fee * position.notional - s * 21 * rate * position.notional
    )
    for mode in ("isolated", "cross"):
        frame = _mode(result, mode)
        np.testing.assert_allclose(frame["final_equity"].to_numpy(), expected, rtol=1e-12)
        assert frame["p_liquidation"].max() == 0.0 and frame["p_ruin"].max() == 0.0
