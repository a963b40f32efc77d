"""Fast path for the commonest book: one position without a stop-loss (compiled, numba).

For one position the engine's general code (:mod:`margin_sim.engine`) makes a dozen passes
over (paths x steps) arrays: barrier survivals for liquidation and ruin, the closure scan, the
ruin conditioning, the equity path. This module does all of it in one pass per path, with the
same formulas in the same order, so it gives the same numbers (``tests/test_single.py``
checks it against the general code, path by path). Both margin modes use it:

* isolated: the position's margin is its isolated margin, the account also holds the free
  wallet ``base``, and the position's value is floored at 0 (it loses its margin at most);
* cross: the margin is the whole wallet (``base`` 0), no floor, and a liquidated account keeps
  ``max(0, MM - liquidation_fee * notional)`` at the liquidation price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from margin_sim._kernels import HAVE_NUMBA, log_no_cross, njit
from margin_sim._typing import FloatArray, IntArray

__all__ = ["SingleOutcome", "SinglePosition", "as_f64", "as_i64", "single_position_scan"]


@dataclass(frozen=True)
class SinglePosition:
    """The constants of one position's evaluation.

    Attributes
    ----------
    direction : float
        +1 long, -1 short.
    quantity, entry : float
        Contracts and entry price.
    base : float
        Account equity outside the position (free wallet in isolated, 0 in cross), quote.
    clamp : bool
        Floor the position's value at 0 (isolated).
    threshold : float
        Ruin threshold on account equity, quote.
    taker_fee, liquidation_fee : float
        Fractions of notional.
    keep_maintenance : bool
        A liquidated account keeps ``max(0, MM - liquidation_fee * notional)`` (cross).
    floors, rates, cums : float arrays
        The tier table (mark-notional rule), used when ``keep_maintenance``.
    entry_maintenance : float
        Maintenance on the entry value (bybit rule), used when ``entry_rule``.
    entry_rule : bool
    step_hours : float
    """

    direction: float
    quantity: float
    entry: float
    base: float
    clamp: bool
    threshold: float
    taker_fee: float
    liquidation_fee: float
    keep_maintenance: bool
    floors: FloatArray
    rates: FloatArray
    cums: FloatArray
    entry_maintenance: float
    entry_rule: bool
    step_hours: float


@dataclass(frozen=True)
class SingleOutcome:
    """Per-path results of a compiled scan (arrays of shape (n,), curve sums (S + 1,)).

    Shared by :mod:`margin_sim._single`, :mod:`margin_sim._single_stop` and
    :mod:`margin_sim._multi`: :meth:`empty` allocates it, the kernel fills it and writes each
    path's survival curve as changes (a difference array), :meth:`finish_curve` sums them up.
    """

    p_liquidation: FloatArray
    p_ruin: FloatArray
    liquidated: np.ndarray
    hours_to_liquidation: FloatArray
    final_equity: FloatArray
    min_equity: FloatArray
    survival_sum: FloatArray
    survival_sum_squares: FloatArray

    @classmethod
    def empty(cls, n: int, steps: int) -> SingleOutcome:
        """Outputs for ``n`` paths of ``steps`` steps; curve sums zeroed for the kernel."""
        return cls(
            p_liquidation=np.empty(n),
            p_ruin=np.empty(n),
            liquidated=np.empty(n, np.bool_),
            hours_to_liquidation=np.empty(n),
            final_equity=np.empty(n),
            min_equity=np.empty(n),
            survival_sum=np.zeros(steps + 1),
            survival_sum_squares=np.zeros(steps + 1),
        )

    def finish_curve(self) -> SingleOutcome:
        """Turn the kernel's per-path changes of the curve into sums over the paths."""
        n = self.p_liquidation.size
        np.cumsum(self.survival_sum, out=self.survival_sum)
        np.cumsum(self.survival_sum_squares, out=self.survival_sum_squares)
        self.survival_sum[:] += n
        self.survival_sum_squares[:] += n
        return self


def as_f64(array: np.ndarray) -> FloatArray:
    """A C-contiguous float64 array for a kernel (no copy when it already is one)."""
    return np.ascontiguousarray(array, dtype=np.float64)


def as_i64(array: np.ndarray) -> IntArray:
    """A C-contiguous int64 array for a kernel (no copy when it already is one)."""
    return np.ascontiguousarray(array, dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def _maintenance(notional, floors, rates, cums, entry_rule, entry_maintenance):  # pragma: no cover
    """Maintenance requirement of one position at ``notional`` (tier table, or the constant
    ``entry_maintenance`` on the entry-value rule), quote currency."""
    if entry_rule:
        return entry_maintenance
    tier = 0
    while tier + 1 < floors.size and floors[tier + 1] <= notional:
        tier += 1
    return notional * rates[tier] - cums[tier]


@njit(cache=True, nogil=True, inline="always")
def _step_log_survival(
    log_barrier, direction, x0, x1, variance, first, last, ev_frac, ev_before, ev_trough, ev_after
):  # pragma: no cover
    """One step's log survival of a barrier on the log price, split at the step's events."""
    if math.isnan(log_barrier):
        return 0.0
    if first == last:
        return log_no_cross(
            direction * (x0 - log_barrier), direction * (x1 - log_barrier), variance, True
        )
    total = 0.0
    previous = direction * (x0 - log_barrier)
    previous_frac = 0.0
    for e in range(first, last):
        before = direction * (ev_before[e] - log_barrier)
        total += log_no_cross(previous, before, variance * (ev_frac[e] - previous_frac), False)
        trough = direction * (ev_trough[e] - log_barrier)
        after = direction * (ev_after[e] - log_barrier)
        if not (trough > 0.0 and after > 0.0):
            total = -np.inf
        previous = after
        previous_frac = ev_frac[e]
    total += log_no_cross(
        previous, direction * (x1 - log_barrier), variance * (1.0 - previous_frac), False
    )
    return total


@njit(cache=True, nogil=True)
def _scan(
    log_price,
    price,
    log_liq,
    epoch,
    margin,
    variance,
    ev_offset,
    ev_step,
    ev_frac,
    ev_before,
    ev_trough,
    ev_after,
    log_u,
    u_time,
    direction,
    quantity,
    entry,
    base,
    clamp,
    threshold,
    taker_fee,
    liquidation_fee,
    keep_maintenance,
    floors,
    rates,
    cums,
    entry_maintenance,
    entry_rule,
    step_hours,
    p_liq,
    p_ruin,
    liquidated,
    hours,
    final,
    minimum,
    curve_sum,
    curve_sq,
):  # pragma: no cover
    n = log_liq.shape[0]
    steps = epoch.size - 1
    slope = direction * quantity
    log_q = np.zeros(steps)
    first_event = np.zeros(steps + 1, np.int64)
    n_epochs = margin.shape[1]
    ruin_barrier = np.empty(n_epochs)
    for i in range(n):
        # pass 1: liquidation, step by step (engine._sample_closure)
        cumulative = 0.0
        liquidated_by = 0.0
        liq_step = steps
        e = ev_offset[i]
        c_previous = 1.0
        for s in range(steps):
            first_event[s] = e
            while e < ev_offset[i + 1] and ev_step[e] == s:
                e += 1
            lq = _step_log_survival(
                log_liq[i, epoch[s]],
                direction,
                log_price[i, s],
                log_price[i, s + 1],
                variance,
                first_event[s],
                e,
                ev_frac,
                ev_before,
                ev_trough,
                ev_after,
            )
            log_q[s] = lq
            if lq != 0.0:
                liquidated_by += math.exp(cumulative) * -math.expm1(lq)
                cumulative += lq
                if liq_step == steps and cumulative < log_u[i]:
                    liq_step = s
                # the curve P(not liquidated by k) changed at k = s + 1: record the change
                c = min(max(1.0 - liquidated_by, 0.0), 1.0)
                curve_sum[s + 1] += c - c_previous
                curve_sq[s + 1] += c * c - c_previous * c_previous
                c_previous = c
                if cumulative == -np.inf:  # crossed for certain: nothing later can change
                    for rest in range(s + 1, steps):
                        first_event[rest] = e
                        log_q[rest] = 0.0
                    break
        first_event[steps] = e
        p_liq[i] = 1.0 - min(max(1.0 - liquidated_by, 0.0), 1.0)
        # what a liquidation leaves: 0 (isolated) or MM - fee at the liquidation price (cross)
        at = min(liq_step, steps - 1)
        kept = 0.0
        if keep_maintenance:
            at_price = math.exp(log_liq[i, epoch[at]])
            if not math.isfinite(at_price):
                at_price = price[i, at]
            maintenance = _maintenance(
                quantity * at_price, floors, rates, cums, entry_rule, entry_maintenance
            )
            kept = max(0.0, maintenance - liquidation_fee * quantity * at_price)
        implies = base + kept <= threshold
        is_liquidated = liq_step < steps
        liquidated[i] = is_liquidated
        hours[i] = (liq_step + u_time[i]) * step_hours if is_liquidated else np.nan
        # pass 2: equity on the grid and at the troughs, and ruin, while the position is open
        lowest = np.inf
        ruin_log = 0.0
        no_ruin = clamp and base > threshold  # equity >= free wallet > threshold
        last_open = min(liq_step, steps - 1)
        if not no_ruin:  # the ruin barrier of each funding epoch
            for j in range(n_epochs):
                # equity base + m + slope (P - entry) = threshold
                barrier_price = (threshold - (base + margin[i, j] - slope * entry)) / slope
                if barrier_price > 0.0:
                    log_barrier = math.log(barrier_price)
                    if direction * (log_barrier - log_liq[i, j]) <= 0.0:
                        log_barrier = np.nan  # beyond the liquidation price: liquidated first
                elif direction < 0.0:
                    log_barrier = direction * np.inf  # ruined at any price
                else:
                    log_barrier = np.nan
                ruin_barrier[j] = log_barrier
        for s in range(last_open + 1):
            m = margin[i, epoch[s]]
            value = m + slope * (price[i, s] - entry)
            if clamp and value < 0.0:
                value = 0.0
            lowest = min(lowest, base + value)
            for k in range(first_event[s], first_event[s + 1]):
                value = m + slope * (math.exp(ev_trough[k]) - entry)
                if clamp and value < 0.0:
                    value = 0.0
                lowest = min(lowest, base + value)
            if no_ruin:
                continue
            log_r = _step_log_survival(
                ruin_barrier[epoch[s]],
                direction,
                log_price[i, s],
                log_price[i, s + 1],
                variance,
                first_event[s],
                first_event[s + 1],
                ev_frac,
                ev_before,
                ev_trough,
                ev_after,
            )
            if implies:  # nested in ruin: condition on "not liquidated in this step"
                conditioned = log_r - log_q[s]
                if math.isnan(conditioned) or conditioned > 0.0:
                    conditioned = 0.0
                ruin_log += conditioned
            else:
                ruin_log += log_r
        if no_ruin:
            p_ruin[i] = 0.0
        elif is_liquidated and implies:
            p_ruin[i] = 1.0
        else:
            p_ruin[i] = 0.0 - math.expm1(ruin_log)  # +0.0, never -0.0
        if is_liquidated:
            final[i] = base + kept
            lowest = min(lowest, base + kept)
        else:
            price_end = price[i, steps]
            value = margin[i, epoch[steps]] + slope * (price_end - entry)
            final[i] = base + value - taker_fee * quantity * price_end
            if clamp and value < 0.0:
                value = 0.0
            lowest = min(lowest, base + value)
        minimum[i] = lowest


def single_position_scan(
    position: SinglePosition,
    log_price: FloatArray,
    price: FloatArray,
    log_liquidation_barrier: FloatArray,
    epoch: IntArray,
    margin: FloatArray,
    variance: float,
    events: tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray],
    u_step: FloatArray,
    u_time: FloatArray,
) -> SingleOutcome:
    """Evaluate one position on every path of a chunk in one pass per path.

    Parameters
    ----------
    position : SinglePosition
    log_price, price : arrays (n, S + 1)
        ln price and price of the position's asset at the grid points.
    log_liquidation_barrier : array (n, E)
        ln liquidation price in each funding epoch (NaN: none).
    epoch : int array (S + 1,)
        The epoch of each grid point (margin and liquidation price move only when funding is
        paid); step s uses the epoch of its starting point.
    margin : array (n, E)
        The position's margin in each epoch (isolated margin, or the cross wallet).
    variance : float
        Variance of ln price over one step.
    events : tuple
        ``(offset, step, frac, before, trough, after)``: ``offset`` (n + 1,) indexes each
        path's events, sorted by step and time; the rest are per event, the log prices just
        before, at the (mark) trough and just after.
    u_step, u_time : arrays (n,)
        Uniforms that sample the liquidation step and the time inside it.

    Returns
    -------
    SingleOutcome
    """
    if not HAVE_NUMBA:  # pragma: no cover - the engine calls this only with numba
        raise RuntimeError("the single-position fast path needs numba")
    n, steps = log_liquidation_barrier.shape[0], epoch.size - 1
    out = SingleOutcome.empty(n, steps)
    offset, step, frac, before, trough, after = events
    p = position
    _scan(
        as_f64(log_price),
        as_f64(price),
        as_f64(log_liquidation_barrier),
        as_i64(epoch),
        as_f64(margin),
        float(variance),
        as_i64(offset),
        as_i64(step),
        as_f64(frac),
        as_f64(before),
        as_f64(trough),
        as_f64(after),
        np.log(u_step),
        as_f64(u_time),
        float(p.direction),
        float(p.quantity),
        float(p.entry),
        float(p.base),
        bool(p.clamp),
        float(p.threshold),
        float(p.taker_fee),
        float(p.liquidation_fee),
        bool(p.keep_maintenance),
        as_f64(p.floors),
        as_f64(p.rates),
        as_f64(p.cums),
        float(p.entry_maintenance),
        bool(p.entry_rule),
        float(p.step_hours),
        out.p_liquidation,
        out.p_ruin,
        out.liquidated,
        out.hours_to_liquidation,
        out.final_equity,
        out.min_equity,
        out.survival_sum,
        out.survival_sum_squares,
    )
    return out.finish_curve()
