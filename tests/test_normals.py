"""The compiled normal generator (xoshiro256++ + ziggurat) and the path kernel built on it.

Statistical checks use fixed seeds and tolerances of 5 standard errors; the oracles are
scipy's normal distribution and a plain-Python xoshiro256++ written from the paper.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from margin_sim import _market_kernels, _normals
from margin_sim._normals import fill_standard_normal, seed_state, standard_normal

pytestmark = pytest.mark.skipif(not _normals.HAVE_NUMBA, reason="numba is not installed")

N_DRAWS = 4_000_000
TOLERANCE_SE = 5.0


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return standard_normal(seed_state(np.random.SeedSequence(20240601)), N_DRAWS)


def assert_within(value: float, expected: float, standard_error: float) -> None:
    assert abs(value - expected) <= TOLERANCE_SE * standard_error, (
        f"{value} vs {expected}: {abs(value - expected) / standard_error:.1f} SE"
    )


# ------------------------------------------------------------------------ bits


def reference_xoshiro256plusplus(state: list[int], count: int) -> list[int]:
    """xoshiro256++ on Python ints (Blackman and Vigna 2021, the published recurrence)."""
    mask = (1 << 64) - 1

    def rotl(x: int, k: int) -> int:
        return ((x << k) | (x >> (64 - k))) & mask

    s0, s1, s2, s3 = state
    out = []
    for _ in range(count):
        out.append((rotl((s0 + s3) & mask, 23) + s0) & mask)
        t = (s1 << 17) & mask
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
    return out


def test_bits_follow_the_published_recurrence() -> None:
    state = seed_state(np.random.SeedSequence(3))
    expected = reference_xoshiro256plusplus([int(w) for w in state], 50)
    s0, s1, s2, s3 = state
    got = []
    for _ in range(50):
        bits, s0, s1, s2, s3 = (
            np.uint64(w) for w in _normals._next_bits(s0, s1, s2, s3)
        )  # numba hands back Python ints; typed as int64 they would shift arithmetically
        got.append(int(bits))
    assert got == expected


def test_seed_state_comes_from_the_sequence() -> None:
    sequence = np.random.SeedSequence(9, spawn_key=(4,))
    state = seed_state(sequence)
    assert state.dtype == np.uint64 and state.shape == (4,) and state.any()
    assert np.array_equal(state, sequence.generate_state(8, np.uint64)[4:])
    # not the words numpy's SFC64 starts from
    assert not np.any(np.isin(state, sequence.generate_state(4, np.uint64)))


# ---------------------------------------------------------------------- tables


def test_ziggurat_layers_have_equal_area() -> None:
    width, _, height = _normals._tables()
    x = width[: _normals.ZIGGURAT_LAYERS]
    r = _normals.ZIGGURAT_R
    tail = math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))  # integral of exp(-x^2/2) > r
    area = r * math.exp(-r * r / 2) + tail
    assert x[0] * height[0] == pytest.approx(area, rel=1e-14)
    layers = x[1:] * (height[2:] - height[1:-1])  # includes the top layer up to f(0) = 1
    assert np.allclose(layers, area, rtol=1e-9, atol=0.0)
    assert np.all(np.diff(x[1:]) < 0) and x[-1] > 0


# ----------------------------------------------------------------- distribution


def test_moments(draws: np.ndarray) -> None:
    n = draws.size
    assert draws.dtype == np.float64
    assert_within(float(draws.mean()), 0.0, 1.0 / math.sqrt(n))
    assert_within(float(draws.var()), 1.0, math.sqrt(2.0 / n))
    assert_within(float(stats.skew(draws)), 0.0, math.sqrt(6.0 / n))
    assert_within(float(stats.kurtosis(draws)), 0.0, math.sqrt(24.0 / n))


@pytest.mark.parametrize("x", [1.0, 2.0, 3.0, 3.5, 4.0])
def test_tail_frequencies(draws: np.ndarray, x: float) -> None:
    n = draws.size
    p = float(stats.norm.sf(x))
    se = math.sqrt(p * (1 - p) / n)
    assert_within(float(np.mean(draws > x)), p, se)
    assert_within(float(np.mean(draws < -x)), p, se)


def test_beyond_the_base_layer_the_tail_has_the_normal_shape(draws: np.ndarray) -> None:
    r = _normals.ZIGGURAT_R
    excess = np.abs(draws[np.abs(draws) > r]) - r
    assert_within(excess.size / draws.size, 2 * float(stats.norm.sf(r)), 1e-4 / 2)
    # E[Z - r | Z > r] = phi(r) / sf(r) - r (inverse Mills ratio)
    mean = float(stats.norm.pdf(r) / stats.norm.sf(r)) - r
    second = float(stats.norm.expect(lambda z: (z - r) ** 2, loc=0, lb=r) / stats.norm.sf(r))
    se = math.sqrt((second - mean**2) / excess.size)
    assert_within(float(excess.mean()), mean, se)


def test_chi_square_on_fine_equiprobable_bins(draws: np.ndarray) -> None:
    bins = 2000
    counts = np.bincount((stats.norm.cdf(draws) * bins).astype(np.int64), minlength=bins)
    expected = draws.size / bins
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    df = bins - 1
    assert_within(chi2, df, math.sqrt(2.0 * df))


def test_kolmogorov_smirnov(draws: np.ndarray) -> None:
    assert stats.kstest(draws[:1_000_000], "norm").pvalue > 1e-4


@pytest.mark.parametrize("transform", [lambda z: z, np.abs, np.square], ids=["z", "abs", "sq"])
def test_consecutive_draws_are_uncorrelated(draws: np.ndarray, transform) -> None:  # type: ignore[no-untyped-def]
    values = transform(draws)
    n = values.size - 1
    for lag in (1, 2):
        rho = float(np.corrcoef(values[:-lag], values[lag:])[0, 1])
        assert_within(rho, 0.0, 1.0 / math.sqrt(n))


# ------------------------------------------------------------------- streams


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    first = standard_normal(seed_state(np.random.SeedSequence(5, spawn_key=(0,))), 1000)
    again = standard_normal(seed_state(np.random.SeedSequence(5, spawn_key=(0,))), 1000)
    block = standard_normal(seed_state(np.random.SeedSequence(5, spawn_key=(1,))), 1000)
    seed = standard_normal(seed_state(np.random.SeedSequence(6, spawn_key=(0,))), 1000)
    assert np.array_equal(first, again)
    for other in (block, seed):
        assert not np.any(first == other)
        assert abs(float(np.corrcoef(first, other)[0, 1])) < TOLERANCE_SE / math.sqrt(1000)


def test_the_stream_continues_across_calls() -> None:
    state = seed_state(np.random.SeedSequence(8))
    whole = standard_normal(state.copy(), 1000)
    head = standard_normal(state, 300)
    tail = np.empty((7, 100))
    fill_standard_normal(state, tail)
    assert np.array_equal(np.concatenate([head, tail.ravel()]), whole)


def test_bad_arguments_are_refused() -> None:
    state = seed_state(np.random.SeedSequence(1))
    with pytest.raises(ValueError, match="state"):
        fill_standard_normal(state.astype(np.int64), np.empty(3))
    with pytest.raises(ValueError, match="out"):
        fill_standard_normal(state, np.empty((4, 4))[:, ::2])


# -------------------------------------------------------------- path kernel


@pytest.mark.parametrize("n_assets", [1, 2, 3])
def test_path_kernel_matches_its_numpy_twin(n_assets: int) -> None:
    rng = np.random.default_rng(n_assets)
    n_paths, n_steps = 40, 30
    correlation = np.full((n_assets, n_assets), 0.6) + 0.4 * np.eye(n_assets)
    factor = 0.01 * np.linalg.cholesky(correlation)
    drift = rng.normal(0.0, 1e-4, n_assets)
    log_price0 = np.log(rng.uniform(1.0, 100.0, n_assets))
    m = 80  # several events share a path and a step
    path = rng.integers(0, n_paths, m)
    step = rng.integers(0, n_steps // 3, m)
    frac = rng.uniform(0.0, 1.0, m)
    order = np.lexsort((frac, step, path))
    path, step, frac = path[order], step[order], frac[order]
    jump = rng.normal(0.0, 0.05, (n_assets, m))
    bridge_normals = rng.standard_normal((n_assets, m))
    state = seed_state(np.random.SeedSequence(11))
    normals = standard_normal(state.copy(), (n_paths, n_steps, n_assets))
    arguments = (factor, drift, log_price0, path, step, frac, jump, bridge_normals)
    expected, expected_before = _market_kernels.numpy_block_paths(normals, *arguments)
    out = np.full((n_assets, n_paths + 10, n_steps + 1), np.nan)
    view = out[:, 5 : 5 + n_paths]  # as in a chunk: a non-contiguous view
    before = _market_kernels.block_paths(state, *arguments, view)
    np.testing.assert_allclose(view, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(before, expected_before, rtol=1e-13, atol=1e-13)
    assert np.isnan(out[:, :5]).all() and np.isnan(out[:, 5 + n_paths :]).all()
    # the state has moved on exactly past the normals used
    follow = standard_normal(seed_state(np.random.SeedSequence(11)), normals.size + 5)[-5:]
    assert np.array_equal(standard_normal(state, 5), follow)
