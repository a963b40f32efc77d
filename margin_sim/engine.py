"""The engine: isolated and cross portfolios evaluated on the same paths.

For every path the engine computes the *conditional* probabilities of liquidation and of ruin
given the path's grid values and events (DESIGN.md section 5): between knots the diffusion is a
Brownian bridge, so each step contributes a closed-form crossing probability
(:mod:`margin_sim.bridge`). Liquidation and stop-loss events themselves are then sampled from
the same per-step probabilities (inverse transform on the cumulative survival, one
counter-based uniform per path, :mod:`margin_sim.counter_rng`) so that later cash flows, the
other isolated positions, the final equity and the ruin check follow a consistent trajectory.

Buffers and barriers
--------------------
* One position (isolated, or cross with a single position): the liquidation condition is a
  barrier on the position's own log mark price, ``ln LP``, where ``LP`` comes from
  :meth:`ExchangeRules.isolated_liquidation_price` with the position's margin (isolated margin
  after fees and funding) or the whole wallet (cross). The bridge formula is then exact.
* Several positions in cross: the buffer is the account's margin balance minus its maintenance
  requirement, in money, linearised in the log prices over each step (its variance is
  ``g' C g`` with ``g_a = sum_i (s_i - r_i) Q_i P_a`` and ``C`` the step covariance).
* Ruin: account equity minus ``equity_fraction * balance``, a barrier on the price for a single
  position (exact) and linearised otherwise. Where a liquidation implies ruin (the equity left
  after it is below the threshold) the ruin step probability is taken conditional on the
  sampled "not liquidated in this step": ``1 - r' = (1 - r) / (1 - q)``, which keeps the
  estimator of P(ruin) unbiased because the liquidation event is nested in the ruin event.

Cash flows
----------
Opening taker fee from the wallet (from the isolated margin on hyperliquid); funding at its
interval on the grid point at or after each funding time, on the mark notional, paid from the
isolated margin (isolated) or the wallet (cross); on liquidation an isolated position loses its
whole margin, a cross account keeps ``max(0, MM - liquidation_fee * notional)``; a stop-loss
closes at the first price beyond the stop with the taker fee (the stop price after a diffusive
crossing; the post-jump price or the wick trough when a gap went through it); open positions
are valued at the horizon net of the closing taker fee.

Approximations (stated, and tested where they matter)
-----------------------------------------------------
Isolated positions on different assets (or opposite sides) are treated as crossing
independently within a step given the knots (same asset, or assets with correlation 1 and
the same volatility, and the same side: nested barriers, exact); the cross buffer of several
assets is linear in the log prices within a step; where a stop is nearer than the liquidation
price only a jump or trough can liquidate the position; the time of a sampled liquidation is
uniform within its step.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from margin_sim import _kernels
from margin_sim._allocator import keep_freed_memory
from margin_sim._kernels import Book as KernelBook
from margin_sim._kernels import (
    barrier_log_survival,
    buffer_log_survival,
    closure_scan,
    portfolio_buffer,
    ruin_log_barrier,
    ruin_probability,
)
from margin_sim._multi import CrossBook, cross_scan, isolated_scan
from margin_sim._single import SingleOutcome, SinglePosition, single_position_scan
from margin_sim._single_stop import StopPosition, single_stop_scan
from margin_sim._typing import FloatArray, IntArray
from margin_sim.bridge import (
    EventKnots,
    bridge_log_survival,
    patch_event_steps,
)
from margin_sim.counter_rng import counter_normal, counter_uniform
from margin_sim.errors import ScenarioError
from margin_sim.exchange import ExchangeRules
from margin_sim.market import BLOCK_PATHS, PathChunk, simulate_paths
from margin_sim.metrics import ChunkOutcome, SimulationResult
from margin_sim.scenario import Scenario
from margin_sim.streaming import StreamedOutcomes

__all__ = ["KEEP_PATHS_LIMIT", "SimulationResult", "evaluate_chunk", "simulate"]

#: Largest run whose per-path results :func:`simulate` keeps by default (about 100 bytes per
#: path with two modes, so 200 MB); larger runs stream them into running totals.
KEEP_PATHS_LIMIT = 2_000_000

#: Most paths one worker task evaluates before handing its chunks back, so that neither a
#: worker nor the parent holds more than a few tasks' outcomes whatever the path count.
_TASK_PATHS = 131_072

# counter_rng slots: one independent stream per use
_SLOT_FUNDING = 1
_SLOT_CLOSE = 10  # + 3 * position: close step, kind, time in step
_SLOT_CROSS = 5
_SLOT_FILL = 1000  # + position: which part of the closing step a stop was crossed in


@dataclass(frozen=True)
class _Book:
    """The scenario's positions as arrays (K positions)."""

    asset: IntArray
    sign: FloatArray
    quantity: FloatArray
    entry: FloatArray
    notional: FloatArray
    margin: FloatArray
    stop: FloatArray  # stop price, NaN if none
    auto_add: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> _Book:
        assets = scenario.asset_names
        positions = scenario.account.positions
        entry = np.array([scenario.market.assets[p.asset].price for p in positions])
        sign = np.array([float(p.sign) for p in positions])
        notional = np.array([p.notional for p in positions])
        stop = np.array(
            [np.nan if p.stop_loss is None else 1.0 - p.sign * p.stop_loss for p in positions]
        )
        return cls(
            asset=np.array([assets.index(p.asset) for p in positions], dtype=np.int64),
            sign=sign,
            quantity=notional / entry,
            entry=entry,
            notional=notional,
            margin=np.array([p.margin for p in positions]),
            stop=stop * entry,
            auto_add=np.array([p.auto_add_margin for p in positions]),
            names=tuple(p.asset for p in positions),
        )

    def __len__(self) -> int:
        return int(self.sign.size)


# ------------------------------------------------------------------------ helpers


def _funding_counts(scenario: Scenario) -> IntArray:
    """Number of funding payments falling in (t_{k-1}, t_k], for every grid point k."""
    interval = scenario.exchange.funding.interval
    times = np.arange(scenario.n_steps + 1) * scenario.step
    paid_by = np.floor(times / interval + 1e-9).astype(np.int64)
    counts = np.zeros_like(paid_by)
    counts[1:] = np.diff(paid_by)
    return counts


def _log_liquidation_price(
    rules: ExchangeRules, book: _Book, k: int, margin: FloatArray
) -> FloatArray:
    """ln of position k's liquidation price for margins of any shape (NaN where none).

    Called on margins per funding epoch (n, E + 1): the margin, and so the tiered solve, moves
    only when funding is paid; callers expand to steps with the epoch of each grid point.
    """
    price = rules.isolated_liquidation_price(
        book.names[k], book.sign[k], book.quantity[k], book.entry[k], margin
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(price)


def _funding_by_epoch(
    rules: ExchangeRules, book: _Book, chunk: PathChunk, counts: IntArray
) -> tuple[FloatArray, IntArray]:
    """Cumulative funding paid by each position, per funding epoch, and each grid point's epoch.

    Returns
    -------
    paid : array (K, n, E + 1)
        Column j: paid after the first j funding payments, quote currency.
    epoch : int array (S + 1,)
        The column that holds grid point k (its payments are the funding times <= t_k).

    The same in every mode, so it is computed once per chunk.
    """
    cache = chunk.cache
    if "funding" in cache:
        return cache["funding"]
    funding = rules.funding
    n = chunk.path_index.size
    columns = np.flatnonzero(counts)
    if not columns.size or (funding.rate == 0 and funding.std == 0):
        result = (np.zeros((len(book), n, 1)), np.zeros(counts.size, np.int64))
        cache["funding"] = result
        return result
    rate: FloatArray = (counts[columns] * funding.rate)[None, :]
    if funding.model == "random" and funding.std > 0:
        interval_index = np.cumsum(counts)[columns]
        noise = counter_normal(
            chunk.seed, chunk.path_index[:, None], _SLOT_FUNDING, interval_index[None, :]
        )
        rate = rate + np.sqrt(counts[columns]) * funding.std * noise
    epoch = np.searchsorted(columns, np.arange(counts.size), side="right")
    paid = np.zeros((len(book), n, columns.size + 1))
    for k in range(len(book)):
        price = chunk.prices[book.asset[k]][:, columns]
        np.cumsum(book.sign[k] * book.quantity[k] * price * rate, axis=1, out=paid[k][:, 1:])
    cache["funding"] = (paid, epoch)
    return paid, epoch


def _spread_over_grid(paid: FloatArray, epoch: IntArray) -> FloatArray:
    """Per-epoch values (K, n, E + 1) spread over the grid points (K, n, S + 1).

    ``epoch`` is non-decreasing: each column is repeated over its run of grid points (a copy
    per run, much faster than a gather).
    """
    return np.repeat(paid, np.bincount(epoch, minlength=paid.shape[2]), axis=2)


def _log_barrier_survival(
    chunk: PathChunk,
    asset: int,
    log_barrier: FloatArray,
    direction: float,
    price: str,
) -> tuple[FloatArray, FloatArray]:
    """Step log-survivals for a barrier on one asset's log price.

    ``direction`` +1: crossing means falling to the barrier (a long's liquidation); -1: rising.
    ``log_barrier`` has shape (n, S); NaN means no barrier. ``price`` is "mark" or "last" (which
    trough the events show). Returns the log survivals and their part due to event checks.
    """
    x = chunk.log_price[asset]
    variance = float(chunk.step_variance[asset])
    log_survival = barrier_log_survival(x, log_barrier, direction, variance)
    events = chunk.events
    if not events.path.size:
        return log_survival, np.zeros_like(log_survival)
    rows, steps = events.path, events.step
    barrier_at = log_barrier[rows, steps]
    barrier_at = np.where(np.isnan(barrier_at), -direction * np.inf, barrier_at)
    before = events.log_before[asset]
    drop = events.trough_mark[asset] if price == "mark" else events.trough_last[asset]
    knots = EventKnots(
        path=rows,
        step=steps,
        frac=events.frac,
        before=direction * (before - barrier_at),
        trough=direction * (before + drop - barrier_at),
        after=direction * (before + events.jump[asset] - barrier_at),
    )
    start = direction * (x[rows, steps] - barrier_at)
    end = direction * (x[rows, steps + 1] - barrier_at)
    with np.errstate(invalid="ignore"):
        event_part = patch_event_steps(
            log_survival, start, end, np.full(rows.size, variance), knots
        )
    return log_survival, event_part


@dataclass(frozen=True)
class _Closure:
    """Sampled closure of something that can close once (a position, or a cross account)."""

    step: IntArray  # step in which it closed; S if it stayed open
    liquidated: np.ndarray  # closed by liquidation (else by stop, or open)
    hours: FloatArray  # time of the closure, hours; NaN if open
    p_liquidation: FloatArray  # conditional probability of liquidation within the horizon
    curve_sum: FloatArray  # (S+1,) sum over paths of P(not liquidated by grid point k)
    curve_sum_squares: FloatArray
    log_close: FloatArray  # (n, S) per-step log survival of closing (any cause)
    log_liquidation: FloatArray  # (n, S) per-step log P(no liquidation | open at start)
    fill: FloatArray | None = None  # (n,) price a stop-loss filled at (NaN where none)


def _sample_closure(
    chunk: PathChunk,
    scenario: Scenario,
    log_close: FloatArray,
    log_liquidation: FloatArray,
    slot: int,
) -> _Closure:
    """Conditional probabilities and one sampled trajectory of a closable thing."""
    steps = log_close.shape[1]
    u_step = counter_uniform(chunk.seed, chunk.path_index, slot)
    u_kind = counter_uniform(chunk.seed, chunk.path_index, slot + 1)
    u_time = counter_uniform(chunk.seed, chunk.path_index, slot + 2)
    step, share, p_liquidation, curve_sum, curve_sq, _ = closure_scan(
        log_close, log_liquidation, np.log(u_step), False
    )
    closed = step < steps
    step_hours = scenario.step / 3600.0
    return _Closure(
        step=step,
        liquidated=closed & (u_kind < share),
        hours=np.where(closed, (step + u_time) * step_hours, np.nan),
        p_liquidation=p_liquidation,
        curve_sum=curve_sum,
        curve_sum_squares=curve_sq,
        log_close=log_close,
        log_liquidation=log_liquidation,
    )


def _position_closure(
    chunk: PathChunk,
    scenario: Scenario,
    book: _Book,
    k: int,
    log_liq_barrier: FloatArray | None,
    slot: int,
) -> _Closure:
    """Liquidation (if ``log_liq_barrier`` is given) and stop-loss of position ``k``."""
    n, steps = chunk.path_index.size, scenario.n_steps
    direction = book.sign[k]
    asset = book.asset[k]
    has_stop = not math.isnan(book.stop[k])
    if log_liq_barrier is None and not has_stop:  # nothing can close it
        nothing = np.zeros((1, 1))
        return _Closure(
            step=np.full(n, steps),
            liquidated=np.zeros(n, bool),
            hours=np.full(n, np.nan),
            p_liquidation=np.zeros(n),
            curve_sum=np.full(steps + 1, float(n)),
            curve_sum_squares=np.full(steps + 1, float(n)),
            log_close=nothing,
            log_liquidation=nothing,
        )
    zeros = np.zeros((n, steps))
    if log_liq_barrier is not None:
        log_liq, log_liq_events = _log_barrier_survival(
            chunk, asset, log_liq_barrier, direction, "mark"
        )
    else:
        log_liq, log_liq_events = zeros, zeros
    if not has_stop:
        return _sample_closure(chunk, scenario, log_liq, log_liq, slot)
    log_stop_barrier = np.full((n, steps), math.log(book.stop[k]))
    log_stop, _ = _log_barrier_survival(chunk, asset, log_stop_barrier, direction, "last")
    if log_liq_barrier is None:
        stop_nearer = np.ones((n, steps), bool)
    else:
        with np.errstate(invalid="ignore"):
            stop_nearer = direction * (log_stop_barrier - log_liq_barrier) > 0
        stop_nearer |= np.isnan(log_liq_barrier)
    log_close = np.where(stop_nearer, np.minimum(log_stop, log_liq_events), log_liq)
    log_liquidation = np.where(stop_nearer, log_liq_events, log_liq)
    closure = _sample_closure(chunk, scenario, log_close, log_liquidation, slot)
    stopped = (closure.step < steps) & ~closure.liquidated
    fill = np.where(stopped, book.stop[k], np.nan)
    gapped, price = _gap_fills(chunk, book, k, closure.step, stopped)
    fill[gapped] = price
    return dataclasses.replace(closure, fill=fill)


def _gap_fills(
    chunk: PathChunk, book: _Book, k: int, step: IntArray, stopped: np.ndarray
) -> tuple[IntArray, FloatArray]:
    """Stops crossed by a jump or a wick rather than by the diffusion, and their fill prices.

    In the closing step of a stopped path the crossing happened in one of the bridge segments
    between knots (fill at the stop price) or at one of the events (a jump or wick trough
    through the stop: fill at the first price beyond it, the post-jump price or the trough).
    Which one is sampled in proportion to its probability, given that the stop was crossed in
    that step: segment j has P(open before) * q_j, an event that crosses has P(open before).

    Returns
    -------
    rows : int array
        Paths whose stop filled at an event.
    price : float array
        Their fill prices (last price), quote currency.
    """
    events = chunk.events
    if not events.path.size:
        return np.zeros(0, np.int64), np.zeros(0)
    chosen = stopped[events.path] & (events.step == step[events.path])
    if not chosen.any():
        return np.zeros(0, np.int64), np.zeros(0)
    index = np.flatnonzero(chosen)
    rows, steps_ = events.path[index], events.step[index]
    direction, asset = book.sign[k], book.asset[k]
    log_stop = math.log(book.stop[k])
    x = chunk.log_price[asset]
    variance = float(chunk.step_variance[asset])
    before = events.log_before[asset][index]
    trough = before + events.trough_last[asset][index]
    after = before + events.jump[asset][index]
    frac = events.frac[index]
    # rank of each event inside its (path, step): events are sorted by (path, step, frac)
    new_group = np.concatenate([[True], rows[1:] != rows[:-1]])
    group = np.cumsum(new_group) - 1
    rank = np.arange(rows.size) - np.flatnonzero(new_group)[group]
    n_groups, depth = int(group[-1]) + 1, int(rank.max()) + 1
    group_rows = rows[new_group]
    group_steps = steps_[new_group]
    weight = np.zeros((n_groups, 2 * depth + 1))  # segment 0, event 0, segment 1, ..., last segment
    open_ = np.ones(n_groups)
    previous = direction * (x[group_rows, group_steps] - log_stop)
    previous_frac = np.zeros(n_groups)
    for r in range(depth):
        at = rank == r
        g = group[at]
        q = -np.expm1(
            bridge_log_survival(
                previous[g],
                direction * (before[at] - log_stop),
                variance * (frac[at] - previous_frac[g]),
            )
        )
        weight[g, 2 * r] = open_[g] * q
        open_[g] *= 1.0 - q
        crosses = (direction * (trough[at] - log_stop) <= 0) | (
            direction * (after[at] - log_stop) <= 0
        )
        weight[g, 2 * r + 1] = np.where(crosses, open_[g], 0.0)
        open_[g] = np.where(crosses, 0.0, open_[g])
        previous[g] = direction * (after[at] - log_stop)
        previous_frac[g] = frac[at]
    last = -np.expm1(
        bridge_log_survival(
            previous,
            direction * (x[group_rows, group_steps + 1] - log_stop),
            variance * (1.0 - previous_frac),
        )
    )
    weight[:, -1] = open_ * last
    cumulative = np.cumsum(weight, axis=1)
    total = cumulative[:, -1]
    u = counter_uniform(chunk.seed, chunk.path_index[group_rows], _SLOT_FILL + k)
    pick = np.argmax(cumulative >= (u * total)[:, None], axis=1)
    at_event = (pick % 2 == 1) & (total > 0)
    event_rank = pick // 2
    # the event of each group with the picked rank
    lookup = np.full((n_groups, depth), -1)
    lookup[group, rank] = np.arange(rows.size)
    picked = lookup[np.flatnonzero(at_event), event_rank[at_event]]
    # first price beyond the stop: the trough if the wick went through it, else the new level
    through_trough = direction * (trough[picked] - log_stop) <= 0
    price = np.exp(np.where(through_trough, trough[picked], after[picked]))
    return group_rows[at_event], price


def _drivers(chunk: PathChunk) -> IntArray:
    """Group the assets driven by one Brownian motion (correlation 1 and the same volatility):
    their log returns between knots are identical, so their barriers are nested."""
    correlation, variance = chunk.correlation, chunk.step_variance
    driver = np.arange(variance.size)
    for a in range(variance.size):
        for b in range(a):
            if correlation[a, b] >= 1.0 - 1e-12 and math.isclose(variance[a], variance[b]):
                driver[a] = driver[b]
                break
    return driver


def _open_mask(step: IntArray, steps: int) -> np.ndarray:
    """(n, S) True where the thing is open during step s (it closes inside step ``step``)."""
    return np.arange(steps)[None, :] <= step[:, None]


def _step_covariance(chunk: PathChunk) -> FloatArray:
    """Covariance of the log-price diffusion increments over one step, (A, A)."""
    sd = np.sqrt(chunk.step_variance)
    return chunk.correlation * np.outer(sd, sd)


def _kernel_book(
    book: _Book, rules: ExchangeRules | None, maintenance: bool, clamp: bool
) -> KernelBook:
    """The positions in the form of :class:`margin_sim._kernels.Book`."""
    k_count = len(book)
    mode = 0
    floors = np.full((k_count, 1), 0.0)
    rates = np.zeros((k_count, 1))
    cums = np.zeros((k_count, 1))
    entry_maintenance = np.zeros(k_count)
    if maintenance and rules is not None:
        tables = [rules.tiers(name) for name in book.names]
        width = max(t.floors.size for t in tables)
        floors = np.full((k_count, width), np.inf)
        rates = np.zeros((k_count, width))
        cums = np.zeros((k_count, width))
        for k, table in enumerate(tables):
            floors[k, : table.floors.size] = table.floors
            rates[k, : table.rates.size] = table.rates
            cums[k, : table.cums.size] = table.cums
        mode = 1
        if rules.entry_value_maintenance:
            mode = 2
            entry_maintenance = np.array(
                [
                    float(rules.maintenance_margin(name, q, e, e))
                    for name, q, e in zip(book.names, book.quantity, book.entry, strict=True)
                ]
            )
    return KernelBook(
        asset=book.asset,
        sign=book.sign,
        quantity=book.quantity,
        entry=book.entry,
        floors=floors,
        rates=rates,
        cums=cums,
        maintenance=mode,
        entry_maintenance=entry_maintenance,
        clamp=clamp,
    )


def _portfolio_log_survival(
    chunk: PathChunk,
    kernel_book: KernelBook,
    constant: FloatArray,
    margin: FloatArray | None,
    open_until: IntArray,
) -> FloatArray:
    """Step log-survival of a money buffer linearised in the log prices within each step.

    The buffer during step s is ``constant[:, s]`` plus the value of every position k still
    open (``s <= open_until[k]``): ``s Q (P - EP)`` plus its margin ``margin[k][:, s]`` minus
    its maintenance, as ``kernel_book`` says. Its variance over a step is ``g' C g`` with ``g``
    the gradient in the log prices at the end of the step nearer the barrier (the smaller
    buffer): that is where a crossing happens. Events split their steps as everywhere else.
    """
    covariance = _step_covariance(chunk)
    log_survival, variance = buffer_log_survival(
        kernel_book, chunk.prices, constant, margin, open_until, covariance
    )
    events = chunk.events
    if not events.path.size:
        return log_survival
    rows, steps = events.path, events.step
    is_open = steps[None, :] <= open_until[:, rows]
    margin_at = None if margin is None else margin[:, rows, steps]
    constant_at = constant[rows, steps]

    def value(prices: FloatArray) -> FloatArray:
        return portfolio_buffer(kernel_book, prices, constant_at, margin_at, is_open)[0]

    before = np.exp(events.log_before)
    knots = EventKnots(
        path=rows,
        step=steps,
        frac=events.frac,
        before=value(before),
        trough=value(before * np.exp(events.trough_mark)),
        after=value(before * np.exp(events.jump)),
    )
    grid = chunk.prices
    with np.errstate(invalid="ignore"):
        patch_event_steps(
            log_survival,
            value(grid[:, rows, steps]),
            value(grid[:, rows, steps + 1]),
            variance[rows, steps],
            knots,
        )
    return log_survival


def _ruin_log_survival(
    chunk: PathChunk,
    book: _Book,
    constant: FloatArray,
    threshold: float,
    clamp_positions: bool,
    margin: list[FloatArray] | None,
    log_liq_barrier: FloatArray | None,
    close_step: list[IntArray],
) -> FloatArray:
    """Per-step log survival of ruin (equity <= threshold) given the sampled trajectory.

    Equity during step s = ``constant[:, s]`` + sum over open positions of their value, where a
    position's value is ``s Q (P - EP)`` plus, in isolated mode, its margin ``margin[k][:, s]``
    (clamped at 0 when ``clamp_positions``: an isolated position cannot lose more than its
    margin), while it is open (``step <= close_step[k]``). With one position,
    ``log_liq_barrier`` (n, S) is its liquidation barrier: a ruin
    level beyond it cannot be reached while the position is open (it is liquidated first, and
    the sampled liquidation decides the rest).
    """
    if len(book) == 1:
        # one position: equity is linear in its price up to its liquidation -> exact barrier
        log_barrier = ruin_log_barrier(
            constant,
            None if margin is None else margin[0],
            book.sign[0] * book.quantity[0],
            book.entry[0],
            threshold,
            book.sign[0],
            log_liq_barrier,
            close_step[0],
        )
        log_surv, _ = _log_barrier_survival(chunk, book.asset[0], log_barrier, book.sign[0], "mark")
        return log_surv

    kernel_book = _kernel_book(book, None, maintenance=False, clamp=clamp_positions)
    return _portfolio_log_survival(
        chunk,
        kernel_book,
        constant - threshold,
        None if margin is None else np.stack(margin),
        np.stack(close_step),
    )


# ------------------------------------------------------------- one-position fast path

#: Use the compiled one-pass evaluation (:mod:`margin_sim._single`) for a single position
#: without a stop-loss. The general code below gives the same numbers; the tests switch this
#: off to compare the two.
FAST_SINGLE_POSITION = True


def _use_single(book: _Book) -> bool:
    return (
        FAST_SINGLE_POSITION
        and _kernels.HAVE_NUMBA
        and len(book) == 1
        and bool(np.isnan(book.stop).all())
    )


def _position_constants(scenario: Scenario, rules: ExchangeRules, book: _Book) -> dict:
    """What both one-position kernels need of the rules: ruin line, fees, the tier table,
    maintenance on the entry value (bybit) and the step in hours."""
    table = rules.tiers(book.names[0])
    return {
        "threshold": scenario.ruin.equity_fraction * scenario.account.balance,
        "taker_fee": rules.taker_fee,
        "liquidation_fee": rules.liquidation_fee,
        "floors": table.floors,
        "rates": table.rates,
        "cums": table.cums,
        "entry_maintenance": float(
            rules.maintenance_margin(book.names[0], book.quantity[0], book.entry[0], book.entry[0])
        ),
        "entry_rule": rules.entry_value_maintenance,
        "step_hours": scenario.step / 3600.0,
    }


def _use_single_stop(book: _Book) -> bool:
    return (
        FAST_SINGLE_POSITION
        and _kernels.HAVE_NUMBA
        and len(book) == 1
        and not bool(np.isnan(book.stop).any())
    )


def _single_stop_outcome(
    scenario: Scenario,
    rules: ExchangeRules,
    book: _Book,
    chunk: PathChunk,
    margin: FloatArray,
    paid: FloatArray,
    epoch: IntArray,
    *,
    cross: bool,
    base: float,
    wallet0: float,
) -> ChunkOutcome:
    """One position with a stop-loss, in compiled passes (isolated or cross).

    ``margin`` (n, E + 1) is the isolated margin or the cross wallet in each funding epoch,
    ``paid`` (n, E + 1) the funding paid by then, ``epoch`` (S + 1,) each grid point's epoch.
    """
    log_liq = _log_liquidation_price(rules, book, 0, margin)
    asset = int(book.asset[0])
    events = chunk.events
    before = events.log_before[asset]
    position = StopPosition(
        direction=float(book.sign[0]),
        quantity=float(book.quantity[0]),
        entry=float(book.entry[0]),
        stop=float(book.stop[0]),
        cross=cross,
        base=float(base),
        wallet0=float(wallet0),
        **_position_constants(scenario, rules, book),
    )
    out = single_stop_scan(
        position,
        chunk.log_price[asset],
        chunk.prices[asset],
        log_liq,
        epoch,
        margin,
        paid,
        float(chunk.step_variance[asset]),
        (
            _event_offsets(chunk),
            events.step,
            events.frac,
            before,
            before + events.trough_mark[asset],
            before + events.trough_last[asset],
            before + events.jump[asset],
        ),
        (
            counter_uniform(chunk.seed, chunk.path_index, _SLOT_CLOSE),
            counter_uniform(chunk.seed, chunk.path_index, _SLOT_CLOSE + 1),
            counter_uniform(chunk.seed, chunk.path_index, _SLOT_CLOSE + 2),
            counter_uniform(chunk.seed, chunk.path_index, _SLOT_FILL),
        ),
    )
    return _chunk_outcome(chunk, out)


def _single_outcome(
    scenario: Scenario,
    rules: ExchangeRules,
    book: _Book,
    chunk: PathChunk,
    margin: FloatArray,
    epoch: IntArray,
    *,
    base: float,
    clamp: bool,
    keep_maintenance: bool,
) -> ChunkOutcome:
    """One position without a stop, in one compiled pass (isolated or cross).

    ``margin`` (n, E + 1) is the position's margin (isolated margin or cross wallet) in each
    funding epoch, ``epoch`` (S + 1,) the epoch of each grid point.
    """
    log_liq = _log_liquidation_price(rules, book, 0, margin)
    asset = int(book.asset[0])
    events = chunk.events
    before = events.log_before[asset]
    position = SinglePosition(
        direction=float(book.sign[0]),
        quantity=float(book.quantity[0]),
        entry=float(book.entry[0]),
        base=float(base),
        clamp=clamp,
        keep_maintenance=keep_maintenance,
        **_position_constants(scenario, rules, book),
    )
    out = single_position_scan(
        position,
        chunk.log_price[asset],
        chunk.prices[asset],
        log_liq,
        epoch,
        margin,
        float(chunk.step_variance[asset]),
        (
            _event_offsets(chunk),
            events.step,
            events.frac,
            before,
            before + events.trough_mark[asset],
            before + events.jump[asset],
        ),
        counter_uniform(chunk.seed, chunk.path_index, _SLOT_CLOSE),
        counter_uniform(chunk.seed, chunk.path_index, _SLOT_CLOSE + 2),
    )
    return _chunk_outcome(chunk, out)


#: Use the compiled evaluation (:mod:`margin_sim._multi`) for several positions. The general
#: code below gives the same numbers; the tests switch this off to compare the two.
FAST_MULTI_POSITION = True


def _use_multi(book: _Book, *, stops: bool = False) -> bool:
    """Several positions on the compiled path: ``stops`` says whether stop-losses are handled."""
    return (
        FAST_MULTI_POSITION
        and _kernels.HAVE_NUMBA
        and len(book) >= 2
        and (stops or bool(np.isnan(book.stop).all()))
    )


def _event_offsets(chunk: PathChunk) -> IntArray:
    """(n + 1,) where each path's events start in the (path-sorted) event table."""
    return np.searchsorted(chunk.events.path, np.arange(chunk.path_index.size + 1))


def _chunk_outcome(chunk: PathChunk, out: SingleOutcome) -> ChunkOutcome:
    """A compiled scan's results as the chunk's outcome."""
    return ChunkOutcome(
        path_index=chunk.path_index,
        p_liquidation=out.p_liquidation,
        p_ruin=out.p_ruin,
        liquidated=out.liquidated,
        hours_to_liquidation=out.hours_to_liquidation,
        final_equity=out.final_equity,
        min_equity=out.min_equity,
        survival_sum=out.survival_sum,
        survival_sum_squares=out.survival_sum_squares,
    )


def _uniforms(chunk: PathChunk, slots: list[int]) -> FloatArray:
    """(len(slots), n) counter-based uniforms of the chunk's paths."""
    return np.stack([counter_uniform(chunk.seed, chunk.path_index, slot) for slot in slots])


def _multi_isolated(
    scenario: Scenario,
    rules: ExchangeRules,
    book: _Book,
    chunk: PathChunk,
    margin_epoch: FloatArray,
    epoch: IntArray,
    free: float,
) -> ChunkOutcome:
    """Several isolated positions (stops allowed), in compiled code.

    ``margin_epoch`` (K, n, E + 1) is each position's isolated margin per funding epoch.
    """
    k_count = len(book)
    log_liq = np.stack(
        [_log_liquidation_price(rules, book, k, margin_epoch[k]) for k in range(k_count)]
    )
    driver = _drivers(chunk)
    keys = [(int(driver[book.asset[k]]), float(book.sign[k])) for k in range(k_count)]
    ordered = sorted(set(keys))
    events = chunk.events
    before = events.log_before
    out = isolated_scan(
        chunk.log_price,
        chunk.prices,
        chunk.step_variance,
        log_liq,
        margin_epoch,
        epoch,
        (
            _event_offsets(chunk),
            events.step,
            events.frac,
            before,
            before + events.trough_mark,
            before + events.trough_last,
            before + events.jump,
            events.trough_mark,
            events.jump,
        ),
        (
            book.asset,
            book.sign,
            book.quantity,
            book.entry,
            book.stop,
            np.array([ordered.index(key) for key in keys], dtype=np.int64),
        ),
        (
            _uniforms(chunk, [_SLOT_CLOSE + 3 * k for k in range(k_count)]),
            _uniforms(chunk, [_SLOT_CLOSE + 3 * k + 1 for k in range(k_count)]),
            _uniforms(chunk, [_SLOT_CLOSE + 3 * k + 2 for k in range(k_count)]),
            _uniforms(chunk, [_SLOT_FILL + k for k in range(k_count)]),
        ),
        _step_covariance(chunk),
        base=free,
        threshold=scenario.ruin.equity_fraction * scenario.account.balance,
        taker_fee=rules.taker_fee,
        step_hours=scenario.step / 3600.0,
    )
    return _chunk_outcome(chunk, out)


def _multi_cross(
    scenario: Scenario,
    rules: ExchangeRules,
    book: _Book,
    chunk: PathChunk,
    paid_epoch: FloatArray,
    epoch: IntArray,
    wallet0: float,
) -> ChunkOutcome:
    """Several cross positions (stop-losses allowed), path by path in compiled code."""
    kernel_book = _kernel_book(book, rules, maintenance=True, clamp=False)
    events = chunk.events
    before = events.log_before
    k_count = len(book)
    out = cross_scan(
        chunk.prices,
        chunk.log_price,
        _step_covariance(chunk),
        wallet0,
        paid_epoch,
        epoch,
        (
            _event_offsets(chunk),
            events.step,
            events.frac,
            before,
            events.trough_mark,
            events.jump,
            before + events.trough_last,
            before + events.jump,
        ),
        CrossBook(
            asset=book.asset,
            sign=book.sign,
            quantity=book.quantity,
            entry=book.entry,
            floors=kernel_book.floors,
            rates=kernel_book.rates,
            cums=kernel_book.cums,
            entry_rule=kernel_book.maintenance == 2,
            entry_maintenance=kernel_book.entry_maintenance,
            taker_fee=rules.taker_fee,
            liquidation_fee=rules.liquidation_fee,
            threshold=scenario.ruin.equity_fraction * scenario.account.balance,
            step_hours=scenario.step / 3600.0,
        ),
        book.stop,
        (
            counter_uniform(chunk.seed, chunk.path_index, _SLOT_CROSS),
            counter_uniform(chunk.seed, chunk.path_index, _SLOT_CROSS + 2),
            _uniforms(chunk, [_SLOT_CLOSE + 3 * k for k in range(k_count)]),
            _uniforms(chunk, [_SLOT_FILL + k for k in range(k_count)]),
        ),
    )
    return _chunk_outcome(chunk, out)


# ---------------------------------------------------------------------------- modes


def _isolated(
    scenario: Scenario, rules: ExchangeRules, book: _Book, chunk: PathChunk
) -> ChunkOutcome:
    n, steps = chunk.path_index.size, scenario.n_steps
    balance = scenario.account.balance
    threshold = scenario.ruin.equity_fraction * balance
    fees = book.notional * rules.taker_fee
    from_margin = rules.opening_fee_from_isolated_margin
    margin0 = book.margin - (fees if from_margin else 0.0)
    free = balance - book.margin.sum() - (0.0 if from_margin else fees.sum())
    if book.auto_add.any():
        share = max(free, 0.0) / int(book.auto_add.sum())
        margin0 = margin0 + np.where(book.auto_add, share, 0.0)
        free -= share * int(book.auto_add.sum())
    counts = _funding_counts(scenario)
    paid_epoch, epoch = _funding_by_epoch(rules, book, chunk, counts)
    if _use_single(book):
        return _single_outcome(
            scenario,
            rules,
            book,
            chunk,
            margin0[0] - paid_epoch[0],
            epoch,
            base=free,
            clamp=True,
            keep_maintenance=False,
        )
    if _use_single_stop(book):
        return _single_stop_outcome(
            scenario,
            rules,
            book,
            chunk,
            margin0[0] - paid_epoch[0],
            paid_epoch[0],
            epoch,
            cross=False,
            base=free,
            wallet0=0.0,
        )
    if _use_multi(book, stops=True):
        margin_epoch = np.stack([margin0[k] - paid_epoch[k] for k in range(len(book))])
        return _multi_isolated(scenario, rules, book, chunk, margin_epoch, epoch, free)
    paid = _spread_over_grid(paid_epoch, epoch)
    prices = chunk.prices
    margin = [margin0[k] - paid[k] for k in range(len(book))]  # (n, S+1) each
    closures: list[_Closure] = []
    log_liq_barriers: list[FloatArray] = []
    for k in range(len(book)):
        log_liq = _log_liquidation_price(rules, book, k, margin0[k] - paid_epoch[k])
        log_liq = log_liq[:, epoch[:-1]]
        log_liq_barriers.append(log_liq)
        closures.append(_position_closure(chunk, scenario, book, k, log_liq, _SLOT_CLOSE + 3 * k))
    rows = np.arange(n)
    open_mask = [_open_mask(c.step, steps) for c in closures]
    # value realised at closure (0 when liquidated: the whole isolated margin is lost)
    realised = np.zeros((len(book), n))
    for k, closure in enumerate(closures):
        at = np.minimum(closure.step, steps)
        fill = closure.fill if closure.fill is not None else np.full(n, np.nan)
        stop_value = (
            margin[k][rows, at]
            + book.sign[k] * book.quantity[k] * (fill - book.entry[k])
            - rules.taker_fee * book.quantity[k] * fill
        )
        # a stop filled beyond the bankruptcy price loses the margin, no more (isolated)
        realised[k] = np.where(closure.liquidated, 0.0, np.maximum(np.nan_to_num(stop_value), 0.0))
    # equity constant part during each step: free wallet + realised values of closed positions
    constant = np.full((n, steps), free)
    for k in range(len(book)):
        constant = constant + np.where(open_mask[k], 0.0, realised[k][:, None])
    # an isolated position's value never goes below 0, so equity >= the free wallet plus what
    # closed positions realised: when that floor is above the threshold ruin is impossible
    floor = free + np.minimum(realised, 0.0).sum(axis=0)
    if np.all(floor > threshold):
        p_ruin = np.zeros(n)
    else:
        log_ruin = _ruin_log_survival(
            chunk,
            book,
            constant,
            threshold,
            clamp_positions=True,
            margin=margin,
            log_liq_barrier=log_liq_barriers[0],
            close_step=[c.step for c in closures],
        )
        # a liquidation implies ruin when the equity left without that position is <= threshold
        implies = np.zeros((n, steps), bool)
        log_implying = np.zeros((n, steps))
        certain = np.full(n, steps)
        step_values = (
            []
            if len(book) == 1
            else [
                np.where(
                    open_mask[k],
                    np.maximum(
                        margin[k][:, :-1]
                        + book.sign[k]
                        * book.quantity[k]
                        * (prices[book.asset[k]][:, :-1] - book.entry[k]),
                        0.0,
                    ),
                    0.0,
                )
                for k in range(len(book))
            ]
        )
        total_open_value = np.sum(step_values, axis=0) if step_values else 0.0
        for k, closure in enumerate(closures):
            left = constant + total_open_value - step_values[k] if step_values else constant
            implies_k = open_mask[k] & (left <= threshold)
            implies |= implies_k
            log_implying = log_implying + np.where(implies_k, closure.log_liquidation, 0.0)
            at = np.minimum(closure.step, steps - 1)
            ruins = closure.liquidated & implies_k[rows, at]
            certain = np.where(ruins, np.minimum(certain, closure.step), certain)
        p_ruin = ruin_probability(log_ruin, log_implying, implies, certain)
    # final equity and the equity path
    final = np.full(n, free)
    equity_path = np.full((n, steps + 1), free)
    for k, closure in enumerate(closures):
        open_at_end = closure.step >= steps
        price_end = prices[book.asset[k]][:, -1]
        value_end = (
            margin[k][:, -1]
            + book.sign[k] * book.quantity[k] * (price_end - book.entry[k])
            - rules.taker_fee * book.quantity[k] * price_end
        )
        final = final + np.where(open_at_end, value_end, realised[k])
        grid_open = np.arange(steps + 1)[None, :] <= closure.step[:, None]
        grid_value = np.maximum(
            margin[k] + book.sign[k] * book.quantity[k] * (prices[book.asset[k]] - book.entry[k]),
            0.0,
        )
        equity_path = equity_path + np.where(grid_open, grid_value, realised[k][:, None])
    any_liquidated = np.zeros(n, bool)
    hours = np.full(n, np.inf)
    for closure in closures:
        any_liquidated |= closure.liquidated
        hours = np.where(closure.liquidated, np.minimum(hours, closure.hours), hours)
    if len(closures) == 1:
        only = closures[0]
        p_liquidation = only.p_liquidation
        curve_sums = {
            "survival_sum": only.curve_sum,
            "survival_sum_squares": only.curve_sum_squares,
        }
    else:
        # P(no position liquidated in a step): positions on the same asset and side have nested
        # barriers (the nearest one is crossed first); different ones cross independently
        # given the knots (module docstring). A position counts until a sampled stop-loss.
        driver = _drivers(chunk)
        keys = [(int(driver[book.asset[k]]), float(book.sign[k])) for k in range(len(book))]
        log_any = np.zeros((n, steps))
        for key in sorted(set(keys)):
            nearest = np.zeros((n, steps))
            for k, closure in enumerate(closures):
                if keys[k] == key:
                    # a liquidation ends nothing here (it is the event), a sampled stop does
                    stopped_step = np.where(closure.liquidated, steps, closure.step)
                    log_k = np.where(_open_mask(stopped_step, steps), closure.log_liquidation, 0.0)
                    nearest = np.minimum(nearest, log_k)
            log_any += nearest
        never = np.full(n, -np.inf)
        _, _, p_liquidation, curve_sum, curve_sq, _ = closure_scan(log_any, log_any, never, False)
        curve_sums = {"survival_sum": curve_sum, "survival_sum_squares": curve_sq}
    return ChunkOutcome(
        path_index=chunk.path_index,
        p_liquidation=p_liquidation,
        p_ruin=p_ruin,
        liquidated=any_liquidated,
        hours_to_liquidation=np.where(np.isfinite(hours), hours, np.nan),
        final_equity=final,
        min_equity=_min_with_troughs(chunk, equity_path, book, open_mask, margin, free, realised),
        **curve_sums,
    )


def _min_with_troughs(
    chunk: PathChunk,
    equity_path: FloatArray,
    book: _Book,
    open_mask: list[np.ndarray],
    margin: list[FloatArray] | None,
    base: FloatArray | float,
    realised: FloatArray,
) -> FloatArray:
    """Minimum equity over grid points and wick troughs (mark prices)."""
    minimum = equity_path.min(axis=1)
    events = chunk.events
    if not events.path.size:
        return minimum
    trough_price = np.exp(events.log_before + events.trough_mark)
    rows, steps_ = events.path, events.step
    base_value = base[rows, steps_] if isinstance(base, np.ndarray) else base
    equity = np.full(rows.size, 0.0) + base_value
    for k in range(len(book)):
        value = book.sign[k] * book.quantity[k] * (trough_price[book.asset[k]] - book.entry[k])
        if margin is not None:
            value = np.maximum(value + margin[k][rows, steps_], 0.0)
        is_open = open_mask[k][rows, steps_]
        equity = equity + np.where(is_open, value, realised[k][rows])
    np.minimum.at(minimum, rows, equity)
    return minimum


def _cross(scenario: Scenario, rules: ExchangeRules, book: _Book, chunk: PathChunk) -> ChunkOutcome:
    n, steps = chunk.path_index.size, scenario.n_steps
    balance = scenario.account.balance
    threshold = scenario.ruin.equity_fraction * balance
    wallet0 = balance - rules.taker_fee * book.notional.sum()
    counts = _funding_counts(scenario)
    paid_epoch, epoch = _funding_by_epoch(rules, book, chunk, counts)
    if _use_single(book):
        return _single_outcome(
            scenario,
            rules,
            book,
            chunk,
            wallet0 - paid_epoch[0],
            epoch,
            base=0.0,
            clamp=False,
            keep_maintenance=True,
        )
    if _use_single_stop(book):
        return _single_stop_outcome(
            scenario,
            rules,
            book,
            chunk,
            wallet0 - paid_epoch[0],
            paid_epoch[0],
            epoch,
            cross=True,
            base=0.0,
            wallet0=wallet0,
        )
    if _use_multi(book, stops=True):
        return _multi_cross(scenario, rules, book, chunk, paid_epoch, epoch, wallet0)
    paid = _spread_over_grid(paid_epoch, epoch)
    prices = chunk.prices
    rows = np.arange(n)
    single = len(book) == 1
    if single:
        # one position: the account is that position with the whole wallet as its margin, so
        # its stop-loss and its liquidation compete exactly as in isolated mode
        log_liq_barrier = _log_liquidation_price(rules, book, 0, wallet0 - paid_epoch[0])
        log_liq_barrier = log_liq_barrier[:, epoch[:-1]]
        account = _position_closure(chunk, scenario, book, 0, log_liq_barrier, _SLOT_CLOSE)
        stops = [
            dataclasses.replace(account, step=np.where(account.liquidated, steps, account.step))
        ]
    else:
        # stop-losses first: they depend only on each position's own price
        stops = [
            _position_closure(chunk, scenario, book, k, None, _SLOT_CLOSE + 3 * k)
            for k in range(len(book))
        ]
    stop_step = [c.step for c in stops]
    stop_open = [_open_mask(s, steps) for s in stop_step]
    stop_gain = [
        book.sign[k] * book.quantity[k] * (c.fill - book.entry[k])
        - rules.taker_fee * book.quantity[k] * c.fill
        if c.fill is not None
        else np.zeros(n)
        for k, c in enumerate(stops)
    ]
    # wallet during step s: opening fees, funding while open, realised stop results
    wallet = np.full((n, steps), wallet0)
    for k in range(len(book)):
        paid_k = paid[k][:, :-1]
        paid_at_close = paid[k][rows, np.minimum(stop_step[k], steps)]
        wallet = wallet - np.where(stop_open[k], paid_k, paid_at_close[:, None])
        wallet = wallet + np.where(stop_open[k], 0.0, np.nan_to_num(stop_gain[k])[:, None])
    if not single:
        log_liq_barrier = None
        kernel_book = _kernel_book(book, rules, maintenance=True, clamp=False)
        log_liq = _portfolio_log_survival(chunk, kernel_book, wallet, None, np.stack(stop_step))
        account = _sample_closure(chunk, scenario, log_liq, log_liq, _SLOT_CROSS)
    liquidated = account.liquidated
    liq_step = np.where(liquidated, account.step, steps)
    alive = _open_mask(liq_step, steps)  # account open during step s
    open_mask = [stop_open[k] & alive for k in range(len(book))]
    # equity left after a cross liquidation: maintenance minus the clearance fee, floored at 0
    at = np.minimum(liq_step, steps - 1)
    maintenance = np.zeros(n)
    notional = np.zeros(n)
    for k in range(len(book)):
        # one position: at its liquidation price; several: the step's starting prices
        price_at = np.exp(log_liq_barrier[rows, at]) if single else prices[book.asset[k]][rows, at]
        price_at = np.where(np.isfinite(price_at), price_at, prices[book.asset[k]][rows, at])
        is_open = stop_open[k][rows, at]
        maintenance += np.where(
            is_open,
            rules.maintenance_margin(book.names[k], book.quantity[k], price_at, book.entry[k]),
            0.0,
        )
        notional += np.where(is_open, book.quantity[k] * price_at, 0.0)
    left = np.maximum(0.0, maintenance - rules.liquidation_fee * notional)
    # ruin
    constant = np.where(alive, wallet, left[:, None])
    log_ruin = _ruin_log_survival(
        chunk,
        book,
        constant,
        threshold,
        clamp_positions=False,
        margin=None,
        log_liq_barrier=log_liq_barrier,
        close_step=[np.minimum(stop_step[k], liq_step) for k in range(len(book))],
    )
    implies = (left <= threshold)[:, None]
    certain = np.where(liquidated & (left <= threshold), liq_step, steps)
    p_ruin = ruin_probability(log_ruin, account.log_liquidation, implies, certain)
    # final equity and equity path
    wallet_end = np.concatenate([wallet, wallet[:, -1:]], axis=1)
    for k in range(len(book)):  # funding paid at the last grid point by open positions
        wallet_end[:, -1] -= np.where(stop_step[k] >= steps, paid[k][:, -1] - paid[k][:, -2], 0.0)
    equity_path = wallet_end.copy()
    final = wallet_end[:, -1].copy()
    for k in range(len(book)):
        value = book.sign[k] * book.quantity[k] * (prices[book.asset[k]] - book.entry[k])
        grid_open = np.arange(steps + 1)[None, :] <= stop_step[k][:, None]
        equity_path = equity_path + np.where(grid_open, value, 0.0)
        closing_fee = rules.taker_fee * book.quantity[k] * prices[book.asset[k]][:, -1]
        final = final + np.where(stop_step[k] >= steps, value[:, -1] - closing_fee, 0.0)
    grid_alive = np.arange(steps + 1)[None, :] <= liq_step[:, None]
    equity_path = np.where(grid_alive, equity_path, left[:, None])
    final = np.where(liquidated, left, final)
    realised_none = np.zeros((len(book), n))
    minimum = _min_with_troughs(chunk, equity_path, book, open_mask, None, constant, realised_none)
    return ChunkOutcome(
        path_index=chunk.path_index,
        p_liquidation=account.p_liquidation,
        p_ruin=p_ruin,
        liquidated=liquidated,
        hours_to_liquidation=np.where(liquidated, account.hours, np.nan),
        final_equity=final,
        min_equity=np.minimum(minimum, np.where(liquidated, left, np.inf)),
        survival_sum=account.curve_sum,
        survival_sum_squares=account.curve_sum_squares,
    )


_MODES = {"isolated": _isolated, "cross": _cross}


def evaluate_chunk(
    scenario: Scenario, chunk: PathChunk, seed: int, rules: ExchangeRules | None = None
) -> dict[str, ChunkOutcome]:
    """Evaluate every mode of the scenario on one chunk of paths generated with ``seed``.

    Returns
    -------
    dict
        Mode name -> :class:`~margin_sim.metrics.ChunkOutcome`.
    """
    rules = rules or ExchangeRules(scenario.exchange)
    book = _Book.from_scenario(scenario)
    seeded = _SeededChunk(chunk, seed)
    return {mode: _MODES[mode](scenario, rules, book, seeded) for mode in scenario.modes}


@dataclass
class _SeededChunk:
    """A chunk of paths with the run's seed (for the engine's counter-based draws)."""

    chunk: PathChunk
    seed: int
    cache: dict[str, object] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str) -> object:
        return getattr(self.chunk, name)

    @functools.cached_property
    def prices(self) -> FloatArray:
        """Prices at the grid points, (A, n, S+1), computed once for every mode."""
        return np.exp(self.chunk.log_price)


def _chunks(scenario: Scenario, paths: int, seed: int, chunk_paths: int) -> Iterator[_SeededChunk]:
    for chunk in simulate_paths(scenario, paths=paths, seed=seed, chunk_paths=chunk_paths):
        yield _SeededChunk(chunk, seed)


def _evaluate_range(
    scenario: Scenario, first_path: int, paths: int, seed: int, chunk_paths: int
) -> list[dict[str, ChunkOutcome]]:
    """Worker job: paths ``first_path .. first_path + paths - 1``, chunk by chunk."""
    rules = ExchangeRules(scenario.exchange)
    book = _Book.from_scenario(scenario)
    chunks = simulate_paths(
        scenario, paths=paths, seed=seed, chunk_paths=chunk_paths, first_path=first_path
    )
    results = []
    for chunk in chunks:
        seeded = _SeededChunk(chunk, seed)
        results.append(
            {mode: _MODES[mode](scenario, rules, book, seeded) for mode in scenario.modes}
        )
    return results


def _parallel_outcomes(
    scenario: Scenario, paths: int, seed: int, chunk_paths: int, workers: int
) -> Iterator[dict[str, ChunkOutcome]]:
    """Chunks evaluated in worker processes, yielded in path order.

    The chunks are dealt out in contiguous runs (about four per worker, so that a slow one
    does not hold the others up, and at most :data:`_TASK_PATHS` paths each), each run set up
    once in its worker. At most two runs per worker are in flight, so the outcomes waiting in
    this process stay bounded whatever the path count.
    """
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor

    chunk_paths = -(-chunk_paths // BLOCK_PATHS) * BLOCK_PATHS
    n_chunks = -(-paths // chunk_paths)
    per_task = max(1, min(-(-n_chunks // (4 * workers)), _TASK_PATHS // chunk_paths))
    starts = iter(range(0, paths, per_task * chunk_paths))
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=keep_freed_memory
    ) as pool:
        pending: collections.deque[Future[list[dict[str, ChunkOutcome]]]] = collections.deque()

        def submit_next() -> None:
            start = next(starts, None)
            if start is not None:
                length = min(per_task * chunk_paths, paths - start)
                pending.append(
                    pool.submit(_evaluate_range, scenario, start, length, seed, chunk_paths)
                )

        for _ in range(2 * workers):
            submit_next()
        while pending:
            done = pending.popleft().result()
            submit_next()
            done.reverse()  # hand the chunks on in path order, dropping each one
            while done:
                yield done.pop()


def simulate(
    scenario: Scenario,
    *,
    paths: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    chunk_paths: int | None = None,
    workers: int = 1,
    keep_paths: bool | None = None,
) -> SimulationResult:
    """Simulate a scenario in every margin mode on the same paths.

    Parameters
    ----------
    scenario : Scenario
        From :func:`margin_sim.load_scenario`.
    paths, seed : int, optional
        Override the scenario's path count and seed.
    progress : bool
        Show a progress bar on stderr (only for runs of more than one chunk).
    chunk_paths : int, optional
        Paths evaluated at once; sets memory, never the numbers.
    workers : int
        Worker processes evaluating chunks in parallel (1: in this process). The numbers do
        not depend on it.
    keep_paths : bool, optional
        Keep the per-path results (``result.per_path``; about 100 bytes per path with two
        modes, so memory grows with ``paths``) or stream them: fold every chunk into running
        totals and drop it, so that memory does not depend on ``paths``
        (:mod:`margin_sim.streaming`). None (default): keep them for runs of at most
        :data:`KEEP_PATHS_LIMIT` paths, stream larger ones. A streamed run has the same
        ``summary()`` means and standard errors (to rounding), ``difference()`` and
        ``survival()``; its ``var_95``, ``cvar_95`` and ``median_hours_to_liquidation`` come
        from a quantile sketch with relative accuracy 1e-4 (:mod:`margin_sim.sketch`), and
        ``per_path`` raises :class:`~margin_sim.metrics.PathsNotKeptError`.

    Returns
    -------
    SimulationResult
        ``summary()``, ``per_path`` (kept runs), ``difference()``, ``survival(mode)``,
        ``report()``.

    Examples
    --------
    >>> import margin_sim as ms
    >>> s = ms.load_scenario("params/scenarios/baseline.yaml", {"paths": 500, "horizon": "1d"})
    >>> ms.simulate(s, progress=False).summary().index.tolist()
    ['isolated', 'cross']
    >>> ms.simulate(s, progress=False, keep_paths=False).paths_kept
    False
    """
    paths = scenario.paths if paths is None else int(paths)
    seed = scenario.seed if seed is None else int(seed)
    chunk_paths = scenario.chunk_paths if chunk_paths is None else int(chunk_paths)
    if paths < 1:
        raise ScenarioError("paths", f"must be a positive number of paths, got {paths}")
    if workers < 1:
        raise ScenarioError("workers", f"must be at least 1, got {workers}")
    keep = paths <= KEEP_PATHS_LIMIT if keep_paths is None else bool(keep_paths)
    n_chunks = -(-paths // (-(-chunk_paths // BLOCK_PATHS) * BLOCK_PATHS))
    if workers > 1 and n_chunks > 1:
        results: Iterator[dict[str, ChunkOutcome]] = _parallel_outcomes(
            scenario, paths, seed, chunk_paths, min(workers, n_chunks)
        )
    else:
        rules = ExchangeRules(scenario.exchange)
        book = _Book.from_scenario(scenario)
        results = (
            {mode: _MODES[mode](scenario, rules, book, chunk) for mode in scenario.modes}
            for chunk in _chunks(scenario, paths, seed, chunk_paths)
        )
    if progress and n_chunks > 1:
        from tqdm.auto import tqdm

        results = tqdm(results, total=n_chunks, unit="chunk", desc=scenario.name, leave=False)
    if not keep:
        stream = StreamedOutcomes(scenario.modes, scenario.account.balance)
        for by_mode in results:
            stream.add(by_mode)
        why = (
            "keep_paths=False"
            if keep_paths is not None
            else f"keep_paths=None streams runs of more than {KEEP_PATHS_LIMIT:,} paths"
        )
        reason = (
            f"per_path: not kept for this run of {paths:,} paths ({why}); pass keep_paths=True"
            " to simulate() to keep them (~100 bytes per path)"
        )
        return SimulationResult.from_stream(
            scenario, paths=paths, seed=seed, stream=stream, reason=reason
        )
    outcomes: dict[str, list[ChunkOutcome]] = {mode: [] for mode in scenario.modes}
    for by_mode in results:
        for mode, outcome in by_mode.items():
            outcomes[mode].append(outcome)
    return SimulationResult.from_outcomes(scenario, paths=paths, seed=seed, outcomes=outcomes)
