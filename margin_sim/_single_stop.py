"""Fast path for one position WITH a stop-loss (compiled, numba), both margin modes.

The companion of :mod:`margin_sim._single` (one position without a stop): the same
evaluation as the engine's general code (:func:`margin_sim.engine._position_closure`, the
isolated and cross mode functions and ``_gap_fills``), done in compiled passes per path with
the same formulas, so it gives the same numbers; ``tests/test_single.py`` compares the two
path by path (``engine.FAST_SINGLE_POSITION = False`` switches both fast paths off).

Per step the position closes by its stop (a barrier on the LAST price, with the wicks' last
troughs) or by liquidation (on the MARK price, mark troughs); where the stop is nearer than
the liquidation price only a jump or a trough can liquidate (the event checks alone). One
uniform samples the closing step from the cumulative survival, a second whether that closure
was the liquidation (its share of the step's closing probability), a third its time in the
step; a stop filled in a step with events is filled at the stop price if the diffusion
crossed it, at the first price beyond it if a jump or a trough went through it (sampled in
proportion to the probability of each part of the step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from margin_sim._kernels import HAVE_NUMBA, log_no_cross, njit
from margin_sim._single import (
    SingleOutcome,
    _maintenance,
    _step_log_survival,
    as_f64,
    as_i64,
)
from margin_sim._typing import FloatArray, IntArray

__all__ = ["StopPosition", "single_stop_scan"]


@dataclass(frozen=True)
class StopPosition:
    """The constants of one position with a stop-loss.

    Attributes
    ----------
    direction, quantity, entry : float
        +1 long / -1 short, contracts, entry price (quote per contract).
    stop : float
        Stop price, quote per contract.
    cross : bool
        Cross mode (the margin is the wallet; a liquidated account keeps MM - fee) or
        isolated (the position's value is floored at 0, the free wallet ``base`` is apart).
    base : float
        The free wallet in isolated mode (0 in cross), quote.
    wallet0 : float
        The cross wallet after the opening fee, quote (unused in isolated).
    threshold : float
        Ruin threshold on account equity, quote.
    taker_fee, liquidation_fee : float
        Fractions of notional.
    floors, rates, cums : float arrays
        The tier table (mark-notional rule).
    entry_maintenance : float
        Maintenance on the entry value, used when ``entry_rule``.
    entry_rule : bool
    step_hours : float
    """

    direction: float
    quantity: float
    entry: float
    stop: float
    cross: bool
    base: float
    wallet0: float
    threshold: float
    taker_fee: float
    liquidation_fee: float
    floors: FloatArray
    rates: FloatArray
    cums: FloatArray
    entry_maintenance: float
    entry_rule: bool
    step_hours: float


@njit(cache=True, nogil=True)
def _gap_fill(
    direction,
    log_stop,
    x0,
    x1,
    variance,
    first,
    last,
    ev_frac,
    ev_before,
    ev_trough_last,
    ev_after,
    u,
):  # pragma: no cover
    """Fill price of a stop crossed in a step holding events (engine._gap_fills): the stop
    price if a bridge segment crossed it, else the first price beyond it at the event."""
    n_parts = 2 * (last - first) + 1
    weight = np.zeros(n_parts)
    open_ = 1.0
    previous = direction * (x0 - log_stop)
    previous_frac = 0.0
    for r in range(last - first):
        e = first + r
        q = -math.expm1(
            log_no_cross(
                previous,
                direction * (ev_before[e] - log_stop),
                variance * (ev_frac[e] - previous_frac),
                False,
            )
        )
        weight[2 * r] = open_ * q
        open_ *= 1.0 - q
        crosses = (direction * (ev_trough_last[e] - log_stop) <= 0.0) or (
            direction * (ev_after[e] - log_stop) <= 0.0
        )
        weight[2 * r + 1] = open_ if crosses else 0.0
        if crosses:
            open_ = 0.0
        previous = direction * (ev_after[e] - log_stop)
        previous_frac = ev_frac[e]
    q = -math.expm1(
        log_no_cross(previous, direction * (x1 - log_stop), variance * (1.0 - previous_frac), False)
    )
    weight[n_parts - 1] = open_ * q
    total = 0.0
    for j in range(n_parts):
        total += weight[j]
    cumulative = 0.0
    pick = 0
    for j in range(n_parts):
        cumulative += weight[j]
        if cumulative >= u * total:
            pick = j
            break
    if pick % 2 == 1 and total > 0.0:
        e = first + pick // 2
        if direction * (ev_trough_last[e] - log_stop) <= 0.0:
            return math.exp(ev_trough_last[e])
        return math.exp(ev_after[e])
    return math.exp(log_stop)


@njit(cache=True, nogil=True, inline="always")
def _ruin_barrier(level, threshold, slope, direction, log_liq):  # pragma: no cover
    """ln price where equity ``level + slope P`` meets the threshold (engine.ruin_log_barrier):
    NaN if none or beyond the liquidation price, direction * inf if ruined at any price."""
    barrier_price = (threshold - level) / slope
    if not barrier_price > 0.0:
        return direction * np.inf if direction < 0.0 else np.nan
    log_barrier = math.log(barrier_price)
    if direction * (log_barrier - log_liq) <= 0.0:
        return np.nan
    return log_barrier


@njit(cache=True, nogil=True)
def _scan(
    log_price,
    price,
    log_liq,
    epoch,
    margin,
    paid,
    variance,
    ev_offset,
    ev_step,
    ev_frac,
    ev_before,
    ev_trough_mark,
    ev_trough_last,
    ev_after,
    u_step,
    u_kind,
    u_time,
    u_fill,
    direction,
    quantity,
    entry,
    stop,
    cross,
    base,
    wallet0,
    threshold,
    taker_fee,
    liquidation_fee,
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
    n = log_price.shape[0]
    steps = epoch.size - 1
    slope = direction * quantity
    log_stop = math.log(stop)
    log_ll = np.zeros(steps)  # per-step log P(no liquidation | open): the closure's
    first_event = np.zeros(steps + 1, np.int64)
    for i in range(n):
        # -- the closure: stop or liquidation, sampled (engine._position_closure)
        log_u = u_step[i]  # the caller passes ln u (numpy's log, as the general code)
        cumulative = 0.0
        liquidated_by = 0.0
        c_previous = 1.0
        close = steps
        share = 0.0
        e = ev_offset[i]
        for s in range(steps):
            first_event[s] = e
            while e < ev_offset[i + 1] and ev_step[e] == s:
                e += 1
            lb = log_liq[i, epoch[s]]
            x0 = log_price[i, s]
            x1 = log_price[i, s + 1]
            if math.isnan(lb) or direction * (log_stop - lb) > 0.0:  # the stop is nearer
                events_part = 0.0  # only a jump or trough can liquidate
                if not math.isnan(lb):
                    for k in range(first_event[s], e):
                        trough = direction * (ev_trough_mark[k] - lb)
                        after = direction * (ev_after[k] - lb)
                        if not (trough > 0.0 and after > 0.0):
                            events_part = -np.inf
                ls = _step_log_survival(
                    log_stop, direction, x0, x1, variance, first_event[s], e, ev_frac,
                    ev_before, ev_trough_last, ev_after,
                )  # fmt: skip
                lc = min(ls, events_part)
                ll = events_part
            else:
                lc = _step_log_survival(
                    lb, direction, x0, x1, variance, first_event[s], e, ev_frac, ev_before,
                    ev_trough_mark, ev_after,
                )  # fmt: skip
                ll = lc
            log_ll[s] = ll
            if lc != 0.0 or ll != 0.0:
                q_close = -math.expm1(lc)
                q_liq = min(-math.expm1(ll), q_close)
                liquidated_by += math.exp(cumulative) * q_liq
                cumulative += lc
                if close == steps and cumulative < log_u:
                    close = s
                    share = q_liq / q_close if q_close > 0.0 else 0.0
            c = min(max(1.0 - liquidated_by, 0.0), 1.0)
            if c != c_previous:
                curve_sum[s + 1] += c - c_previous
                curve_sq[s + 1] += c * c - c_previous * c_previous
                c_previous = c
        first_event[steps] = e
        p_liq[i] = 1.0 - min(max(1.0 - liquidated_by, 0.0), 1.0)
        closed = close < steps
        is_liquidated = closed and u_kind[i] < share
        stopped = closed and not is_liquidated
        liquidated[i] = is_liquidated
        hours[i] = (close + u_time[i]) * step_hours if is_liquidated else np.nan
        fill = np.nan
        if stopped:
            if first_event[close] < first_event[close + 1]:
                fill = _gap_fill(
                    direction, log_stop, log_price[i, close], log_price[i, close + 1], variance,
                    first_event[close], first_event[close + 1], ev_frac, ev_before,
                    ev_trough_last, ev_after, u_fill[i],
                )  # fmt: skip
            else:
                fill = stop
        lowest = np.inf
        if not cross:
            # -- isolated: the position's value floored at 0, the free wallet apart
            realised = 0.0
            if stopped:
                value = margin[i, epoch[close]] + slope * (fill - entry)
                value -= taker_fee * quantity * fill
                realised = max(value, 0.0) if value == value else 0.0
            for g in range(steps + 1):
                if g <= close:
                    value = margin[i, epoch[g]] + slope * (price[i, g] - entry)
                    lowest = min(lowest, base + max(value, 0.0))
                else:
                    lowest = min(lowest, base + realised)
            for s in range(steps):
                for k in range(first_event[s], first_event[s + 1]):
                    if s <= close:
                        value = slope * (math.exp(ev_trough_mark[k]) - entry)
                        lowest = min(lowest, 0.0 + base + max(value + margin[i, epoch[s]], 0.0))
                    else:
                        lowest = min(lowest, 0.0 + base + realised)
            if close >= steps:
                price_end = price[i, steps]
                value = margin[i, epoch[steps]] + slope * (price_end - entry)
                final[i] = base + (value - taker_fee * quantity * price_end)
            else:
                final[i] = base + realised
            minimum[i] = lowest
            # ruin: impossible when the free wallet alone is above the line; otherwise a
            # liquidation (while open) implies it, and after a stop the equity is constant
            if base > threshold:
                p_ruin[i] = 0.0
            elif is_liquidated:
                p_ruin[i] = 1.0
            else:
                total = 0.0
                for s in range(steps):
                    if s <= close:
                        level = base - slope * entry + margin[i, epoch[s]]
                        barrier = _ruin_barrier(
                            level, threshold, slope, direction, log_liq[i, epoch[s]]
                        )
                    elif base + realised - threshold <= 0.0:  # closed at or below the line
                        barrier = direction * np.inf
                    else:
                        barrier = np.nan
                    r = _step_log_survival(
                        barrier, direction, log_price[i, s], log_price[i, s + 1], variance,
                        first_event[s], first_event[s + 1], ev_frac, ev_before, ev_trough_mark,
                        ev_after,
                    )  # fmt: skip
                    if s <= close:  # nested in ruin: condition on "not liquidated here"
                        r = r - log_ll[s]
                        if math.isnan(r) or r > 0.0:
                            r = 0.0
                    total += r
                p_ruin[i] = 0.0 - math.expm1(total)
            continue
        # -- cross: the wallet takes the stop's result; a liquidation leaves MM - fee
        stop_step = close if stopped else steps
        liq_step = close if is_liquidated else steps
        gain = 0.0
        if stopped:
            gain = slope * (fill - entry) - taker_fee * quantity * fill
            if gain != gain:
                gain = 0.0
        at = min(liq_step, steps - 1)
        kept = 0.0
        if at <= stop_step:
            at_price = math.exp(log_liq[i, epoch[at]])
            if not math.isfinite(at_price):
                at_price = price[i, at]
            notional = quantity * at_price
            maintenance = _maintenance(notional, floors, rates, cums, entry_rule, entry_maintenance)
            kept = max(0.0, maintenance - liquidation_fee * notional)
        left = kept
        implies = left <= threshold
        # the wallet during each step and at the horizon
        for g in range(steps + 1):
            if g < steps:
                if g <= stop_step:
                    wallet = margin[i, epoch[g]] + 0.0
                else:
                    wallet = margin[i, epoch[stop_step]] + gain
            else:
                wallet = (
                    margin[i, epoch[steps - 1]] + 0.0
                    if steps - 1 <= stop_step
                    else margin[i, epoch[stop_step]] + gain
                )
                if stop_step >= steps:
                    wallet -= paid[i, epoch[steps]] - paid[i, epoch[steps - 1]]
                else:
                    wallet -= 0.0
            if g > liq_step:
                equity = left
            else:
                equity = wallet + (slope * (price[i, g] - entry) if g <= stop_step else 0.0)
            lowest = min(lowest, equity)
            if g == steps:
                if is_liquidated:
                    final[i] = left
                elif stop_step >= steps:
                    price_end = price[i, steps]
                    value = slope * (price_end - entry)
                    final[i] = wallet + (value - taker_fee * quantity * price_end)
                else:
                    final[i] = wallet + 0.0
        for s in range(steps):
            if s > liq_step:
                continue  # the equity is ``left`` there, counted below
            if s <= stop_step:
                wallet = margin[i, epoch[s]] + 0.0
            else:
                wallet = margin[i, epoch[stop_step]] + gain
            for k in range(first_event[s], first_event[s + 1]):
                equity = 0.0 + wallet
                if s <= stop_step:
                    equity += slope * (math.exp(ev_trough_mark[k]) - entry)
                else:
                    equity += 0.0
                lowest = min(lowest, equity)
        if is_liquidated:
            lowest = min(lowest, left)
        minimum[i] = lowest
        if is_liquidated and implies:
            p_ruin[i] = 1.0
            continue
        total = 0.0
        close_ruin = min(stop_step, liq_step)
        for s in range(steps):
            if s <= liq_step:
                if s <= stop_step:
                    constant = margin[i, epoch[s]] + 0.0
                else:
                    constant = margin[i, epoch[stop_step]] + gain
            else:
                constant = left
            if s <= close_ruin:
                barrier = _ruin_barrier(
                    constant - slope * entry, threshold, slope, direction, log_liq[i, epoch[s]]
                )
            else:
                barrier = direction * np.inf if constant - threshold <= 0.0 else np.nan
            r = _step_log_survival(
                barrier, direction, log_price[i, s], log_price[i, s + 1], variance,
                first_event[s], first_event[s + 1], ev_frac, ev_before, ev_trough_mark, ev_after,
            )  # fmt: skip
            if implies:
                r = r - log_ll[s]
                if math.isnan(r) or r > 0.0:
                    r = 0.0
            total += r
        p_ruin[i] = 0.0 - math.expm1(total)


def single_stop_scan(
    position: StopPosition,
    log_price: FloatArray,
    price: FloatArray,
    log_liquidation_barrier: FloatArray,
    epoch: IntArray,
    margin: FloatArray,
    paid: FloatArray,
    variance: float,
    events: tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray],
    uniforms: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> SingleOutcome:
    """Evaluate one position with a stop-loss on every path of a chunk.

    Parameters
    ----------
    position : StopPosition
    log_price, price : arrays (n, S + 1)
        ln price and price of the position's asset at the grid points.
    log_liquidation_barrier : array (n, E)
        ln liquidation price in each funding epoch (NaN: none).
    epoch : int array (S + 1,)
        The funding epoch of each grid point.
    margin : array (n, E)
        Isolated margin, or in cross the wallet (opening fee and funding paid), per epoch.
    paid : array (n, E)
        Funding paid by each epoch, quote currency (cross: the last step's payment).
    variance : float
        Variance of ln price over one step.
    events : tuple
        ``(offset, step, frac, before, trough_mark, trough_last, after)``: ``offset`` (n + 1,)
        indexes each path's events; the rest are per event, ln prices (absolute).
    uniforms : tuple of arrays (n,)
        ``(step, kind, time, fill)``: the closing step, liquidation or stop, the time in the
        step, and where a stop in a step with events was crossed.

    Returns
    -------
    SingleOutcome
    """
    if not HAVE_NUMBA:  # pragma: no cover - the engine calls this only with numba
        raise RuntimeError("the single-position fast path needs numba")
    n, steps = log_liquidation_barrier.shape[0], epoch.size - 1
    out = SingleOutcome.empty(n, steps)
    offset, step, frac, before, trough_mark, trough_last, after = events
    u_step, u_kind, u_time, u_fill = uniforms
    p = position
    _scan(
        as_f64(log_price),
        as_f64(price),
        as_f64(log_liquidation_barrier),
        as_i64(epoch),
        as_f64(margin),
        as_f64(paid),
        float(variance),
        as_i64(offset),
        as_i64(step),
        as_f64(frac),
        as_f64(before),
        as_f64(trough_mark),
        as_f64(trough_last),
        as_f64(after),
        np.log(u_step),
        as_f64(u_kind),
        as_f64(u_time),
        as_f64(u_fill),
        float(p.direction),
        float(p.quantity),
        float(p.entry),
        float(p.stop),
        bool(p.cross),
        float(p.base),
        float(p.wallet0),
        float(p.threshold),
        float(p.taker_fee),
        float(p.liquidation_fee),
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
