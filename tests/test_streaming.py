"""Streamed runs (``simulate(..., keep_paths=False)``): the quantile sketch, the running
moments, and a streamed run against a kept one on the same paths.

The sketch is checked against :func:`numpy.quantile` with tolerances derived from its relative
accuracy ``a`` (a quantile interpolated between order statistics ``x_i, x_i+1`` of one sign is
within ``a * max(|x_i|, |x_i+1|)``); the moments against numpy's two-pass variance; a streamed
run against a kept run of the same scenario and seed (means and standard errors to rounding,
VaR/CVaR/median within the sketch's accuracy), and against itself with other chunk sizes and
worker counts (identical to the last bit).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import margin_sim as ms
from margin_sim import engine
from margin_sim.cli import main
from margin_sim.errors import MarginSimError
from margin_sim.metrics import (
    SUMMARY_COLUMNS,
    ChunkOutcome,
    PathsNotKeptError,
    SimulationResult,
    value_at_risk,
)
from margin_sim.sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch
from margin_sim.streaming import RunningMoments, StreamedOutcomes

ROOT = Path(__file__).resolve().parent.parent
HEDGE = ROOT / "params" / "scenarios" / "hedge.yaml"
BASELINE = ROOT / "params" / "scenarios" / "baseline.yaml"
A = DEFAULT_RELATIVE_ACCURACY
#: Quantities read from the sketch in a streamed summary.
SKETCHED = ("var_95", "cvar_95", "median_hours_to_liquidation")
LEVELS = (0.0, 0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


# ------------------------------------------------------------------------------ the sketch


def _quantile_bound(values: np.ndarray, level: float, accuracy: float) -> float:
    """Largest error the guarantee allows: ``a`` times the larger bracketing order statistic."""
    ordered = np.sort(values)
    position = (values.size - 1) * level
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    return accuracy * max(abs(low), abs(high)) * (1 + 1e-9)  # 1e-9: log rounding at bin edges


def _datasets() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(20240601)
    yield "student-t, both signs", rng.standard_t(3, 20_000) * 100.0
    yield (
        "ten decades, random signs, zeros",
        np.concatenate(
            [
                10.0 ** rng.uniform(-5, 5, 20_000) * rng.choice([-1.0, 1.0], 20_000),
                np.zeros(700),
            ]
        ),
    )
    yield "all negative", -rng.lognormal(3.0, 2.0, 10_000)
    yield "atoms and a tail", np.concatenate([np.full(3000, 1000.0), rng.exponential(50.0, 7000)])


@pytest.mark.parametrize("accuracy", [A, 1e-2])
@pytest.mark.parametrize("dataset", list(_datasets()), ids=lambda d: d[0])
def test_sketch_quantiles_are_within_the_relative_accuracy(
    dataset: tuple[str, np.ndarray], accuracy: float
) -> None:
    _, values = dataset
    sketch = QuantileSketch(accuracy)
    for batch in np.array_split(values, 7):
        sketch.add(batch)
    assert sketch.count == values.size
    assert not sketch.collapsed
    for level in LEVELS:
        exact = float(np.quantile(values, level))
        bound = _quantile_bound(values, level, accuracy)
        assert abs(sketch.quantile(level) - exact) <= bound, level


@pytest.mark.parametrize("accuracy", [A, 1e-2])
@pytest.mark.parametrize("dataset", list(_datasets()), ids=lambda d: d[0])
def test_sketch_cvar_is_within_twice_the_relative_accuracy(
    dataset: tuple[str, np.ndarray], accuracy: float
) -> None:
    _, values = dataset
    sketch = QuantileSketch(accuracy)
    sketch.add(values)
    for level in (0.5, 0.9, 0.95, 0.99):
        var, cvar = sketch.value_at_risk(level)
        exact_var, exact_cvar = value_at_risk(values, level)
        assert abs(var - exact_var) <= _quantile_bound(values, level, accuracy)
        # every tail value but those of the quantile's own bin enters exactly; those are
        # valued within a factor gamma = (1 + a) / (1 - a) of their true value
        assert abs(cvar - exact_cvar) <= 2 * accuracy / (1 - accuracy) * abs(exact_cvar) * 1.0001


def test_sketch_is_exact_on_atoms_and_single_values() -> None:
    # a bin holding one value, or many equal values, returns that value
    rng = np.random.default_rng(5)
    values = np.concatenate([np.full(900, 250.0), np.full(100, -75.5), rng.uniform(1e3, 1e6, 5)])
    sketch = QuantileSketch()
    sketch.add(values)
    for level in (0.0, 0.05, 0.5, 0.95, 0.999, 1.0):
        assert sketch.quantile(level) == pytest.approx(np.quantile(values, level), rel=1e-14)
    var, cvar = sketch.value_at_risk(0.95)
    exact_var, exact_cvar = value_at_risk(values, 0.95)
    assert var == exact_var
    assert cvar == pytest.approx(exact_cvar, rel=1e-14)


def test_sketch_merge_equals_one_sketch_of_everything() -> None:
    rng = np.random.default_rng(9)
    first, second = rng.normal(0, 100, 5000), rng.lognormal(5, 3, 5000)
    merged, single = QuantileSketch(), QuantileSketch()
    part = QuantileSketch()
    merged.add(first)
    part.add(second)
    merged.merge(part)
    single.add(np.concatenate([first, second]))
    assert merged.count == single.count == 10_000
    for level in LEVELS:
        assert merged.quantile(level) == pytest.approx(single.quantile(level), rel=1e-15)
    with pytest.raises(ValueError, match="accuracies"):
        merged.merge(QuantileSketch(1e-3))


def test_sketch_collapses_its_lowest_bins_at_the_cap() -> None:
    rng = np.random.default_rng(3)
    values = 10.0 ** rng.uniform(-8, 8, 40_000)  # ~184,000 bins at a = 1e-4
    max_bins = 20_000  # covers magnitudes over a factor exp(20000 * 2e-4) = e**4, about 55
    sketch = QuantileSketch(A, max_bins=max_bins)
    for batch in np.array_split(values, 9):
        sketch.add(batch)
    assert sketch.collapsed
    assert sketch._positive.counts.size <= max_bins
    assert sketch.count == values.size
    # the accuracy still holds where no bin was collapsed: magnitudes above max / e**4
    kept_from = values.max() * math.exp(-(max_bins - 1) * math.log(sketch.gamma))
    for level in (0.99, 0.995, 0.999, 1.0):
        assert np.quantile(values, level) > kept_from  # the check is in the kept range
        exact = float(np.quantile(values, level))
        assert abs(sketch.quantile(level) - exact) <= _quantile_bound(values, level, A)
    # below it every quantile is still a value between the collapsed bin's extremes
    assert values.min() <= sketch.quantile(0.5) <= kept_from * sketch.gamma


def test_sketch_refuses_non_finite_values_and_is_nan_when_empty() -> None:
    sketch = QuantileSketch()
    assert math.isnan(sketch.quantile(0.5))
    assert all(math.isnan(x) for x in sketch.value_at_risk(0.95))
    with pytest.raises(ValueError, match="finite"):
        sketch.add(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="relative_accuracy"):
        QuantileSketch(0.0)


# ------------------------------------------------------------------------- running moments


def test_running_moments_match_numpy_without_cancellation() -> None:
    rng = np.random.default_rng(17)
    # a large offset: raw sums of squares lose most digits of the variance (checked below)
    values = np.stack([1e6 + rng.normal(0, 1, 10_001), rng.exponential(3.0, 10_001)])
    moments = RunningMoments(2)
    for start in range(0, values.shape[1], 999):
        moments.add(values[:, start : start + 999])
    assert moments.count == values.shape[1]
    np.testing.assert_allclose(moments.mean, values.mean(axis=1), rtol=1e-14)
    exact = values.var(axis=1, ddof=1)
    # rtol: each deviation from 1e6 carries ~1e6 * 2.2e-16 of rounding, ~1e-10 of the variance
    np.testing.assert_allclose(moments.variance(), exact, rtol=1e-9)
    n = values.shape[1]
    naive = (np.square(values).sum(axis=1) - values.sum(axis=1) ** 2 / n) / (n - 1)
    assert abs(naive[0] / exact[0] - 1) > 1e-7  # what the test guards against
    np.testing.assert_allclose(
        moments.standard_error(), values.std(axis=1, ddof=1) / math.sqrt(values.shape[1]), 1e-9
    )


def _synthetic_chunks(n: int, steps: int, cuts: list[int], seed: int) -> list[dict[str, Any]]:
    """Outcomes of two modes on ``n`` paths, cut into chunks at ``cuts``."""
    rng = np.random.default_rng(seed)
    columns = {}
    for mode in ("isolated", "cross"):
        liquidated = rng.random(n) < 0.2
        columns[mode] = {
            "p_liquidation": rng.beta(0.5, 3, n),
            "p_ruin": rng.beta(0.2, 20, n),
            "liquidated": liquidated,
            "hours_to_liquidation": np.where(liquidated, rng.uniform(0, 720, n), np.nan),
            "final_equity": 10_000 + rng.standard_t(4, n) * 800,
            "min_equity": 9_000 + rng.normal(0, 300, n),
            "no_liquidation_by": rng.random((n, steps + 1)),
        }
    edges = [0, *cuts, n]
    return [
        {
            mode: ChunkOutcome(
                path_index=np.arange(a, b),
                **{name: column[a:b] for name, column in columns[mode].items()},
            )
            for mode in ("isolated", "cross")
        }
        for a, b in itertools.pairwise(edges)
    ]


def _streamed(scenario: Any, chunks: list[dict[str, Any]], fold_paths: int) -> SimulationResult:
    stream = StreamedOutcomes(scenario.modes, scenario.account.balance, fold_paths=fold_paths)
    for by_mode in chunks:
        stream.add(by_mode)
    paths = sum(c["isolated"].path_index.size for c in chunks)
    return SimulationResult.from_stream(scenario, paths=paths, seed=1, stream=stream, reason="x")


def test_folding_does_not_depend_on_where_the_chunks_are_cut(
    tiny_scenario: dict[str, Any],
) -> None:
    scenario = ms.load_scenario(tiny_scenario)
    n, steps = 5000, scenario.n_steps
    few = _synthetic_chunks(n, steps, [2500], seed=2)
    many = _synthetic_chunks(n, steps, [7, 300, 301, 1999, 4000, 4998], seed=2)
    a, b = _streamed(scenario, few, 256), _streamed(scenario, many, 256)
    pd.testing.assert_frame_equal(a.summary(), b.summary(), check_exact=True)
    pd.testing.assert_frame_equal(a.difference(), b.difference(), check_exact=True)
    # and the same numbers as a kept result of the same outcomes
    kept = SimulationResult.from_outcomes(
        scenario,
        paths=n,
        seed=1,
        outcomes={m: [c[m] for c in few] for m in ("isolated", "cross")},
    )
    _assert_like_kept(a, kept)


# --------------------------------------------------------------------- streamed engine runs


def _assert_like_kept(streamed: SimulationResult, kept: SimulationResult) -> None:
    got, want = streamed.summary(), kept.summary()
    assert list(got.columns) == list(SUMMARY_COLUMNS)
    assert list(got.index) == list(want.index)
    for column in SUMMARY_COLUMNS:
        # the sketched quantiles: within a (VaR, median) or 2a / (1 - a) (CVaR) of the exact
        rtol = 2 * A / (1 - A) * 1.0001 if column in SKETCHED else 1e-9
        atol = 1e-12 if column.endswith("_se") else 0.0  # a zero SE may round to 1e-17
        np.testing.assert_allclose(got[column], want[column], rtol=rtol, atol=atol, err_msg=column)
    np.testing.assert_allclose(streamed.difference(), kept.difference(), rtol=1e-9, atol=1e-12)
    for mode in kept.modes:
        pd.testing.assert_frame_equal(streamed.survival(mode), kept.survival(mode))


@pytest.fixture(scope="module")
def hedge() -> Any:
    return ms.load_scenario(HEDGE, {"horizon": "7d", "paths": 20_000, "chunk_paths": 2000})


@pytest.fixture(scope="module")
def streamed(hedge: Any) -> SimulationResult:
    return ms.simulate(hedge, progress=False, keep_paths=False)


def test_streamed_run_equals_the_kept_run(hedge: Any, streamed: SimulationResult) -> None:
    kept = ms.simulate(hedge, progress=False)
    assert kept.paths_kept and not streamed.paths_kept
    assert streamed.summary().loc["isolated", "liquidated_fraction"] > 0.01  # a real tail
    _assert_like_kept(streamed, kept)


@pytest.mark.parametrize(("chunk_paths", "workers"), [(500, 1), (4000, 1), (2000, 2)])
def test_streamed_numbers_do_not_depend_on_chunks_or_workers(
    hedge: Any, streamed: SimulationResult, chunk_paths: int, workers: int
) -> None:
    other = ms.simulate(
        hedge, progress=False, keep_paths=False, chunk_paths=chunk_paths, workers=workers
    )
    pd.testing.assert_frame_equal(other.summary(), streamed.summary(), check_exact=True)
    pd.testing.assert_frame_equal(other.difference(), streamed.difference(), check_exact=True)


def test_per_path_of_a_streamed_run_raises_one_clear_line(streamed: SimulationResult) -> None:
    with pytest.raises(PathsNotKeptError) as caught:
        _ = streamed.per_path
    message = str(caught.value)
    assert "\n" not in message
    assert "per_path" in message and "keep_paths=True" in message and "20,000" in message
    assert isinstance(caught.value, MarginSimError) and isinstance(caught.value, AttributeError)
    assert not hasattr(streamed, "per_path")


def test_report_says_where_the_quantiles_come_from(hedge: Any, streamed: SimulationResult) -> None:
    line = "quantile sketch with relative accuracy 1e-4"
    assert line in streamed.report()
    assert line not in ms.simulate(hedge, paths=2000, progress=False).report()


def test_runs_above_the_limit_stream_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = ms.load_scenario(BASELINE, {"paths": 1000, "horizon": "1d", "chunk_paths": 500})
    monkeypatch.setattr(engine, "KEEP_PATHS_LIMIT", 999)
    above = ms.simulate(scenario, progress=False)
    assert not above.paths_kept
    with pytest.raises(PathsNotKeptError, match="more than 999 paths"):
        _ = above.per_path
    assert ms.simulate(scenario, progress=False, keep_paths=True).paths_kept
    assert ms.simulate(scenario, paths=999, progress=False).paths_kept


def test_cli_run_streams_above_the_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(engine, "KEEP_PATHS_LIMIT", 999)
    args = ["run", str(BASELINE), "--paths", "1000", "--set", "horizon=1d", "--workers", "1"]
    assert main([*args, "--no-progress"]) == 0
    assert "quantile sketch" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    assert '"var_95"' in capsys.readouterr().out
