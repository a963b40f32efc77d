"""Fast path for several positions (compiled, numba), both margin modes, stop-losses included.

The general code of :mod:`margin_sim.engine` evaluates a book of several positions with a
dozen passes over (paths x steps) arrays per mode. This module does the same computation path
by path in compiled code, so it gives the same numbers; ``tests/test_multi.py`` compares it
with the general code path by path (``engine.FAST_MULTI_POSITION = False`` switches it off).
In isolated mode ruin is computed only where it is possible (the free wallet alone not above
the line): floored position values linearised per step, each step conditioned where a
liquidation would ruin, as the general code does. Stops follow the general code too: in
isolated mode each position's closure is its stop or its liquidation, sampled together (as in
:mod:`margin_sim._single_stop`); in cross mode each stop is sampled first on its own price, the
wallet takes its result and the position leaves the account's buffer after its stop step.

Most steps of most paths are far from every barrier: there the bridge formula is cut to
"survives for certain" (:data:`margin_sim._kernels.NEGLIGIBLE_EXPONENT`). A first pass over
each path finds those steps from conservative bounds (vectorisable loops: for the cross
buffer, its value as if every position were in its first maintenance tier, minus a rounding
allowance, against ``sum |slope_k| sd_k``, which bounds the standard deviation because
``|C_ab| <= sd_a sd_b``); a skipped step is one where the exact formula would give exactly
survival 1, so the probabilities and the sampled events are those of the general code. Only
the remaining steps (near a barrier, or holding events) go through the formulas one by one.
Equity minima come from the same sums (equal to the general code's up to rounding, ~1e-15
relative).

* :func:`isolated_scan`: every position liquidates on its own barrier (its log mark price at
  its liquidation price, per funding epoch); "any position liquidated" combines them per step
  as the engine does (nested barriers for positions on one driver and side, independent
  crossings otherwise). Used when ruin is impossible in isolated mode (the free wallet alone is
  above the ruin threshold), the usual case.
* :func:`cross_scan`: the account's buffer (wallet plus unrealised PnL minus maintenance) and
  its equity above the ruin threshold, both linearised in the log prices within each step,
  the liquidation sampled from the same step survivals, ruin conditioned on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from margin_sim._kernels import HAVE_NUMBA, NEGLIGIBLE_EXPONENT, log_no_cross, njit
from margin_sim._single import SingleOutcome, as_f64, as_i64
from margin_sim._single_stop import _gap_fill
from margin_sim._typing import FloatArray, IntArray

__all__ = ["CrossBook", "cross_scan", "isolated_scan"]


@dataclass(frozen=True)
class CrossBook:
    """The positions (K) and the rules the cross buffer needs.

    Attributes
    ----------
    asset : int array (K,)
        Asset index of each position.
    sign, quantity, entry : float arrays (K,)
        +1/-1, contracts, entry price (quote per contract).
    floors, rates, cums : float arrays (K, T)
        Maintenance tiers on the mark notional (floors padded with ``inf``).
    entry_rule : bool
        Maintenance is on the entry value (bybit): ``entry_maintenance``, constant.
    entry_maintenance : float array (K,)
        Quote currency.
    taker_fee, liquidation_fee : float
        Fractions of notional.
    threshold : float
        Ruin threshold on account equity, quote currency.
    step_hours : float
        Length of a grid step, hours.
    """

    asset: IntArray
    sign: FloatArray
    quantity: FloatArray
    entry: FloatArray
    floors: FloatArray
    rates: FloatArray
    cums: FloatArray
    entry_rule: bool
    entry_maintenance: FloatArray
    taker_fee: float
    liquidation_fee: float
    threshold: float
    step_hours: float


# --------------------------------------------------------------------------- isolated


@njit(cache=True, nogil=True, inline="always")
def _barrier_step(
    log_barrier,
    direction,
    x0,
    x1,
    variance,
    first,
    last,
    ev_frac,
    ev_before,
    ev_trough,
    ev_after,
    a,
):  # pragma: no cover
    """One step's log survival of a barrier on asset ``a``'s log price, split at its events.

    The same as :func:`margin_sim._single._step_log_survival` on 2-D event arrays, with the
    common case (no event, far from the barrier) decided first.
    """
    if math.isnan(log_barrier):
        return 0.0
    d0 = direction * (x0 - log_barrier)
    d1 = direction * (x1 - log_barrier)
    if first == last:
        if d0 > 0.0 and d1 > 0.0 and 2.0 * d0 * d1 > NEGLIGIBLE_EXPONENT * variance:
            return 0.0  # what log_no_cross gives there, without its other checks
        return log_no_cross(d0, d1, variance, True)
    total = 0.0
    previous = d0
    previous_frac = 0.0
    for e in range(first, last):
        before = direction * (ev_before[a, e] - log_barrier)
        total += log_no_cross(previous, before, variance * (ev_frac[e] - previous_frac), False)
        trough = direction * (ev_trough[a, e] - log_barrier)
        after = direction * (ev_after[a, e] - log_barrier)
        if not (trough > 0.0 and after > 0.0):
            total = -np.inf
        previous = after
        previous_frac = ev_frac[e]
    total += log_no_cross(previous, d1, variance * (1.0 - previous_frac), False)
    return total


# Reductions over finite prices and equities: with these flags LLVM vectorises them (no NaN
# or infinity can occur in their inputs, so the results are the exact minimum and maximum).
_REDUCTION_FLAGS = {"nnan", "ninf", "nsz"}


@njit(cache=True, nogil=True, fastmath=_REDUCTION_FLAGS)
def _largest(x, lo, hi):  # pragma: no cover
    """max(x[lo:hi]) of finite values."""
    top = x[lo]
    for s in range(lo + 1, hi):
        top = max(top, x[s])
    return top


@njit(cache=True, nogil=True, fastmath=_REDUCTION_FLAGS)
def _smallest(x, lo, hi):  # pragma: no cover
    """min(x[lo:hi]) of finite values (inf for an empty range)."""
    low = np.inf
    for s in range(lo, hi):
        low = min(low, x[s])
    return low


@njit(cache=True, nogil=True)
def _isolated_ruin(
    i,
    price,
    margin,
    epoch,
    covariance,
    ev_offset,
    ev_step,
    first_event,
    ev_frac,
    ev_before,
    ev_trough_rel,
    ev_jump_rel,
    asset,
    signed,
    entry,
    close_step,
    was_liquidated,
    realised,
    log_ll,
    base,
    threshold,
    constant,
    value_sum,
    bound,
    busy,
    start_value,
    g,
    knot,
):  # pragma: no cover
    """P(ruin | path) of isolated positions when the free wallet alone is not above the line
    (engine._isolated with _ruin_log_survival and ruin_probability, path ``i``).

    Equity during step s is the free wallet, what closed positions realised, and each open
    position's value floored at 0, linearised in the log prices over the step (its margin
    that of the step's start). Where a position's liquidation would leave the equity at or
    below the line, the step is conditioned on its sampled survival; a sampled liquidation
    that ruins makes P = 1. ``log_ll`` (K, S) holds each position's per-step log P(no
    liquidation) where it was computed (0 elsewhere: far from its barrier).
    """
    n_positions = asset.size
    steps = epoch.size - 1
    e = ev_offset[i]
    for s in range(steps):
        first_event[s] = e
        while e < ev_offset[i + 1] and ev_step[e] == s:
            e += 1
    first_event[steps] = e
    # the constant part of the equity during each step: free wallet + closed positions
    for s in range(steps):
        c = base
        for k in range(n_positions):
            c = c + (0.0 if s <= close_step[k] else realised[k])
        constant[s] = c
    # a sampled liquidation that ruins: P = 1
    for k in range(n_positions):
        if not was_liquidated[k]:
            continue
        at = min(close_step[k], steps - 1)
        total = 0.0
        own = 0.0
        for j in range(n_positions):
            v = 0.0
            if at <= close_step[j]:
                v = margin[j, i, epoch[at]] + signed[j] * (price[asset[j], i, at] - entry[j])
                v = max(v, 0.0)
            total = total + v if j > 0 else v
            if j == k:
                own = v
        if (constant[at] + total) - own <= threshold:
            return 1.0
    # screening sums per grid point (open positions, floored values) and the steps to do
    sd = np.sqrt(np.diag(covariance)) * (1.0 + 1e-9)
    scale = abs(base) + abs(threshold)
    for s in range(steps + 1):
        value_sum[s] = 0.0
        bound[s] = 0.0
    for k in range(n_positions):
        a = asset[k]
        top = 0.0
        for s in range(min(close_step[k], steps) + 1):
            p = price[a, i, s]
            value_sum[s] += max(margin[k, i, epoch[s]] + signed[k] * (p - entry[k]), 0.0)
            bound[s] += abs(signed[k]) * p * sd[a]
            top = max(top, p)
        scale += abs(realised[k]) + abs(signed[k]) * (top + entry[k])
        scale += abs(margin[k, i, 0]) + abs(margin[k, i, margin.shape[2] - 1])
    tolerance = 1e-12 * scale
    for s in range(steps):
        drift = 0.0  # the end value uses the step's starting margin in the general code
        if epoch[s + 1] != epoch[s]:
            for k in range(n_positions):
                if s < close_step[k]:
                    drift += abs(margin[k, i, epoch[s]] - margin[k, i, epoch[s + 1]])
        b0 = constant[s] - threshold + value_sum[s] - tolerance
        b1 = constant[s] - threshold + value_sum[s + 1] - drift - tolerance
        bq = max(bound[s], bound[s + 1])
        far = (b0 > 0.0) & (b1 > 0.0) & (2.0 * b0 * b1 > NEGLIGIBLE_EXPONENT * bq * bq)
        busy[s] = ~far | (first_event[s] < first_event[s + 1])
    for k in range(n_positions):
        if close_step[k] < steps:
            busy[close_step[k]] = True  # the position leaves the equity inside this step
    # step by step where it matters
    n_assets = covariance.shape[0]
    total_log = 0.0
    for s in range(steps):
        if not busy[s]:
            continue
        b0 = constant[s] - threshold
        b1 = b0
        for a in range(n_assets):
            g[0, a] = 0.0
            g[1, a] = 0.0
        for k in range(n_positions):
            if s > close_step[k]:
                b0 += 0.0
                b1 += 0.0
                continue
            a = asset[k]
            m = margin[k, i, epoch[s]]
            for end in range(2):
                p = price[a, i, s + end]
                v = signed[k] * (p - entry[k]) + m
                slope = signed[k] * p
                if not v > 0.0:
                    v = 0.0
                    slope = 0.0
                if end == 0:
                    b0 += v
                    g[0, a] += slope
                else:
                    b1 += v
                    g[1, a] += slope
        end_at = 1 if b1 < b0 else 0
        var = 0.0
        for a in range(n_assets):
            for b in range(n_assets):
                var += g[end_at, a] * covariance[a, b] * g[end_at, b]
        if first_event[s] == first_event[s + 1]:
            lr = log_no_cross(b0, b1, var, True)
        else:  # split at the events (bridge.patch_event_steps)
            lr = 0.0
            previous = b0
            previous_frac = 0.0
            last = first_event[s + 1] - 1
            for ev in range(first_event[s], first_event[s + 1]):
                for a in range(n_assets):
                    before = math.exp(ev_before[a, ev])
                    knot[0, a] = before
                    knot[1, a] = before * math.exp(ev_trough_rel[a, ev])
                    knot[2, a] = before * math.exp(ev_jump_rel[a, ev])
                at_before = at_trough = at_after = 0.0
                for stage in range(3):
                    b = constant[s] - threshold
                    for k in range(n_positions):
                        if s > close_step[k]:
                            b += 0.0
                            continue
                        v = signed[k] * (knot[stage, asset[k]] - entry[k]) + margin[k, i, epoch[s]]
                        b += v if v > 0.0 else 0.0
                    if stage == 0:
                        at_before = b
                    elif stage == 1:
                        at_trough = b
                    else:
                        at_after = b
                lead = log_no_cross(previous, at_before, var * (ev_frac[ev] - previous_frac), False)
                point = 0.0 if (at_trough > 0.0 and at_after > 0.0) else -np.inf
                trail = 0.0
                if ev == last:
                    trail = log_no_cross(at_after, b1, var * (1.0 - ev_frac[ev]), False)
                lr += lead + point + trail
                previous = at_after
                previous_frac = ev_frac[ev]
        if lr == 0.0:
            continue
        # a liquidation here that would leave the equity at or below the line: condition
        total = 0.0
        for k in range(n_positions):
            v = 0.0
            if s <= close_step[k]:
                v = margin[k, i, epoch[s]] + signed[k] * (price[asset[k], i, s] - entry[k])
                v = max(v, 0.0)
            start_value[k] = v
            total = total + v if k > 0 else v
        implies = False
        log_implying = 0.0
        for k in range(n_positions):
            if s <= close_step[k] and (constant[s] + total) - start_value[k] <= threshold:
                implies = True
                log_implying = log_implying + log_ll[k, s]
        r = lr
        if implies:
            r = lr - log_implying
            if math.isnan(r) or r > 0.0:
                r = 0.0
        total_log += r
    return 0.0 - math.expm1(total_log)


@njit(cache=True, nogil=True)
def _isolated(
    log_price,
    price,
    variance,
    log_liq,
    margin,
    epoch,
    ev_offset,
    ev_step,
    ev_frac,
    ev_before,
    ev_trough,
    ev_after,
    ev_trough_last,
    ev_trough_rel,
    ev_jump_rel,
    trough_price,
    covariance,
    asset,
    sign,
    quantity,
    entry,
    log_stop,
    key,
    n_keys,
    log_u,
    u_kind,
    u_time,
    u_fill,
    base,
    threshold,
    taker_fee,
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
    n_positions = asset.size
    n = log_price.shape[1]
    steps = epoch.size - 1
    nearest = np.zeros(n_keys)
    own = np.zeros(n_positions)  # each position's cumulative log survival of closing
    close_step = np.zeros(n_positions, np.int64)
    was_liquidated = np.zeros(n_positions, np.bool_)  # closed by liquidation (not its stop)
    realised = np.zeros(n_positions)  # what a closed position left in the account
    signed = sign * quantity
    cutoff = NEGLIGIBLE_EXPONENT * variance
    busy = np.zeros(steps, np.bool_)  # steps near a barrier or holding events
    equity = np.zeros(steps + 1)  # account equity at the grid points
    # for ruin, where the free wallet alone is not above the line
    ruin_possible = not base > threshold
    log_ll = np.zeros((n_positions, steps if ruin_possible else 0))
    constant = np.zeros(steps)
    value_sum = np.zeros(steps + 1)
    bound = np.zeros(steps + 1)
    first_event = np.zeros(steps + 1, np.int64)
    start_value = np.zeros(n_positions)
    g = np.zeros((2, covariance.shape[0]))
    knot = np.zeros((3, covariance.shape[0]))
    for i in range(n):
        # -- which steps need the bridge at all (every other step survives for certain)
        for s in range(steps):
            busy[s] = False
        for k in range(n_positions):
            a = asset[k]
            d = sign[k]
            c = cutoff[a]
            # the whole path far from the most adverse barrier of any epoch? (common case)
            adverse = np.nan
            for j in range(log_liq.shape[2]):
                lb = log_liq[k, i, j]
                if not (d * (lb - adverse) <= 0.0):  # further in, or the first one
                    adverse = lb if lb == lb else adverse
            stop = log_stop[k]
            if stop == stop and not (d * (stop - adverse) <= 0.0):
                adverse = stop  # the stop is the nearer barrier (or the only one)
            if adverse != adverse:
                continue  # no barrier in any epoch
            x = log_price[a, i]
            extreme = _smallest(x, 0, steps + 1) if d > 0 else _largest(x, 0, steps + 1)
            gap = d * (extreme - adverse)
            if gap > 0.0 and 2.0 * gap * gap > c:
                continue  # every step's ends are at least ``gap`` away: survives for certain
            for s in range(steps):
                lb = log_liq[k, i, epoch[s]]
                d0 = d * (log_price[a, i, s] - lb)
                d1 = d * (log_price[a, i, s + 1] - lb)
                far = (lb != lb) | ((d0 > 0.0) & (d1 > 0.0) & (2.0 * d0 * d1 > c))
                d0 = d * (log_price[a, i, s] - stop)
                d1 = d * (log_price[a, i, s + 1] - stop)
                far_stop = (stop != stop) | ((d0 > 0.0) & (d1 > 0.0) & (2.0 * d0 * d1 > c))
                busy[s] = busy[s] | ~(far & far_stop)
        for e in range(ev_offset[i], ev_offset[i + 1]):
            busy[ev_step[e]] = True
        # -- liquidations, step by step where it matters
        for k in range(n_positions):
            own[k] = 0.0
            close_step[k] = steps
            was_liquidated[k] = False
            realised[k] = 0.0
            if ruin_possible:
                for s in range(steps):
                    log_ll[k, s] = 0.0
        cumulative = 0.0  # of "no position liquidated"
        liquidated_by = 0.0
        c_previous = 1.0
        combined_done = False
        lowest = np.inf  # over the troughs; the grid points are in ``equity``
        e = ev_offset[i]
        for s in range(steps):
            if not busy[s]:
                continue
            first = e
            while e < ev_offset[i + 1] and ev_step[e] == s:
                e += 1
            for jk in range(n_keys):
                nearest[jk] = 0.0
            for k in range(n_positions):
                closed = close_step[k] < steps
                if closed and (combined_done or not was_liquidated[k]):
                    continue  # nothing about it can change any more
                a = asset[k]
                d = sign[k]
                lb = log_liq[k, i, epoch[s]]
                stop = log_stop[k]
                if stop == stop and (lb != lb or d * (stop - lb) > 0.0):
                    # the stop is nearer: only a jump or trough can liquidate
                    ll = 0.0
                    if lb == lb:
                        for ev in range(first, e):
                            trough = d * (ev_trough[a, ev] - lb)
                            after = d * (ev_after[a, ev] - lb)
                            if not (trough > 0.0 and after > 0.0):
                                ll = -np.inf
                    lc = _barrier_step(
                        stop, d, log_price[a, i, s], log_price[a, i, s + 1], variance[a], first,
                        e, ev_frac, ev_before, ev_trough_last, ev_after, a,
                    )  # fmt: skip
                    lc = min(lc, ll)
                else:
                    ll = _barrier_step(
                        lb, d, log_price[a, i, s], log_price[a, i, s + 1], variance[a], first, e,
                        ev_frac, ev_before, ev_trough, ev_after, a,
                    )  # fmt: skip
                    lc = ll
                if not closed and (lc != 0.0 or ll != 0.0):
                    q_close = -math.expm1(lc)
                    q_liq = min(-math.expm1(ll), q_close)
                    own[k] += lc
                    if own[k] < log_u[k, i]:  # closes in this step: stop or liquidation?
                        close_step[k] = s
                        share = q_liq / q_close if q_close > 0.0 else 0.0
                        was_liquidated[k] = u_kind[k, i] < share
                        if not was_liquidated[k]:
                            fill = math.exp(stop)
                            if first < e:
                                fill = _gap_fill(
                                    d, stop, log_price[a, i, s], log_price[a, i, s + 1],
                                    variance[a], first, e, ev_frac, ev_before[a],
                                    ev_trough_last[a], ev_after[a], u_fill[k, i],
                                )  # fmt: skip
                            value = margin[k, i, epoch[s]] + signed[k] * (fill - entry[k])
                            value -= taker_fee * quantity[k] * fill
                            realised[k] = max(value, 0.0) if value == value else 0.0
                if ruin_possible:
                    log_ll[k, s] = ll
                if ll < nearest[key[k]]:  # counts until a stop closes it
                    nearest[key[k]] = ll
            # P(some position liquidated): nested barriers within a key, independent across
            if not combined_done:
                la = 0.0
                for jk in range(n_keys):
                    la += nearest[jk]
                if la != 0.0:
                    liquidated_by += math.exp(cumulative) * -math.expm1(la)
                    cumulative += la
                    c = min(max(1.0 - liquidated_by, 0.0), 1.0)
                    curve_sum[s + 1] += c - c_previous
                    curve_sq[s + 1] += c * c - c_previous * c_previous
                    c_previous = c
                    combined_done = cumulative == -np.inf
            for ev in range(first, e):  # equity at the troughs
                at_trough = base
                for k in range(n_positions):
                    if s <= close_step[k]:
                        value = signed[k] * (trough_price[asset[k], ev] - entry[k])
                        at_trough += max(value + margin[k, i, epoch[s]], 0.0)
                    else:
                        at_trough += realised[k]
                lowest = min(lowest, at_trough)
        p_liq[i] = 1.0 - min(max(1.0 - liquidated_by, 0.0), 1.0)
        # -- equity at the grid points: a position counts up to its closing step
        for s in range(steps + 1):
            equity[s] = base
        for k in range(n_positions):
            a = asset[k]
            sk = signed[k]
            ek = entry[k]
            for s in range(min(close_step[k], steps) + 1):
                equity[s] += max(margin[k, i, epoch[s]] + sk * (price[a, i, s] - ek), 0.0)
            for s in range(close_step[k] + 1, steps + 1):
                equity[s] += realised[k]
        minimum[i] = min(lowest, _smallest(equity, 0, steps + 1))
        any_liquidated = False
        earliest = np.inf
        total = base
        for k in range(n_positions):
            if close_step[k] < steps:
                if was_liquidated[k]:
                    any_liquidated = True
                    earliest = min(earliest, (close_step[k] + u_time[k, i]) * step_hours)
                total = total + realised[k]
            else:
                price_end = price[asset[k], i, steps]
                value_end = (
                    margin[k, i, epoch[steps]]
                    + signed[k] * (price_end - entry[k])
                    - taker_fee * quantity[k] * price_end
                )
                total = total + value_end
        final[i] = total
        liquidated[i] = any_liquidated
        hours[i] = earliest if any_liquidated else np.nan
        p_ruin[i] = 0.0
        if ruin_possible:
            p_ruin[i] = _isolated_ruin(
                i, price, margin, epoch, covariance, ev_offset, ev_step, first_event, ev_frac,
                ev_before, ev_trough_rel, ev_jump_rel, asset, signed, entry, close_step,
                was_liquidated, realised, log_ll, base, threshold, constant, value_sum, bound,
                busy, start_value, g, knot,
            )  # fmt: skip


def isolated_scan(
    log_price: FloatArray,
    price: FloatArray,
    variance: FloatArray,
    log_liquidation_barrier: FloatArray,
    margin: FloatArray,
    epoch: IntArray,
    events: tuple[IntArray, IntArray, FloatArray, *tuple[FloatArray, ...]],
    positions: tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray, IntArray],
    uniforms: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    covariance: FloatArray,
    *,
    base: float,
    threshold: float,
    taker_fee: float,
    step_hours: float,
) -> SingleOutcome:
    """Isolated positions (stop-losses allowed), path by path.

    Parameters
    ----------
    log_price, price : arrays (A, n, S + 1)
        ln price and price of every asset at the grid points.
    variance : array (A,)
        Variance of each ln price over one step.
    log_liquidation_barrier : array (K, n, E)
        ln liquidation price of each position in each funding epoch (NaN: none).
    margin : array (K, n, E)
        Each position's isolated margin in each epoch, quote currency.
    epoch : int array (S + 1,)
        The funding epoch of each grid point.
    events : tuple
        ``(offset, step, frac, before, trough, trough_last, after, trough_rel, jump_rel)``:
        ``offset`` (n + 1,) indexes each path's events; ``before``, ``trough`` (mark),
        ``trough_last`` and ``after`` are ln prices (A, m); ``trough_rel`` and ``jump_rel`` the
        mark trough and the permanent change relative to ``before``.
    positions : tuple
        ``(asset, sign, quantity, entry, stop, key)``, each (K,); ``stop`` the stop price (NaN:
        none); ``key`` numbers the groups of positions with nested barriers (same driver and
        side) 0, 1, ... in sorted order.
    uniforms : tuple of arrays (K, n)
        ``(step, kind, time, fill)``: each position's closing step, whether that closure was a
        liquidation or its stop, the time in the step, and where a gapped stop filled.
    covariance : array (A, A)
        Covariance of the ln-price diffusion increments over one step (for ruin).
    base : float
        The free wallet, quote currency.
    threshold : float
        Ruin line on account equity, quote currency: ruin is impossible (and not computed)
        when ``base`` is above it.
    taker_fee : float
        Fraction of notional paid to close (at a stop or the horizon).
    step_hours : float

    Returns
    -------
    SingleOutcome
    """
    if not HAVE_NUMBA:  # pragma: no cover - the engine calls this only with numba
        raise RuntimeError("the multi-position fast path needs numba")
    offset, step, frac, before, trough, trough_last, after, trough_rel, jump_rel = events
    asset, sign, quantity, entry, stop, key = positions
    u_step, u_kind, u_time, u_fill = uniforms
    n, steps = log_price.shape[1], epoch.size - 1
    out = SingleOutcome.empty(n, steps)
    with np.errstate(invalid="ignore"):
        log_stop = np.log(np.asarray(stop, dtype=np.float64))
    _isolated(
        as_f64(log_price),
        as_f64(price),
        as_f64(variance),
        as_f64(log_liquidation_barrier),
        as_f64(margin),
        as_i64(epoch),
        as_i64(offset),
        as_i64(step),
        as_f64(frac),
        as_f64(before),
        as_f64(trough),
        as_f64(after),
        as_f64(trough_last),
        as_f64(trough_rel),
        as_f64(jump_rel),
        np.exp(as_f64(trough)),
        as_f64(covariance),
        as_i64(asset),
        as_f64(sign),
        as_f64(quantity),
        as_f64(entry),
        as_f64(log_stop),
        as_i64(key),
        int(key.max()) + 1,
        np.log(u_step),
        as_f64(u_kind),
        as_f64(u_time),
        as_f64(u_fill),
        float(base),
        float(threshold),
        float(taker_fee),
        float(step_hours),
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


# ------------------------------------------------------------------------------ cross


@njit(cache=True, nogil=True, inline="always")
def _maintenance(k, notional, floors, rates, cums, entry_rule, entry_mm):  # pragma: no cover
    """Maintenance requirement and its rate d MM / d notional (0 on the entry rule)."""
    if entry_rule:
        return entry_mm[k], 0.0
    n_tiers = floors.shape[1]
    tier = 0
    while tier + 1 < n_tiers and floors[k, tier + 1] <= notional:
        tier += 1
    rate = rates[k, tier]
    return notional * rate - cums[k, tier], rate


@njit(cache=True, nogil=True, inline="always")
def _quadratic(g, end, covariance):  # pragma: no cover
    n_assets = covariance.shape[0]
    total = 0.0
    for a in range(n_assets):
        for b in range(n_assets):
            total += g[end, a] * covariance[a, b] * g[end, b]
    return total


@njit(cache=True, nogil=True, inline="always")
def _position_knots(
    price,
    i,
    s,
    row,
    asset,
    sign,
    quantity,
    entry,
    signed,
    cap0,
    rate0,
    cum0,
    floors,
    rates,
    cums,
    entry_rule,
    entry_mm,
    value,
    slope,
    gain,
    gain_slope,
):  # pragma: no cover
    """Every position's buffer part, slope, equity part and its slope at grid point ``s``."""
    for k in range(asset.size):
        p = price[asset[k], i, s]
        pnl = signed[k] * (p - entry[k])
        notional = quantity[k] * p
        if entry_rule:
            mm = entry_mm[k]
            rate = 0.0
        elif notional < cap0[k]:  # the first tier, written out (much faster than the loop)
            rate = rate0[k]
            mm = notional * rate - cum0[k]
        else:
            mm, rate = _maintenance(k, notional, floors, rates, cums, entry_rule, entry_mm)
        value[row, k] = pnl - mm
        slope[row, k] = (sign[k] - rate) * quantity[k] * p
        gain[row, k] = pnl
        gain_slope[row, k] = signed[k] * p


@njit(cache=True, nogil=True)
def _cross(
    price,
    log_price,
    covariance,
    wallet0,
    paid,
    epoch,
    ev_offset,
    ev_step,
    ev_frac,
    ev_before,
    ev_trough,
    ev_jump,
    ev_trough_last,
    ev_after,
    asset,
    sign,
    quantity,
    entry,
    log_stop,
    floors,
    rates,
    cums,
    entry_rule,
    entry_mm,
    taker_fee,
    liquidation_fee,
    threshold,
    step_hours,
    log_u,
    u_time,
    log_u_stop,
    u_fill,
    p_liq,
    p_ruin,
    liquidated,
    hours,
    final,
    minimum,
    curve_sum,
    curve_sq,
):  # pragma: no cover
    n_assets = price.shape[0]
    n = price.shape[1]
    n_positions = asset.size
    steps = epoch.size - 1
    # per position at grid point s (row s & 1): buffer part s Q (P - EP) - MM, its slope in
    # ln P, the equity part s Q (P - EP) and its slope
    value = np.zeros((2, n_positions))
    slope = np.zeros((2, n_positions))
    gain = np.zeros((2, n_positions))
    gain_slope = np.zeros((2, n_positions))
    g = np.zeros((2, n_assets))  # buffer gradient by asset at the step's two ends
    h = np.zeros((2, n_assets))  # equity gradient
    knot = np.zeros((3, n_assets))  # prices before, at the trough and after an event
    signed = sign * quantity
    # |slope| * sd of its asset bounds the step's standard deviation: sum_k |slope_k| sd_k >=
    # sqrt(g' C g) since |C_ab| <= sd_a sd_b; (1 + 1e-9) covers rounding
    sd = np.sqrt(np.diag(covariance)) * (1.0 + 1e-9)
    cutoff = NEGLIGIBLE_EXPONENT * np.diag(covariance)
    cap0 = np.full(n_positions, np.inf)  # the first maintenance tier of each position
    if floors.shape[1] > 1:
        cap0[:] = floors[:, 1]
    rate0 = rates[:, 0].copy()
    cum0 = cums[:, 0].copy()
    if entry_rule:
        rate0[:] = 0.0
    # screening sums over the open positions at every grid point, as if every position were in
    # its first tier (or on the entry rule): buffer and equity parts, linear in the prices
    # (alpha_k P_k + fixed_q_k and signed_k P_k + fixed_r_k), and the bounds on their standard
    # deviations over a step, sum beta_k P_k and sum eta_k P_k
    alpha = signed - quantity * rate0
    fixed_q = np.empty(n_positions)
    fixed_r = np.empty(n_positions)
    beta = np.empty(n_positions)
    eta = np.empty(n_positions)
    for k in range(n_positions):
        fixed_r[k] = -signed[k] * entry[k]
        fixed_q[k] = -signed[k] * entry[k] - (entry_mm[k] if entry_rule else -cum0[k])
        beta[k] = abs((sign[k] - rate0[k]) * quantity[k]) * sd[asset[k]]
        eta[k] = abs(signed[k]) * sd[asset[k]]
    buffer_sum = np.zeros(steps + 1)
    equity_sum = np.zeros(steps + 1)
    bound_q = np.zeros(steps + 1)
    bound_r = np.zeros(steps + 1)
    busy = np.zeros(steps, np.bool_)  # steps near a barrier, holding events, or a stop
    wallet = np.zeros(steps)  # the wallet during each step
    first_event = np.zeros(steps + 1, np.int64)
    stop_step = np.zeros(n_positions, np.int64)  # S: no stop filled
    stop_gain = np.zeros(n_positions)  # what a filled stop adds to the wallet
    for i in range(n):
        e = ev_offset[i]
        for s in range(steps):
            first_event[s] = e
            while e < ev_offset[i + 1] and ev_step[e] == s:
                e += 1
        first_event[steps] = e
        # -- the stop-losses first: each depends on its own price only
        for k in range(n_positions):
            stop_step[k] = steps
            stop_gain[k] = 0.0
            stop = log_stop[k]
            if stop != stop:
                continue
            a = asset[k]
            d = sign[k]
            x = log_price[a, i]
            extreme = _smallest(x, 0, steps + 1) if d > 0 else _largest(x, 0, steps + 1)
            gap = d * (extreme - stop)
            quiet = gap > 0.0 and 2.0 * gap * gap > cutoff[a]
            own = 0.0
            for s in range(steps):
                if quiet and first_event[s] == first_event[s + 1]:
                    continue
                ls = _barrier_step(
                    stop, d, x[s], x[s + 1], covariance[a, a], first_event[s],
                    first_event[s + 1], ev_frac, ev_before, ev_trough_last, ev_after, a,
                )  # fmt: skip
                if ls != 0.0:
                    own += ls
                    if own < log_u_stop[k, i]:
                        stop_step[k] = s
                        fill = math.exp(stop)
                        if first_event[s] < first_event[s + 1]:
                            fill = _gap_fill(
                                d, stop, x[s], x[s + 1], covariance[a, a], first_event[s],
                                first_event[s + 1], ev_frac, ev_before[a], ev_trough_last[a],
                                ev_after[a], u_fill[k, i],
                            )  # fmt: skip
                        fee = taker_fee * quantity[k] * fill
                        stop_gain[k] = signed[k] * (fill - entry[k]) - fee
                        break
        # -- the wallet during each step (engine._cross: funding while open, stop results);
        # until the first stop it moves only with the funding epochs
        first_stop = steps
        for k in range(n_positions):
            first_stop = min(first_stop, stop_step[k])
        previous_epoch = -1
        w = wallet0
        for s in range(steps):
            if s <= first_stop:
                if epoch[s] != previous_epoch:
                    previous_epoch = epoch[s]
                    w = wallet0
                    for k in range(n_positions):
                        w = w - paid[k, i, previous_epoch]
                wallet[s] = w
                continue
            w_step = wallet0
            for k in range(n_positions):
                if s <= stop_step[k]:
                    w_step = w_step - paid[k, i, epoch[s]]
                else:
                    w_step = w_step - paid[k, i, epoch[stop_step[k]]]
                    w_step = w_step + stop_gain[k]
            wallet[s] = w_step
        # -- screening sums of this path (vectorised loops over the grid)
        scale = abs(threshold)  # rounding: of the sums' size
        first_tier = True
        for s in range(steps + 1):
            buffer_sum[s] = 0.0
            equity_sum[s] = 0.0
            bound_q[s] = 0.0
            bound_r[s] = 0.0
        for k in range(n_positions):
            a = asset[k]
            _accumulate(
                price[a, i], min(stop_step[k], steps) + 1, alpha[k], fixed_q[k], signed[k],
                fixed_r[k], beta[k], eta[k], buffer_sum, equity_sum, bound_q, bound_r,
            )  # fmt: skip
            top = _largest(price[a, i], 0, steps + 1)
            scale += (abs(alpha[k]) + abs(signed[k])) * top + abs(fixed_q[k]) + abs(fixed_r[k])
            if not entry_rule and quantity[k] * top >= cap0[k]:
                first_tier = False
        largest_wallet = 0.0
        for s in range(steps):
            largest_wallet = max(largest_wallet, abs(wallet[s]))
        tolerance = 1e-12 * (scale + largest_wallet)
        # -- which steps need the bridge at all: near a barrier (by the bounds), or events
        for s in range(steps):
            w = wallet[s]
            base_q = w - tolerance
            base_r = w - threshold - tolerance
            b0 = base_q + buffer_sum[s]
            b1 = base_q + buffer_sum[s + 1]
            bq = max(bound_q[s], bound_q[s + 1])
            r0 = base_r + equity_sum[s]
            r1 = base_r + equity_sum[s + 1]
            br = max(bound_r[s], bound_r[s + 1])
            far_q = (b0 > 0.0) & (b1 > 0.0) & (2.0 * b0 * b1 > NEGLIGIBLE_EXPONENT * bq * bq)
            far_r = (r0 > 0.0) & (r1 > 0.0) & (2.0 * r0 * r1 > NEGLIGIBLE_EXPONENT * br * br)
            busy[s] = ~(far_q & far_r) | (not first_tier)
        for e in range(ev_offset[i], ev_offset[i + 1]):
            busy[ev_step[e]] = True
        for k in range(n_positions):
            if stop_step[k] < steps:
                busy[stop_step[k]] = True  # the position leaves the buffer inside this step
        # -- step by step where it matters (bridge survivals, events, sampling)
        cumulative = 0.0
        liquidated_by = 0.0
        c_previous = 1.0
        liq_step = steps
        ruin_plain = 0.0  # sum of the ruin step log survivals while open
        ruin_nested = 0.0  # the same, each conditioned on no liquidation in its step
        lowest = np.inf  # over the troughs here, the grid points below
        for step in range(steps):
            if not busy[step]:
                continue
            _position_knots(
                price, i, step, 0, asset, sign, quantity, entry, signed, cap0, rate0, cum0,
                floors, rates, cums, entry_rule, entry_mm, value, slope, gain, gain_slope,
            )  # fmt: skip
            _position_knots(
                price, i, step + 1, 1, asset, sign, quantity, entry, signed, cap0, rate0, cum0,
                floors, rates, cums, entry_rule, entry_mm, value, slope, gain, gain_slope,
            )  # fmt: skip
            first = first_event[step]
            last = first_event[step + 1]
            w = wallet[step]
            b0 = w
            b1 = w
            r0 = w - threshold
            r1 = r0
            for a in range(n_assets):
                g[0, a] = 0.0
                g[1, a] = 0.0
                h[0, a] = 0.0
                h[1, a] = 0.0
            for k in range(n_positions):
                if step > stop_step[k]:
                    continue  # stopped out before this step
                a = asset[k]
                b0 += value[0, k]
                b1 += value[1, k]
                r0 += gain[0, k]
                r1 += gain[1, k]
                g[0, a] += slope[0, k]
                g[1, a] += slope[1, k]
                h[0, a] += gain_slope[0, k]
                h[1, a] += gain_slope[1, k]
            ruin_open = liq_step == steps
            # the gradients at the end of the step nearer the barrier, and the variances
            var_q = _quadratic(g, 1 if b1 < b0 else 0, covariance)
            var_r = _quadratic(h, 1 if r1 < r0 else 0, covariance)
            if first == last:
                lq = log_no_cross(b0, b1, var_q, True)
                lr = log_no_cross(r0, r1, var_r, True) if ruin_open else 0.0
            else:
                lq, lr = _event_steps(
                    first, last, step, stop_step, w, threshold, b0, b1, r0, r1, var_q, var_r,
                    ruin_open, ev_frac, ev_before, ev_trough, ev_jump, knot, asset, signed,
                    quantity, entry, floors, rates, cums, entry_rule, entry_mm,
                )  # fmt: skip
                for ev in range(first, last if ruin_open else first):  # equity at troughs
                    equity = 0.0 + w
                    for k in range(n_positions):
                        if step <= stop_step[k]:
                            a = asset[k]
                            trough = math.exp(ev_before[a, ev] + ev_trough[a, ev])
                            equity += signed[k] * (trough - entry[k])
                        else:
                            equity += 0.0
                    lowest = min(lowest, equity)
            if ruin_open and (lr != 0.0 or lq != 0.0):
                ruin_plain += lr
                nested = lr - lq
                if math.isnan(nested) or nested > 0.0:
                    nested = 0.0
                ruin_nested += nested
            if lq != 0.0:
                liquidated_by += math.exp(cumulative) * -math.expm1(lq)
                cumulative += lq
                if liq_step == steps and cumulative < log_u[i]:
                    liq_step = step
                c = min(max(1.0 - liquidated_by, 0.0), 1.0)
                curve_sum[step + 1] += c - c_previous
                curve_sq[step + 1] += c * c - c_previous * c_previous
                c_previous = c
                if cumulative == -np.inf:  # nothing later can change
                    break
        # -- equity at the grid points while open (the wallet of each point's step)
        last_open = liq_step if liq_step < steps else steps - 1
        for s in range(last_open + 1):
            lowest = min(lowest, wallet[s] + equity_sum[s])
        if liq_step == steps:  # the horizon: close-out value and the last equity
            w = wallet[steps - 1]
            for k in range(n_positions):
                if stop_step[k] >= steps:
                    w -= paid[k, i, epoch[steps]] - paid[k, i, epoch[steps - 1]]
                else:
                    w -= 0.0
            equity = w
            total = w
            for k in range(n_positions):
                if stop_step[k] >= steps:
                    p = price[asset[k], i, steps]
                    pnl = signed[k] * (p - entry[k])
                    equity += pnl
                    total = total + (pnl - taker_fee * quantity[k] * p)
                else:
                    equity += 0.0
                    total = total + 0.0
            final[i] = total
            lowest = min(lowest, equity)
        p_liq[i] = 1.0 - min(max(1.0 - liquidated_by, 0.0), 1.0)
        is_liquidated = liq_step < steps
        liquidated[i] = is_liquidated
        hours[i] = (liq_step + u_time[i]) * step_hours if is_liquidated else np.nan
        # what a liquidation (would) leave: MM - clearance fee at the step's starting prices
        at = min(liq_step, steps - 1)
        maintenance = 0.0
        notional = 0.0
        for k in range(n_positions):
            if at <= stop_step[k]:
                p = price[asset[k], i, at]
                mm, _ = _maintenance(k, quantity[k] * p, floors, rates, cums, entry_rule, entry_mm)
                maintenance += mm
                notional += quantity[k] * p
            else:
                maintenance += 0.0
                notional += 0.0
        left = max(0.0, maintenance - liquidation_fee * notional)
        # ruin (engine.ruin_probability): where a liquidation implies ruin, the steps are
        # conditioned on the sampled "not liquidated here", and a sampled one ruins for certain
        implies = left <= threshold
        if is_liquidated and implies:
            p_ruin[i] = 1.0
        else:
            p_ruin[i] = 0.0 - math.expm1(ruin_nested if implies else ruin_plain)
        if is_liquidated:
            final[i] = left
            lowest = min(lowest, left)
        minimum[i] = lowest


@njit(cache=True, nogil=True)
def _accumulate(
    x,
    top,
    alpha,
    fixed_q,
    signed,
    fixed_r,
    beta,
    eta,
    buffer_sum,
    equity_sum,
    bound_q,
    bound_r,
):  # pragma: no cover
    """Add one position's linear parts at prices ``x[:top]`` (while it is open) to the sums."""
    for s in range(top):
        buffer_sum[s] += alpha * x[s] + fixed_q
        equity_sum[s] += signed * x[s] + fixed_r
        bound_q[s] += beta * x[s]
        bound_r[s] += eta * x[s]


@njit(cache=True, nogil=True)
def _event_steps(
    first,
    last,
    step,
    stop_step,
    w,
    threshold,
    b0,
    b1,
    r0,
    r1,
    var_q,
    var_r,
    ruin_open,
    ev_frac,
    ev_before,
    ev_trough,
    ev_jump,
    knot,
    asset,
    signed,
    quantity,
    entry,
    floors,
    rates,
    cums,
    entry_rule,
    entry_mm,
):  # pragma: no cover
    """A step split at its events (bridge.patch_event_steps): log survivals of the account's
    buffer and of its equity above the ruin threshold (positions stopped before ``step`` are
    out)."""
    n_assets = knot.shape[1]
    lq = 0.0
    lr = 0.0
    prev_b = b0
    prev_r = r0
    prev_frac = 0.0
    for ev in range(first, last):
        for a in range(n_assets):
            before = math.exp(ev_before[a, ev])
            knot[0, a] = before
            knot[1, a] = before * math.exp(ev_trough[a, ev])
            knot[2, a] = before * math.exp(ev_jump[a, ev])
        b_before = b_trough = b_after = w
        r_before = r_trough = r_after = w - threshold
        for stage in range(3):
            b = w
            r = w - threshold
            for k in range(asset.size):
                if step > stop_step[k]:
                    b += 0.0
                    r += 0.0
                    continue
                p = knot[stage, asset[k]]
                pnl = signed[k] * (p - entry[k])
                mm, _ = _maintenance(k, quantity[k] * p, floors, rates, cums, entry_rule, entry_mm)
                b += pnl - mm
                r += pnl
            if stage == 0:
                b_before, r_before = b, r
            elif stage == 1:
                b_trough, r_trough = b, r
            else:
                b_after, r_after = b, r
        part = ev_frac[ev] - prev_frac
        lead = log_no_cross(prev_b, b_before, var_q * part, False)
        point = 0.0 if (b_trough > 0.0 and b_after > 0.0) else -np.inf
        trail = 0.0
        if ev == last - 1:
            trail = log_no_cross(b_after, b1, var_q * (1.0 - ev_frac[ev]), False)
        lq += lead + point + trail
        if ruin_open:
            lead = log_no_cross(prev_r, r_before, var_r * part, False)
            point = 0.0 if (r_trough > 0.0 and r_after > 0.0) else -np.inf
            trail = 0.0
            if ev == last - 1:
                trail = log_no_cross(r_after, r1, var_r * (1.0 - ev_frac[ev]), False)
            lr += lead + point + trail
        prev_b = b_after
        prev_r = r_after
        prev_frac = ev_frac[ev]
    return lq, lr


def cross_scan(
    price: FloatArray,
    log_price: FloatArray,
    covariance: FloatArray,
    wallet0: float,
    paid: FloatArray,
    epoch: IntArray,
    events: tuple[
        IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray
    ],
    book: CrossBook,
    stop: FloatArray,
    uniforms: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> SingleOutcome:
    """Several positions in one cross account (stop-losses allowed), path by path.

    Parameters
    ----------
    price, log_price : arrays (A, n, S + 1)
        Prices of every asset at the grid points (quote currency) and their logs.
    covariance : array (A, A)
        Covariance of the ln-price diffusion increments over one step.
    wallet0 : float
        The wallet after the opening fees, quote currency.
    paid : array (K, n, E)
        Funding paid by each position by each epoch, quote currency.
    epoch : int array (S + 1,)
        The funding epoch of each grid point.
    events : tuple
        ``(offset, step, frac, before, trough, jump, trough_last, after)``: ``offset`` (n + 1,)
        indexes each path's events; ``before`` (A, m) the ln prices just before, ``trough``
        the mark troughs and ``jump`` the permanent changes of ln price relative to
        ``before``; ``trough_last`` and ``after`` absolute ln prices (for the stops).
    book : CrossBook
    stop : array (K,)
        Stop price of each position (NaN: none), quote currency.
    uniforms : tuple
        ``(step, time, stop_step, stop_fill)``: arrays (n,) sampling the account's
        liquidation step and the time in it, arrays (K, n) each position's stop step and
        where a gapped stop filled.

    Returns
    -------
    SingleOutcome
    """
    if not HAVE_NUMBA:  # pragma: no cover - the engine calls this only with numba
        raise RuntimeError("the multi-position fast path needs numba")
    offset, step, frac, before, trough, jump, trough_last, after = events
    u_step, u_time, u_stop, u_fill = uniforms
    n, steps = price.shape[1], epoch.size - 1
    out = SingleOutcome.empty(n, steps)
    b = book
    with np.errstate(invalid="ignore"):
        log_stop = np.log(np.asarray(stop, dtype=np.float64))
    _cross(
        as_f64(price),
        as_f64(log_price),
        as_f64(covariance),
        float(wallet0),
        as_f64(paid),
        as_i64(epoch),
        as_i64(offset),
        as_i64(step),
        as_f64(frac),
        as_f64(before),
        as_f64(trough),
        as_f64(jump),
        as_f64(trough_last),
        as_f64(after),
        as_i64(b.asset),
        as_f64(b.sign),
        as_f64(b.quantity),
        as_f64(b.entry),
        as_f64(log_stop),
        as_f64(b.floors),
        as_f64(b.rates),
        as_f64(b.cums),
        bool(b.entry_rule),
        as_f64(b.entry_maintenance),
        float(b.taker_fee),
        float(b.liquidation_fee),
        float(b.threshold),
        float(b.step_hours),
        np.log(u_step),
        as_f64(u_time),
        np.log(u_stop),
        as_f64(u_fill),
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
