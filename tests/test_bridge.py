"""Tests of margin_sim.bridge: the Brownian-bridge survival kernel and the event splitting.

Oracles: the method of images (killed over free Gaussian transition density, computed with
scipy.stats.norm), exactly discretised Brownian bridges simulated here with numpy (with the
Broadie-Glasserman-Kou continuity correction for the fine grid), the law of total probability
over an intermediate knot, and hand-computed products of segment survivals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from margin_sim.bridge import EventKnots, bridge_log_survival, step_log_survival
from margin_sim.reference import BGK_BETA


def _images_crossing_probability(b0: float, b1: float, variance: float) -> float:
    """P(bridge from b0 to b1 touches 0) from the method of images.

    A Brownian motion started at ``b0`` > 0 and killed at 0 has transition density
    ``phi(b1 - b0) - phi(b1 + b0)`` (Gaussians of variance ``variance``; e.g. Karatzas and
    Shreve, *Brownian Motion and Stochastic Calculus*, sec. 2.8). Dividing by the free density
    ``phi(b1 - b0)`` gives the probability that the bridge stays positive.
    """
    scale = math.sqrt(variance)
    free = stats.norm.pdf(b1 - b0, scale=scale)
    killed = free - stats.norm.pdf(b1 + b0, scale=scale)
    return 1.0 - killed / free


def _simulated_crossing(
    b0: float, b1: float, variance: float, n_bridges: int, n_fine: int, seed: int
) -> tuple[float, float]:
    """Fraction of exactly discretised bridges whose fine-grid minimum is at or below the
    BGK-shifted level ``beta sqrt(variance / n_fine)``, and its standard error.

    Checking a fine grid of spacing dt against the level ``+beta sigma sqrt(dt)`` approximates
    continuous monitoring at 0 up to o(sqrt(dt)) (Broadie, Glasserman and Kou 1997).
    """
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    times = np.arange(1, n_fine + 1) / n_fine
    while done < n_bridges:
        n = min(2000, n_bridges - done)
        walk = np.cumsum(rng.standard_normal((n, n_fine)) * math.sqrt(variance / n_fine), axis=1)
        bridge = b0 + walk - times * walk[:, -1:] + times * (b1 - b0)
        minimum = np.minimum(bridge.min(axis=1), b0)
        hits += int(np.count_nonzero(minimum <= BGK_BETA * math.sqrt(variance / n_fine)))
        done += n
    p = hits / n_bridges
    return p, math.sqrt(max(p * (1 - p), 1.0 / n_bridges) / n_bridges)


# ------------------------------------------------------------------ bridge_log_survival


@pytest.mark.parametrize(
    ("b0", "b1", "variance"),
    [(0.1, 0.1, 0.02), (0.05, 0.3, 0.01), (1.0, 2.0, 4.0), (3.0, 0.01, 0.5), (0.2, 0.2, 0.001)],
)
def test_bridge_survival_matches_method_of_images(b0: float, b1: float, variance: float) -> None:
    crossing = -math.expm1(float(bridge_log_survival(np.array(b0), np.array(b1), variance)))
    assert crossing == pytest.approx(_images_crossing_probability(b0, b1, variance), abs=1e-12)


@pytest.mark.parametrize(
    ("b0", "b1", "variance", "seed"),
    [(0.1, 0.1, 0.02, 1), (0.05, 0.2, 0.01, 2), (1.0, 0.5, 1.0, 3), (0.3, 0.3, 0.36, 4)],
)
def test_bridge_survival_matches_simulated_bridges(
    b0: float, b1: float, variance: float, seed: int
) -> None:
    simulated, se = _simulated_crossing(b0, b1, variance, 8000, 400, seed)
    crossing = -math.expm1(float(bridge_log_survival(np.array(b0), np.array(b1), variance)))
    assert 0.05 < crossing < 0.95  # a case where the check has power
    assert abs(simulated - crossing) < 4 * se, (simulated, crossing, se)


def test_bridge_survival_is_vectorised_and_broadcasts() -> None:
    rng = np.random.default_rng(0)
    b0 = rng.uniform(0.01, 1.0, (5, 7))
    b1 = rng.uniform(0.01, 1.0, (5, 7))
    variance = rng.uniform(0.01, 1.0, (1, 7))
    got = bridge_log_survival(b0, b1, variance)
    assert got.shape == (5, 7)
    expected = np.log1p(-np.exp(-2 * b0 * b1 / variance))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("b0", "b1"), [(0.0, 0.5), (0.5, 0.0), (-0.1, 0.5), (0.5, -0.1), (-1.0, -1.0), (0.0, 0.0)]
)
def test_an_end_at_or_below_zero_is_a_certain_crossing(b0: float, b1: float) -> None:
    assert bridge_log_survival(np.array(b0), np.array(b1), np.array(0.3)) == -np.inf
    assert bridge_log_survival(np.array(b0), np.array(b1), np.array(0.0)) == -np.inf


def test_infinite_buffer_and_zero_variance_survive() -> None:
    inf = np.inf
    b0 = np.array([inf, 0.5, inf, 0.5, 1e-9, inf])
    b1 = np.array([0.5, inf, inf, 0.5, 1e-9, inf])
    variance = np.array([0.3, 0.3, 0.3, 0.0, 0.0, 0.0])
    got = bridge_log_survival(b0, b1, variance)
    np.testing.assert_array_equal(got, np.zeros(6))
    assert not np.isnan(got).any()
    # no barrier on one side still loses to an end below zero
    assert bridge_log_survival(np.array(inf), np.array(-1.0), np.array(0.0)) == -np.inf


@pytest.mark.parametrize("exponent", [1e-9, 1e-6, 1e-3, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0])
def test_log_survival_is_accurate_near_certain_and_near_impossible_crossings(
    exponent: float,
) -> None:
    """log(1 - exp(-x)) to 1e-6 relative: log(-expm1(-x)) for small x, log1p(-exp(-x)) for
    large x (Maechler 2012, "Accurately computing log(1 - exp(-|a|))", Rmpfr vignette)."""
    b = math.sqrt(exponent / 2.0)
    got = float(bridge_log_survival(np.array(b), np.array(b), np.array(1.0)))
    exact = (
        math.log(-math.expm1(-exponent))
        if exponent <= math.log(2)
        else math.log1p(-math.exp(-exponent))
    )
    assert got == pytest.approx(exact, rel=1e-6, abs=0.0)


# ------------------------------------------------------------------ step_log_survival


def _log_bridge(a: float, b: float, v: float) -> float:
    """Hand formula: ln(1 - exp(-2ab/v)) for a, b > 0, -inf otherwise."""
    if a <= 0 or b <= 0:
        return -math.inf
    return math.log1p(-math.exp(-2.0 * a * b / v))


def _two_path_example(
    trough_second: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, EventKnots]:
    """Two paths, three steps. Path 0 has two events in step 1; path 1 has one in step 0."""
    start = np.array([[0.30, 0.25, 0.40], [0.20, 0.35, 0.30]])
    end = np.array([[0.25, 0.40, 0.50], [0.35, 0.30, 0.45]])
    variance = np.array([[0.02, 0.03, 0.02], [0.01, 0.02, 0.04]])
    events = EventKnots(
        path=np.array([0, 0, 1]),
        step=np.array([1, 1, 0]),
        frac=np.array([0.3, 0.7, 0.5]),
        before=np.array([0.20, 0.33, 0.18]),
        trough=np.array([0.05, trough_second, 0.18]),
        after=np.array([0.28, 0.31, 0.15]),
    )
    return start, end, variance, events


def test_step_survival_with_two_events_is_the_product_of_segments() -> None:
    start, end, variance, events = _two_path_example(trough_second=0.10)
    log_s, event_part = step_log_survival(start, end, variance, events)
    v = variance[0, 1]
    by_hand = (
        _log_bridge(0.25, 0.20, v * 0.3)  # start -> before the first event
        + _log_bridge(0.28, 0.33, v * 0.4)  # after the first -> before the second
        + _log_bridge(0.31, 0.40, v * 0.3)  # after the second -> end of step
    )
    assert log_s[0, 1] == pytest.approx(by_hand, rel=1e-12)
    v1 = variance[1, 0]
    by_hand_1 = _log_bridge(0.20, 0.18, v1 * 0.5) + _log_bridge(0.15, 0.35, v1 * 0.5)
    assert log_s[1, 0] == pytest.approx(by_hand_1, rel=1e-12)
    # steps without events keep the plain bridge
    for row, step in [(0, 0), (0, 2), (1, 1), (1, 2)]:
        plain = _log_bridge(start[row, step], end[row, step], variance[row, step])
        assert log_s[row, step] == pytest.approx(plain, rel=1e-12)
    np.testing.assert_array_equal(event_part, np.zeros_like(event_part))


def test_a_trough_below_zero_is_a_certain_crossing() -> None:
    start, end, variance, events = _two_path_example(trough_second=-0.01)
    log_s, event_part = step_log_survival(start, end, variance, events)
    assert log_s[0, 1] == -np.inf
    assert event_part[0, 1] == -np.inf
    assert np.isfinite(log_s[1, 0]) and event_part[1, 0] == 0.0
    # a post-jump value below zero too
    gap = EventKnots(
        path=events.path,
        step=events.step,
        frac=events.frac,
        before=events.before,
        trough=np.array([0.05, 0.10, 0.18]),
        after=np.array([0.28, 0.31, -0.02]),
    )
    log_s, event_part = step_log_survival(start, end, variance, gap)
    assert log_s[1, 0] == -np.inf and event_part[1, 0] == -np.inf
    assert np.isfinite(log_s[0, 1])


def test_step_survival_does_not_modify_its_inputs() -> None:
    start, end, variance, events = _two_path_example(trough_second=0.10)
    copies = [start.copy(), end.copy(), variance.copy()]
    step_log_survival(start, end, variance, events)
    for original, copy in zip((start, end, variance), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_splitting_at_a_sampled_knot_averages_to_the_unsplit_bridge() -> None:
    """Law of total probability: with a no-op event at fraction f whose value is drawn from
    the bridge's law at f, N(b0 + f (b1 - b0), V f (1 - f)), the mean split survival is the
    unsplit survival."""
    rng = np.random.default_rng(11)
    n, b0, b1, v, f = 40_000, 0.15, 0.1, 0.04, 0.35
    middle = rng.normal(b0 + f * (b1 - b0), math.sqrt(v * f * (1 - f)), n)
    start = np.full((n, 1), b0)
    end = np.full((n, 1), b1)
    events = EventKnots(
        path=np.arange(n),
        step=np.zeros(n, np.int64),
        frac=np.full(n, f),
        before=middle,
        trough=middle,
        after=middle,
    )
    split, _ = step_log_survival(start, end, np.array(v), events)
    survival = np.exp(split[:, 0])
    expected = math.exp(_log_bridge(b0, b1, v))
    se = survival.std(ddof=1) / math.sqrt(n)
    assert abs(survival.mean() - expected) < 4 * se, (survival.mean(), expected, se)


def test_no_events_gives_the_plain_bridge() -> None:
    start = np.array([[0.3, 0.2]])
    end = np.array([[0.2, 0.1]])
    empty = EventKnots(*(np.zeros(0, np.int64),) * 2, *(np.zeros(0),) * 4)
    for events in (None, empty):
        log_s, event_part = step_log_survival(start, end, 0.05, events)
        np.testing.assert_allclose(log_s, bridge_log_survival(start, end, 0.05), rtol=1e-15)
        np.testing.assert_array_equal(event_part, 0.0)
