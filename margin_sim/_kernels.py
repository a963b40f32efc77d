"""Compiled inner loops of the engine (numba), each with its plain-numpy twin.

The engine's hot paths are element-wise over (paths x steps) arrays. In numpy each formula
costs a dozen passes over memory; these kernels do one pass per path. Every kernel here has a
numpy twin with the same name prefixed ``numpy_``, and ``tests/test_kernels.py`` checks that
both give the same numbers. When numba is missing the numpy twins are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from margin_sim._typing import FloatArray

#: Crossing probabilities below exp(-NEGLIGIBLE_EXPONENT) are taken as 0 (both twins), which
#: lets the kernels skip the exp/log for the many steps far from any barrier.
NEGLIGIBLE_EXPONENT = 60.0

__all__ = [
    "HAVE_NUMBA",
    "NEGLIGIBLE_EXPONENT",
    "Book",
    "barrier_log_survival",
    "buffer_log_survival",
    "closure_scan",
    "log_no_cross",
    "numpy_barrier_log_survival",
    "numpy_buffer_log_survival",
    "numpy_closure_scan",
    "numpy_ruin_log_barrier",
    "numpy_ruin_probability",
    "portfolio_buffer",
    "ruin_log_barrier",
    "ruin_probability",
]

try:  # pragma: no cover - exercised through both branches in the tests
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        def wrap(function):
            return function

        return wrap


@njit(cache=True, nogil=True, inline="always")
def log_no_cross(b0: float, b1: float, variance: float, cutoff: bool) -> float:  # pragma: no cover
    """log P(a Brownian bridge from ``b0`` to ``b1`` stays above 0), one element.

    The compiled form of :func:`margin_sim.bridge.bridge_log_survival`; with ``cutoff`` a
    probability below exp(-NEGLIGIBLE_EXPONENT) is taken as 0.
    """
    if not (b0 > 0.0 and b1 > 0.0):
        return -np.inf
    if not variance > 0.0 or math.isinf(b0) or math.isinf(b1):
        return 0.0
    if cutoff and 2.0 * b0 * b1 > NEGLIGIBLE_EXPONENT * variance:
        return 0.0
    x = -2.0 * b0 * b1 / variance
    if x > -0.6931471805599453:  # log(1 - e^x), accurate on both sides of -ln 2
        return math.log(-math.expm1(x))
    return math.log1p(-math.exp(x))


# ------------------------------------------------------------ barrier on a log price


def numpy_barrier_log_survival(
    log_price: FloatArray, log_barrier: FloatArray, direction: float, variance: float
) -> FloatArray:
    """Per-step log P(no crossing) of a barrier on one log price, grid knots only.

    Parameters
    ----------
    log_price : array (n, S + 1)
        ln price at the grid points.
    log_barrier : array (n, S)
        ln barrier during each step; NaN = no barrier.
    direction : float
        +1 when crossing means falling to the barrier, -1 when rising to it.
    variance : float
        Variance of ln price over one step.

    Returns
    -------
    array (n, S)
        ``log(1 - exp(-2 d0 d1 / variance))`` with ``d`` the signed distances at the step's
        ends; ``-inf`` where an end is at or beyond the barrier; 0 where there is no barrier.
    """
    from margin_sim.bridge import bridge_log_survival

    barrier = np.where(np.isnan(log_barrier), -direction * np.inf, log_barrier)
    start = direction * (log_price[:, :-1] - barrier)
    end = direction * (log_price[:, 1:] - barrier)
    out = bridge_log_survival(start, end, np.asarray(variance, float))
    with np.errstate(invalid="ignore", over="ignore"):
        far = 2.0 * start * end > NEGLIGIBLE_EXPONENT * variance
    return np.where(far & (start > 0), 0.0, out)


@njit(cache=True, nogil=True)
def _barrier_log_survival(log_price, log_barrier, direction, variance, out):  # pragma: no cover
    n, steps = out.shape
    for i in range(n):
        for s in range(steps):
            b = log_barrier[i, s]
            if math.isnan(b):
                out[i, s] = 0.0
                continue
            d0 = direction * (log_price[i, s] - b)
            d1 = direction * (log_price[i, s + 1] - b)
            out[i, s] = log_no_cross(d0, d1, variance, True)


def barrier_log_survival(
    log_price: FloatArray, log_barrier: FloatArray, direction: float, variance: float
) -> FloatArray:
    """Compiled :func:`numpy_barrier_log_survival` (same arguments and result)."""
    if not HAVE_NUMBA:
        return numpy_barrier_log_survival(log_price, log_barrier, direction, variance)
    out = np.empty(log_barrier.shape)
    _barrier_log_survival(
        np.ascontiguousarray(log_price, dtype=np.float64),
        np.ascontiguousarray(log_barrier, dtype=np.float64),
        float(direction),
        float(variance),
        out,
    )
    return out


# ------------------------------------------------------------------ closure sampling


def numpy_closure_scan(
    log_close: FloatArray,
    log_liquidation: FloatArray,
    log_u_step: FloatArray,
    keep_curve: bool,
) -> tuple[np.ndarray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Scan each path's steps: sampled closure step and liquidation probabilities.

    Parameters
    ----------
    log_close : array (n, S)
        Per-step log P(still open at the end | open at the start).
    log_liquidation : array (n, S)
        Per-step log P(not liquidated | open at the start); liquidation is part of closing.
    log_u_step : array (n,)
        ln of a uniform per path: the closure is the first step whose cumulative log survival
        falls below it (inverse transform).
    keep_curve : bool
        Also return the (n, S + 1) curve of P(not liquidated by grid point k).

    Returns
    -------
    step : int array (n,)
        Step of the sampled closure, S when none.
    share : array (n,)
        P(liquidation | closure in that step), 0 when none.
    p_liquidation : array (n,)
        P(liquidated within the horizon | path).
    curve_sum, curve_sum_squares : arrays (S + 1,)
        Sums over paths of P(not liquidated by k) and of its square.
    curve : array (n, S + 1) or None
    """
    n, steps = log_close.shape
    cumulative = np.cumsum(log_close, axis=1)
    open_before = np.exp(np.concatenate([np.zeros((n, 1)), cumulative[:, :-1]], axis=1))
    q_close = -np.expm1(log_close)
    q_liquidation = np.minimum(-np.expm1(log_liquidation), q_close)
    liquidated_by = np.cumsum(open_before * q_liquidation, axis=1)
    curve = np.concatenate([np.ones((n, 1)), np.clip(1.0 - liquidated_by, 0.0, 1.0)], axis=1)
    crossed = cumulative < log_u_step[:, None]
    closed = crossed.any(axis=1)
    step = np.where(closed, crossed.argmax(axis=1), steps)
    at = np.minimum(step, steps - 1)
    rows = np.arange(n)
    share = np.divide(
        q_liquidation[rows, at], q_close[rows, at], out=np.zeros(n), where=q_close[rows, at] > 0
    )
    share = np.where(closed, share, 0.0)
    p_liquidation = curve[:, -1]
    return (
        step,
        share,
        1.0 - p_liquidation,
        curve.sum(axis=0),
        np.square(curve).sum(axis=0),
        curve if keep_curve else None,
    )


@njit(cache=True, nogil=True)
def _closure_scan(
    log_close, log_liquidation, log_u_step, step_out, share_out, p_out, curve_sum, curve_sq, curve
):  # pragma: no cover
    n, steps = log_close.shape
    keep = curve.shape[0] == n
    for i in range(n):
        cumulative = 0.0
        liquidated_by = 0.0
        step_out[i] = steps
        share_out[i] = 0.0
        curve_sum[0] += 1.0
        curve_sq[0] += 1.0
        if keep:
            curve[i, 0] = 1.0
        for s in range(steps):
            lc = log_close[i, s]
            ll = log_liquidation[i, s]
            if lc != 0.0 or ll != 0.0:  # most steps carry no risk at all
                q_close = -math.expm1(lc)
                q_liq = -math.expm1(ll)
                if q_liq > q_close:
                    q_liq = q_close
                liquidated_by += math.exp(cumulative) * q_liq
                cumulative += lc
                if step_out[i] == steps and cumulative < log_u_step[i]:
                    step_out[i] = s
                    share_out[i] = q_liq / q_close if q_close > 0.0 else 0.0
            c = 1.0 - liquidated_by
            if c < 0.0:
                c = 0.0
            elif c > 1.0:
                c = 1.0
            curve_sum[s + 1] += c
            curve_sq[s + 1] += c * c
            if keep:
                curve[i, s + 1] = c
        c = 1.0 - liquidated_by
        p_out[i] = 1.0 - min(max(c, 0.0), 1.0)


def closure_scan(
    log_close: FloatArray,
    log_liquidation: FloatArray,
    log_u_step: FloatArray,
    keep_curve: bool,
) -> tuple[np.ndarray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Compiled :func:`numpy_closure_scan` (same arguments and results)."""
    if not HAVE_NUMBA:
        return numpy_closure_scan(log_close, log_liquidation, log_u_step, keep_curve)
    n, steps = log_close.shape
    step = np.empty(n, np.int64)
    share = np.empty(n)
    p_liquidation = np.empty(n)
    curve_sum = np.zeros(steps + 1)
    curve_sq = np.zeros(steps + 1)
    curve = np.empty((n, steps + 1)) if keep_curve else np.empty((0, 0))
    _closure_scan(
        np.ascontiguousarray(log_close, dtype=np.float64),
        np.ascontiguousarray(log_liquidation, dtype=np.float64),
        np.ascontiguousarray(log_u_step, dtype=np.float64),
        step,
        share,
        p_liquidation,
        curve_sum,
        curve_sq,
        curve,
    )
    return step, share, p_liquidation, curve_sum, curve_sq, curve if keep_curve else None


# ------------------------------------------------------- one position's ruin barrier


def numpy_ruin_log_barrier(
    constant: FloatArray,
    margin: FloatArray | None,
    slope: float,
    entry: float,
    threshold: float,
    direction: float,
    log_liquidation_barrier: FloatArray | None,
    close_step: np.ndarray,
) -> FloatArray:
    """ln of the price at which one position's account reaches the ruin threshold, per step.

    While the position is open (step ``s <= close_step``) the equity is
    ``constant + margin + slope (P - entry)``; the barrier solves equity = threshold. NaN means
    no ruin through price (a long whose equity stays above the threshold at every price, or a
    level beyond the liquidation price, which liquidation reaches first);
    ``direction * inf`` means ruin for certain (a level on the wrong side of every price).
    After closure the equity is ``constant``: certain ruin if it is at or below the threshold.
    """
    steps = constant.shape[1]
    level = constant - slope * entry
    if margin is not None:
        level = level + margin[:, :steps]
    with np.errstate(divide="ignore", invalid="ignore"):
        barrier_price = (threshold - level) / slope
        log_barrier = np.log(np.where(barrier_price > 0, barrier_price, np.nan))
        if log_liquidation_barrier is not None:
            beyond = direction * (log_barrier - log_liquidation_barrier) <= 0
            log_barrier = np.where(beyond, np.nan, log_barrier)
    certain = direction * np.inf
    if direction < 0:
        log_barrier = np.where(barrier_price <= 0, certain, log_barrier)
    open_ = np.arange(steps)[None, :] <= close_step[:, None]
    closed_value = np.where(constant - threshold <= 0, certain, np.nan)
    return np.where(open_, log_barrier, closed_value)


@njit(cache=True, nogil=True)
def _ruin_log_barrier(
    constant,
    margin,
    has_margin,
    slope,
    entry,
    threshold,
    direction,
    log_liq,
    has_liq,
    close_step,
    out,
):  # pragma: no cover
    n, steps = constant.shape
    certain = direction * np.inf
    for i in range(n):
        last_price = np.nan
        last_log = np.nan
        for s in range(steps):
            if s > close_step[i]:
                out[i, s] = certain if constant[i, s] - threshold <= 0.0 else np.nan
                continue
            level = constant[i, s] - slope * entry
            if has_margin:
                level += margin[i, s]
            barrier_price = (threshold - level) / slope
            if not barrier_price > 0.0:
                out[i, s] = certain if direction < 0 else np.nan
                continue
            if barrier_price != last_price:  # the level moves only with funding and closures
                last_price = barrier_price
                last_log = math.log(barrier_price)
            log_barrier = last_log
            if has_liq:
                liq = log_liq[i, s]
                if direction * (log_barrier - liq) <= 0.0:
                    out[i, s] = np.nan
                    continue
            out[i, s] = log_barrier


def ruin_log_barrier(
    constant: FloatArray,
    margin: FloatArray | None,
    slope: float,
    entry: float,
    threshold: float,
    direction: float,
    log_liquidation_barrier: FloatArray | None,
    close_step: np.ndarray,
) -> FloatArray:
    """Compiled :func:`numpy_ruin_log_barrier` (same arguments and result)."""
    if not HAVE_NUMBA:
        return numpy_ruin_log_barrier(
            constant,
            margin,
            slope,
            entry,
            threshold,
            direction,
            log_liquidation_barrier,
            close_step,
        )
    empty = np.empty((1, 1))
    out = np.empty(constant.shape)
    _ruin_log_barrier(
        np.ascontiguousarray(constant, dtype=np.float64),
        empty if margin is None else np.ascontiguousarray(margin, dtype=np.float64),
        margin is not None,
        float(slope),
        float(entry),
        float(threshold),
        float(direction),
        empty
        if log_liquidation_barrier is None
        else np.ascontiguousarray(log_liquidation_barrier, dtype=np.float64),
        log_liquidation_barrier is not None,
        np.ascontiguousarray(close_step, dtype=np.int64),
        out,
    )
    return out


# ------------------------------------------------------- ruin probability of a path


def numpy_ruin_probability(
    log_ruin: FloatArray,
    log_liquidation: FloatArray,
    implies_ruin: np.ndarray,
    certain_step: np.ndarray,
) -> FloatArray:
    """P(ruin | path) from per-step ruin survivals, conditioned on the sampled liquidations.

    Where a liquidation in a step would imply ruin (``implies_ruin``), the step's ruin
    survival is divided by its liquidation survival: the path was sampled not liquidated
    there, and the liquidation event is nested in the ruin event. ``certain_step`` is the step
    of a sampled event that ruins for certain (S if none): from there on P = 1.
    """
    steps = log_ruin.shape[1]
    with np.errstate(invalid="ignore"):
        # -inf - -inf: a certain liquidation; such steps are at or after ``certain_step``
        conditioned = np.where(implies_ruin, np.minimum(0.0, log_ruin - log_liquidation), log_ruin)
    conditioned = np.where(np.isnan(conditioned), 0.0, conditioned)
    before = np.arange(steps)[None, :] < certain_step[:, None]
    log_survival = np.where(before, conditioned, 0.0).sum(axis=1)
    return np.where(certain_step < steps, 1.0, 0.0 - np.expm1(log_survival))  # never -0.0


@njit(cache=True, nogil=True)
def _ruin_probability(log_ruin, log_liq, implies, certain_step, out):  # pragma: no cover
    n, steps = log_ruin.shape
    by_row = implies.shape[0] == n
    by_step = implies.shape[1] == steps
    for i in range(n):
        if certain_step[i] < steps:
            out[i] = 1.0
            continue
        total = 0.0
        for s in range(steps):
            r = log_ruin[i, s]
            if implies[i if by_row else 0, s if by_step else 0]:
                r = r - log_liq[i, s]
                if math.isnan(r):
                    r = 0.0
                elif r > 0.0:
                    r = 0.0
            total += r
        out[i] = 0.0 - math.expm1(total)  # +0.0, never -0.0


def ruin_probability(
    log_ruin: FloatArray,
    log_liquidation: FloatArray,
    implies_ruin: np.ndarray,
    certain_step: np.ndarray,
) -> FloatArray:
    """Compiled :func:`numpy_ruin_probability` (same arguments and result).

    ``implies_ruin`` may be (n, S), (n, 1), (1, S) or (1, 1): it broadcasts.
    """
    if not HAVE_NUMBA:
        return numpy_ruin_probability(log_ruin, log_liquidation, implies_ruin, certain_step)
    out = np.empty(log_ruin.shape[0])
    _ruin_probability(
        np.ascontiguousarray(log_ruin, dtype=np.float64),
        np.ascontiguousarray(log_liquidation, dtype=np.float64),
        np.ascontiguousarray(np.atleast_2d(implies_ruin), dtype=np.bool_),
        np.ascontiguousarray(certain_step, dtype=np.int64),
        out,
    )
    return out


# ------------------------------------------------------ a portfolio's money buffer


@dataclass(frozen=True)
class Book:
    """What the buffer kernels need of the open positions (K positions, T tiers at most).

    Attributes
    ----------
    asset : int array (K,)
        Asset index of each position.
    sign, quantity, entry : float arrays (K,)
        +1/-1, contracts, entry price.
    floors, rates, cums : float arrays (K, T)
        Each position's maintenance tiers (padded with ``inf`` floors).
    maintenance : int
        0: no maintenance in the buffer; 1: tiered on the mark notional; 2: constant
        ``entry_maintenance`` (a rule on the entry value).
    entry_maintenance : float array (K,)
        Maintenance of each position under rule 2.
    clamp : bool
        Each position's value is floored at 0 (an isolated position loses its margin at most).
    """

    asset: np.ndarray
    sign: FloatArray
    quantity: FloatArray
    entry: FloatArray
    floors: FloatArray
    rates: FloatArray
    cums: FloatArray
    maintenance: int
    entry_maintenance: FloatArray
    clamp: bool


def portfolio_buffer(
    book: Book,
    prices: FloatArray,
    constant: FloatArray,
    margin: FloatArray | None,
    is_open: np.ndarray,
) -> tuple[FloatArray, FloatArray]:
    """Buffer and its gradient in the log prices at given prices (numpy, any shape).

    Parameters
    ----------
    book : Book
    prices : array (A, *shape)
        Prices of every asset at the knots.
    constant : array (*shape)
        The part of the buffer that does not move with prices, quote currency.
    margin : array (K, *shape) or None
        Each position's margin added to its value (isolated), quote currency.
    is_open : bool array (K, *shape)
        Which positions count at each knot.

    Returns
    -------
    buffer : array (*shape)
        ``constant + sum_k open_k value_k``, value = ``s Q (P - EP) + margin - MM``.
    gradient : array (A, *shape)
        d buffer / d ln P_a.
    """
    buffer = np.array(constant, dtype=float, copy=True)
    gradient = np.zeros((prices.shape[0], *buffer.shape))
    for k in range(book.asset.size):
        price = prices[book.asset[k]]
        value = book.sign[k] * book.quantity[k] * (price - book.entry[k])
        if margin is not None:
            value = value + margin[k]
        rate = np.zeros_like(value)
        if book.maintenance == 1:
            notional = book.quantity[k] * price
            tier = np.searchsorted(book.floors[k][1:], notional, side="right")
            rate = book.rates[k][tier]
            value = value - (notional * rate - book.cums[k][tier])
        elif book.maintenance == 2:
            value = value - book.entry_maintenance[k]
        slope = (book.sign[k] - rate) * book.quantity[k] * price
        if book.clamp:
            slope = np.where(value > 0, slope, 0.0)
            value = np.maximum(value, 0.0)
        buffer += np.where(is_open[k], value, 0.0)
        gradient[book.asset[k]] += np.where(is_open[k], slope, 0.0)
    return buffer, gradient


def numpy_buffer_log_survival(
    book: Book,
    prices: FloatArray,
    constant: FloatArray,
    margin: FloatArray | None,
    open_until: np.ndarray,
    covariance: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Grid-only per-step log survival of a portfolio buffer linearised within each step.

    Parameters
    ----------
    book : Book
    prices : array (A, n, S + 1)
        Grid prices.
    constant : array (n, S)
        Price-independent part of the buffer during each step.
    margin : array (K, n, S + 1) or None
        Margins per position (isolated), taken at the step's start column.
    open_until : int array (K, n)
        Position k counts in step s while ``s <= open_until[k]``.
    covariance : array (A, A)
        Covariance of the log-price increments over one step.

    Returns
    -------
    log_survival, variance : arrays (n, S)
        ``log(1 - exp(-2 B0 B1 / V))`` (cut to 0 where negligible, see
        :data:`NEGLIGIBLE_EXPONENT`) and the buffer's step variance ``V = g' C g``, with ``g``
        taken at the end of the step whose buffer is smaller (nearer the barrier).
    """
    from margin_sim.bridge import bridge_log_survival

    steps = constant.shape[1]
    is_open = np.arange(steps)[None, None, :] <= open_until[:, :, None]
    margin_now = None if margin is None else margin[:, :, :steps]
    start, g0 = portfolio_buffer(book, prices[:, :, :-1], constant, margin_now, is_open)
    end, g1 = portfolio_buffer(book, prices[:, :, 1:], constant, margin_now, is_open)
    gradient = np.where(end < start, g1, g0)
    variance = np.einsum("anS,ab,bnS->nS", gradient, covariance, gradient)
    out = bridge_log_survival(start, end, variance)
    with np.errstate(invalid="ignore", over="ignore"):
        far = 2.0 * start * end > NEGLIGIBLE_EXPONENT * variance
    return np.where(far & (start > 0), 0.0, out), variance


@njit(cache=True, nogil=True)
def _buffer_log_survival(
    asset,
    sign,
    quantity,
    entry,
    floors,
    rates,
    cums,
    maintenance,
    entry_maintenance,
    clamp,
    prices,
    constant,
    margin,
    has_margin,
    open_until,
    covariance,
    out,
    out_variance,
):  # pragma: no cover
    n_assets = prices.shape[0]
    n, steps = constant.shape
    n_positions = asset.size
    n_tiers = floors.shape[1]
    g0 = np.zeros(n_assets)
    g1 = np.zeros(n_assets)
    for i in range(n):
        for s in range(steps):
            b0 = constant[i, s]
            b1 = constant[i, s]
            for a in range(n_assets):
                g0[a] = 0.0
                g1[a] = 0.0
            for k in range(n_positions):
                if s > open_until[k, i]:
                    continue
                a = asset[k]
                for end in range(2):
                    price = prices[a, i, s + end]
                    value = sign[k] * quantity[k] * (price - entry[k])
                    if has_margin:
                        value += margin[k, i, s]
                    rate = 0.0
                    if maintenance == 1:
                        notional = quantity[k] * price
                        tier = 0
                        while tier + 1 < n_tiers and floors[k, tier + 1] <= notional:
                            tier += 1
                        rate = rates[k, tier]
                        value -= notional * rate - cums[k, tier]
                    elif maintenance == 2:
                        value -= entry_maintenance[k]
                    slope = (sign[k] - rate) * quantity[k] * price
                    if clamp and not value > 0.0:
                        value = 0.0
                        slope = 0.0
                    if end == 0:
                        b0 += value
                        g0[a] += slope
                    else:
                        b1 += value
                        g1[a] += slope
            variance = 0.0
            for a in range(n_assets):
                ga = g1[a] if b1 < b0 else g0[a]
                for b in range(n_assets):
                    gb = g1[b] if b1 < b0 else g0[b]
                    variance += ga * covariance[a, b] * gb
            out_variance[i, s] = variance
            out[i, s] = log_no_cross(b0, b1, variance, True)


def buffer_log_survival(
    book: Book,
    prices: FloatArray,
    constant: FloatArray,
    margin: FloatArray | None,
    open_until: np.ndarray,
    covariance: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Compiled :func:`numpy_buffer_log_survival` (same arguments and results)."""
    if not HAVE_NUMBA:
        return numpy_buffer_log_survival(book, prices, constant, margin, open_until, covariance)
    out = np.empty(constant.shape)
    variance = np.empty(constant.shape)
    _buffer_log_survival(
        np.ascontiguousarray(book.asset, dtype=np.int64),
        np.ascontiguousarray(book.sign, dtype=np.float64),
        np.ascontiguousarray(book.quantity, dtype=np.float64),
        np.ascontiguousarray(book.entry, dtype=np.float64),
        np.ascontiguousarray(book.floors, dtype=np.float64),
        np.ascontiguousarray(book.rates, dtype=np.float64),
        np.ascontiguousarray(book.cums, dtype=np.float64),
        int(book.maintenance),
        np.ascontiguousarray(book.entry_maintenance, dtype=np.float64),
        bool(book.clamp),
        np.ascontiguousarray(prices, dtype=np.float64),
        np.ascontiguousarray(constant, dtype=np.float64),
        np.empty((1, 1, 1)) if margin is None else np.ascontiguousarray(margin, np.float64),
        margin is not None,
        np.ascontiguousarray(open_until, dtype=np.int64),
        np.ascontiguousarray(covariance, dtype=np.float64),
        out,
        variance,
    )
    return out, variance
