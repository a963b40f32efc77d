"""The compiled kernels give the same numbers as their numpy twins."""

from __future__ import annotations

import numpy as np
import pytest

from margin_sim import _kernels as k

pytestmark = pytest.mark.skipif(not k.HAVE_NUMBA, reason="numba is not installed")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


def _log_barrier(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    barrier = np.log(0.9) + 0.01 * rng.standard_normal((n, steps))
    barrier[rng.random((n, steps)) < 0.1] = np.nan  # no barrier
    return barrier


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_barrier_log_survival_matches_numpy(rng: np.random.Generator, direction: float) -> None:
    n, steps = 300, 48
    log_price = np.cumsum(0.02 * rng.standard_normal((n, steps + 1)), axis=1)
    barrier = direction * _log_barrier(rng, n, steps)
    compiled = k.barrier_log_survival(log_price, barrier, direction, 4e-4)
    reference = k.numpy_barrier_log_survival(log_price, barrier, direction, 4e-4)
    assert np.isneginf(reference).any() and (reference == 0).any()
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("keep_curve", [False, True])
def test_closure_scan_matches_numpy(rng: np.random.Generator, keep_curve: bool) -> None:
    n, steps = 400, 60
    log_close = np.log1p(-0.03 * rng.random((n, steps)))
    log_close[rng.random((n, steps)) < 0.005] = -np.inf  # certain closures
    log_liquidation = np.maximum(log_close, np.log1p(-0.02 * rng.random((n, steps))))
    log_u = np.log(rng.random(n))
    compiled = k.closure_scan(log_close, log_liquidation, log_u, keep_curve)
    reference = k.numpy_closure_scan(log_close, log_liquidation, log_u, keep_curve)
    np.testing.assert_array_equal(compiled[0], reference[0])
    assert (compiled[0] < steps).any() and (compiled[0] == steps).any()
    for got, want in zip(compiled[1:5], reference[1:5], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    if keep_curve:
        np.testing.assert_allclose(compiled[5], reference[5], rtol=1e-10, atol=1e-12)
    else:
        assert compiled[5] is None and reference[5] is None


@pytest.mark.parametrize("direction", [1.0, -1.0])
@pytest.mark.parametrize("with_margin", [False, True])
def test_ruin_log_barrier_matches_numpy(
    rng: np.random.Generator, direction: float, with_margin: bool
) -> None:
    n, steps = 200, 30
    constant = 5000 + 3000 * rng.standard_normal((n, steps))
    margin = 1000 + 100 * rng.standard_normal((n, steps)) if with_margin else None
    log_liq = np.log(60000 * (1 - direction * 0.1)) + 0.05 * rng.standard_normal((n, steps))
    close_step = rng.integers(0, steps + 1, n)
    args = (constant, margin, direction * 0.5, 60000.0, 5000.0, direction, log_liq, close_step)
    compiled = k.ruin_log_barrier(*args)
    reference = k.numpy_ruin_log_barrier(*args)
    assert np.isnan(reference).any() and np.isfinite(reference).any()
    np.testing.assert_allclose(compiled, reference, rtol=1e-13, equal_nan=True)


def test_ruin_probability_matches_numpy(rng: np.random.Generator) -> None:
    n, steps = 300, 40
    log_ruin = np.log1p(-0.05 * rng.random((n, steps)))
    log_liq = np.maximum(log_ruin, np.log1p(-0.03 * rng.random((n, steps))))
    log_ruin[rng.random((n, steps)) < 0.01] = -np.inf
    log_liq[rng.random((n, steps)) < 0.01] = -np.inf
    implies = rng.random((n, steps)) < 0.5
    certain = np.where(rng.random(n) < 0.2, rng.integers(0, steps, n), steps)
    compiled = k.ruin_probability(log_ruin, log_liq, implies, certain)
    reference = k.numpy_ruin_probability(log_ruin, log_liq, implies, certain)
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-15)
    assert (reference == 1).any() and (reference < 1).any()


def test_engine_same_numbers_without_numba(
    monkeypatch: pytest.MonkeyPatch, tiny_scenario: dict
) -> None:
    import margin_sim as ms

    scenario = ms.load_scenario(tiny_scenario, {"paths": 600, "account.balance": 2000})
    compiled = ms.simulate(scenario, progress=False).per_path
    monkeypatch.setattr(k, "HAVE_NUMBA", False)
    plain = ms.simulate(scenario, progress=False).per_path
    assert compiled["p_liquidation"].sum() > 0
    np.testing.assert_array_equal(compiled["liquidated"], plain["liquidated"])
    for column in ("p_liquidation", "p_ruin", "final_equity", "min_equity"):
        np.testing.assert_allclose(compiled[column], plain[column], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("maintenance", "clamp", "with_margin"), [(0, True, True), (1, False, False), (2, False, False)]
)
def test_buffer_log_survival_matches_numpy(
    rng: np.random.Generator, maintenance: int, clamp: bool, with_margin: bool
) -> None:
    n, steps, assets = 300, 24, 2
    prices = np.exp(
        np.log([[60000.0], [2500.0]])[:, :, None]
        + np.cumsum(0.01 * rng.standard_normal((assets, n, steps + 1)), axis=2)
    )
    floors = np.array([[0.0, 50000.0, np.inf], [0.0, 50000.0, 600000.0]])
    rates = np.array([[0.004, 0.005, 0.0], [0.004, 0.005, 0.0065]])
    cums = np.array([[0.0, 50.0, 0.0], [0.0, 50.0, 950.0]])
    book = k.Book(
        asset=np.array([0, 1]),
        sign=np.array([1.0, -1.0]),
        quantity=np.array([1.0, 20.0]),
        entry=np.array([60000.0, 2500.0]),
        floors=floors,
        rates=rates,
        cums=cums,
        maintenance=maintenance,
        entry_maintenance=np.array([240.0, 200.0]),
        clamp=clamp,
    )
    constant = 3000.0 + 2500.0 * rng.standard_normal((n, steps))
    margin = 600.0 + 50 * rng.random((2, n, steps + 1)) if with_margin else None
    open_until = rng.integers(0, steps + 1, (2, n))
    covariance = np.array([[1e-4, 0.8e-4], [0.8e-4, 1.5e-4]])
    args = (book, prices, constant, margin, open_until, covariance)
    compiled, compiled_variance = k.buffer_log_survival(*args)
    reference, reference_variance = k.numpy_buffer_log_survival(*args)
    assert np.isneginf(reference).any() and ((reference < 0) & np.isfinite(reference)).any()
    np.testing.assert_allclose(compiled_variance, reference_variance, rtol=1e-10)
    np.testing.assert_allclose(compiled, reference, rtol=1e-9, atol=1e-12)
