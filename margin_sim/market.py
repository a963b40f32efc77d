"""Price paths: correlated jump-diffusion with flash-crash wicks (DESIGN.md section 5).

Model, per asset ``a`` (log last price, time t in years)::

    ln S_a(t) = ln S_a(0) + mu_a t + vol_a W_a(t) + sum of permanent jumps up to t

* ``W`` is a Brownian motion with correlation matrix ``scenario.market.correlation_matrix()``.
* Permanent jumps are compound Poisson with rate ``jumps.per_year`` and log sizes either
  normal (Merton 1976, "Option pricing when underlying stock returns are discontinuous",
  J. Financial Economics 3) or double exponential (Kou 2002, "A jump-diffusion model for option
  pricing", Management Science 48(8)): up with probability ``p_up`` and mean ``up_mean``
  (``1/eta1``), down with mean ``down_mean`` (``1/eta2``).
* Wicks (flash crashes), per asset and market-wide, also arrive as Poisson processes. A wick of
  depth ``d = min(Exponential(mean=depth_mean), depth_max)`` takes the last price to
  ``(1 - d)`` times its level just before (``trough_last = ln(1 - d)``), the mark price to
  ``(1 - mark_pass_through d)`` (``trough_mark``), and leaves a permanent change
  ``ln(1 - d (1 - recovery))`` once it has recovered. A market-wide wick draws one ``d`` and hits
  every asset at the same instant with depth ``min(beta_a d, depth_max)``.
* ``mu_a`` compensates all of it so that ``E[S_a(T)] = S_a(0) exp(drift_a T)``:
  ``mu = drift - vol^2/2 - lambda_J (E[e^J] - 1) - sum over wick sources of
  lambda_W (E[1 - d (1 - recovery)] - 1)`` (independent compound Poisson parts multiply their
  exponential moments: E[exp(sum of N jumps)] = exp(lambda T (E[e^J] - 1))).
  ``E[e^J] = exp(m + s^2/2)`` (Merton) or ``p eta1/(eta1 - 1) + (1 - p) eta2/(eta2 + 1)``
  (Kou 2002); for the capped exponential depth, ``E[min(beta X, c)] = beta theta
  (1 - exp(-c / (beta theta)))`` for X exponential with mean theta.

Generation: paths come in fixed blocks of :data:`BLOCK_PATHS`; block b draws everything from
``numpy.random.SeedSequence(seed).spawn(n_blocks)[b]`` (which is
``SeedSequence(seed, spawn_key=(b,))`` whatever ``n_blocks``), always for a full block, so a
path's numbers are bit-identical for any chunk size and any total number of paths. That
sequence seeds two streams. (1) numpy's SFC64 gives, in this order, per asset its jumps, per
wick source its wicks (Poisson counts per path, then step, position in the step and size of
every event), then one normal per asset and event for the bridge. (2) The diffusion normals
come from a compiled xoshiro256++ generator through the ziggurat method
(:mod:`margin_sim._normals`), seeded with words 4-7 of the sequence's ``generate_state(8)``,
path by path, step by step, asset by asset; they are used as they are drawn
(:mod:`margin_sim._market_kernels`). Without numba the diffusion normals are numpy's
``standard_normal`` from the SFC64 stream instead, drawn before everything else, so the paths
then differ from those with numba (same law, other numbers).
Event times are uniform over the horizon; an event lies strictly inside a grid step, and the
continuous part just before it is sampled exactly from the (correlated) Brownian bridge between
the step's grid points (see :mod:`margin_sim._market_bridge`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from margin_sim import _market_kernels
from margin_sim._market_bridge import correlation_factor, fill_between_knots
from margin_sim._normals import seed_state
from margin_sim._typing import FloatArray, IntArray
from margin_sim.durations import parse_duration
from margin_sim.errors import ScenarioError
from margin_sim.scenario import KouJumps, MertonJumps, Scenario, WickSpec

__all__ = [
    "BLOCK_PATHS",
    "KIND_JUMP",
    "KIND_MARKET_WICK",
    "KIND_WICK",
    "EventTable",
    "PathChunk",
    "log_drift",
    "sample_paths",
    "simulate_paths",
]

#: Paths per random-number block; a chunk is a whole number of blocks.
BLOCK_PATHS = 500

#: ``EventTable.kind`` codes.
KIND_JUMP, KIND_WICK, KIND_MARKET_WICK = 0, 1, 2

#: Spawn key of the stream :func:`sample_paths` uses between knots (blocks use keys < 2**32).
_FINE_STREAM_KEY = 2**32

#: Largest number of fine points (paths x assets x bars) :func:`sample_paths` builds at once.
_MAX_FINE_POINTS = 20_000_000


@dataclass(frozen=True)
class EventTable:
    """Jumps and wick troughs inside grid steps, sorted by (path, step, frac).

    Attributes
    ----------
    path : ndarray of int64, shape (m,)
        Row of the path in its chunk (0..n-1).
    step : ndarray of int64, shape (m,)
        Grid step s; the event lies strictly inside ``(t_s, t_{s+1})``.
    frac : ndarray, shape (m,)
        Position inside the step, in (0, 1).
    log_before : ndarray, shape (n_assets, m)
        ln last price of every asset just before the event (all earlier jumps included).
    jump : ndarray, shape (n_assets, m)
        Permanent change of ln price at the event (0 for assets not hit); a wick's residual
        ``ln(1 - d (1 - recovery))`` is a jump too.
    trough_last : ndarray, shape (n_assets, m)
        ``ln(1 - d)``: the last-price trough relative to ``log_before`` (0 if no wick).
    trough_mark : ndarray, shape (n_assets, m)
        ``ln(1 - mark_pass_through d)``: the mark-price trough, same reference (0 if no wick).
    kind : ndarray of int64, shape (m,)
        :data:`KIND_JUMP` (0) permanent jump, :data:`KIND_WICK` (1) asset wick,
        :data:`KIND_MARKET_WICK` (2) market-wide wick.
    """

    path: IntArray
    step: IntArray
    frac: FloatArray
    log_before: FloatArray
    jump: FloatArray
    trough_last: FloatArray
    trough_mark: FloatArray
    kind: IntArray


@dataclass(frozen=True)
class PathChunk:
    """A chunk of simulated paths: grid values plus the events between grid points.

    Between consecutive knots of a path (grid points and events) the log price is a Brownian
    bridge with variance ``step_variance * (fraction of the step between the knots)``,
    correlated across assets by ``correlation``; after an event the path restarts at
    ``log_before + jump``.

    Attributes
    ----------
    path_index : ndarray of int64, shape (n,)
        Global path numbers; the run's first path is 0.
    times_years : ndarray, shape (n_steps + 1,)
        Grid times, years.
    assets : tuple of str
        ``scenario.asset_names``.
    log_price : ndarray, shape (n_assets, n, n_steps + 1)
        ln last price at grid points (mark = last there), all earlier jumps included.
    step_variance : ndarray, shape (n_assets,)
        Diffusion variance of ln price over one grid step, ``vol^2 dt`` (log units squared).
    correlation : ndarray, shape (n_assets, n_assets)
        Correlation of the diffusion parts.
    events : EventTable
        Jumps and wick troughs inside steps.
    """

    path_index: IntArray
    times_years: FloatArray
    assets: tuple[str, ...]
    log_price: FloatArray
    step_variance: FloatArray
    correlation: FloatArray
    events: EventTable


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class _WickSource:
    """One Poisson source of wicks: ``depth_scale[a]`` = beta_a (0 for assets not hit)."""

    spec: WickSpec
    depth_scale: FloatArray
    kind: int


@dataclass(frozen=True)
class _Model:
    """Everything the block generator needs, computed once per scenario."""

    n_assets: int
    n_steps: int
    dt_years: float
    horizon_years: float
    log_price0: FloatArray
    log_drift: FloatArray
    vol: FloatArray
    correlation: FloatArray
    step_factor: FloatArray
    jumps: tuple[MertonJumps | KouJumps | None, ...]
    wicks: tuple[_WickSource, ...]


def _mean_exp_jump(jumps: MertonJumps | KouJumps) -> float:
    """E[exp(J)] of one log jump J (Merton 1976; Kou 2002)."""
    if isinstance(jumps, MertonJumps):
        return math.exp(jumps.mean + 0.5 * jumps.std**2)
    eta1 = 1.0 / jumps.up_mean
    eta2 = 1.0 / jumps.down_mean
    return jumps.p_up * eta1 / (eta1 - 1.0) + (1.0 - jumps.p_up) * eta2 / (eta2 + 1.0)


def _mean_depth(spec: WickSpec, beta: float) -> float:
    """E[min(beta d, depth_max)] with d = min(Exponential(mean=depth_mean), depth_max).

    ``min(beta min(X, c), c) = min(beta X, min(beta, 1) c)`` and for ``Y = beta X``
    exponential with mean ``theta``, ``E[min(Y, k)] = theta (1 - exp(-k / theta))``.
    """
    if beta <= 0.0:
        return 0.0
    theta = beta * spec.depth_mean
    cap = min(beta, 1.0) * spec.depth_max
    return theta * -math.expm1(-cap / theta)


def _wick_sources(scenario: Scenario) -> tuple[_WickSource, ...]:
    names = scenario.asset_names
    sources: list[_WickSource] = []
    for a, name in enumerate(names):
        spec = scenario.market.assets[name].wicks
        if spec is not None and spec.per_year > 0:
            scale = np.zeros(len(names))
            scale[a] = 1.0
            sources.append(_WickSource(spec, scale, KIND_WICK))
    market = scenario.market.market_wicks
    if market is not None and market.per_year > 0:
        scale = np.array([market.beta.get(name, 1.0) for name in names], dtype=np.float64)
        sources.append(_WickSource(market, scale, KIND_MARKET_WICK))
    return tuple(sources)


def log_drift(scenario: Scenario) -> FloatArray:
    """Compensated drift ``mu`` of the log price, per asset.

    Parameters
    ----------
    scenario : Scenario

    Returns
    -------
    ndarray, shape (n_assets,)
        ``mu_a`` in log-price units per year, such that ``E[S_a(T)] = S_a(0) exp(drift_a T)``
        with jumps and wicks (see the module docstring for the formula).

    Examples
    --------
    >>> import margin_sim as ms
    >>> s = ms.load_scenario("params/scenarios/baseline.yaml",
    ...                      {"market.assets.BTC.jumps": None, "market.assets.BTC.wicks": None})
    >>> float(log_drift(s)[0])  # drift - vol^2 / 2
    -0.18
    """
    names = scenario.asset_names
    mu = np.empty(len(names))
    for a, name in enumerate(names):
        asset = scenario.market.assets[name]
        value = asset.drift - 0.5 * asset.vol**2
        if asset.jumps is not None and asset.jumps.per_year > 0:
            value -= asset.jumps.per_year * (_mean_exp_jump(asset.jumps) - 1.0)
        mu[a] = value
    for source in _wick_sources(scenario):
        for a in range(len(names)):
            # E[1 - d (1 - recovery)] - 1 = -(1 - recovery) E[d]
            mean_depth = _mean_depth(source.spec, float(source.depth_scale[a]))
            mu[a] += source.spec.per_year * (1.0 - source.spec.recovery) * mean_depth
    return mu


def _model(scenario: Scenario) -> _Model:
    names = scenario.asset_names
    assets = [scenario.market.assets[name] for name in names]
    vol = np.array([asset.vol for asset in assets], dtype=np.float64)
    correlation = scenario.market.correlation_matrix()
    factor = correlation_factor(correlation)
    dt = scenario.dt_years
    return _Model(
        n_assets=len(names),
        n_steps=scenario.n_steps,
        dt_years=dt,
        horizon_years=scenario.horizon_years,
        log_price0=np.log(np.array([asset.price for asset in assets], dtype=np.float64)),
        log_drift=log_drift(scenario),
        vol=vol,
        correlation=correlation,
        step_factor=(vol * math.sqrt(dt))[:, None] * factor,
        jumps=tuple(
            asset.jumps if asset.jumps is not None and asset.jumps.per_year > 0 else None
            for asset in assets
        ),
        wicks=_wick_sources(scenario),
    )


# --------------------------------------------------------------------------- blocks


def _block_generator(seed: int, block: int) -> np.random.Generator:
    """Generator of block ``block``: ``SeedSequence(seed).spawn(n)[block]`` for any n > block."""
    sequence = np.random.SeedSequence(seed, spawn_key=(block,))
    return np.random.Generator(np.random.SFC64(sequence))


def _event_times(
    rng: np.random.Generator, rate_per_year: float, model: _Model, n_paths: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Poisson counts per path, then uniform times: (path, step, frac) of every event."""
    counts = rng.poisson(rate_per_year * model.horizon_years, size=n_paths)
    total = int(counts.sum())
    path = np.repeat(np.arange(n_paths, dtype=np.int64), counts)
    step = rng.integers(0, model.n_steps, size=total, dtype=np.int64)
    frac = rng.random(total)
    # random() lies in [0, 1); an event must lie strictly inside its step
    frac[frac == 0.0] = 0.5
    return path, step, frac


def _jump_sizes(rng: np.random.Generator, jumps: MertonJumps | KouJumps, size: int) -> FloatArray:
    if isinstance(jumps, MertonJumps):
        return rng.normal(jumps.mean, jumps.std, size=size)
    up = rng.random(size) < jumps.p_up
    magnitude = rng.standard_exponential(size)
    return np.where(up, magnitude * jumps.up_mean, -magnitude * jumps.down_mean)


def _block_events(
    rng: np.random.Generator, model: _Model, n_paths: int
) -> tuple[IntArray, IntArray, FloatArray, IntArray, FloatArray, FloatArray, FloatArray]:
    """Draw all events of a block (unsorted): path, step, frac, kind, jump, troughs."""
    n_assets = model.n_assets
    paths, steps, fracs, kinds = [], [], [], []
    jumps, troughs_last, troughs_mark = [], [], []
    for a, spec in enumerate(model.jumps):
        if spec is None:
            continue
        path, step, frac = _event_times(rng, spec.per_year, model, n_paths)
        jump = np.zeros((n_assets, path.size))
        jump[a] = _jump_sizes(rng, spec, path.size)
        paths.append(path)
        steps.append(step)
        fracs.append(frac)
        kinds.append(np.full(path.size, KIND_JUMP, dtype=np.int64))
        jumps.append(jump)
        troughs_last.append(np.zeros_like(jump))
        troughs_mark.append(np.zeros_like(jump))
    for source in model.wicks:
        wick = source.spec
        path, step, frac = _event_times(rng, wick.per_year, model, n_paths)
        depth = np.minimum(rng.exponential(wick.depth_mean, size=path.size), wick.depth_max)
        depth = np.minimum(source.depth_scale[:, None] * depth, wick.depth_max)
        paths.append(path)
        steps.append(step)
        fracs.append(frac)
        kinds.append(np.full(path.size, source.kind, dtype=np.int64))
        jumps.append(np.log1p(-depth * (1.0 - wick.recovery)))
        troughs_last.append(np.log1p(-depth))
        troughs_mark.append(np.log1p(-wick.mark_pass_through * depth))
    if not paths:
        empty = np.zeros((n_assets, 0))
        none = np.zeros(0, dtype=np.int64)
        return none, none, np.zeros(0), none, empty, empty, empty
    return (
        np.concatenate(paths),
        np.concatenate(steps),
        np.concatenate(fracs),
        np.concatenate(kinds),
        np.concatenate(jumps, axis=1),
        np.concatenate(troughs_last, axis=1),
        np.concatenate(troughs_mark, axis=1),
    )


def _generate_block(
    model: _Model,
    seed: int,
    block: int,
    keep: int,
    out: FloatArray | None,
    scratch: FloatArray | None,
) -> tuple[FloatArray, EventTable]:
    """Generate block ``block`` (always all :data:`BLOCK_PATHS` paths) and keep its first rows.

    Parameters
    ----------
    keep : int
        Number of leading paths returned (the last block of a run may be truncated).
    out : ndarray, shape (n_assets, BLOCK_PATHS, n_steps + 1), optional
        Where to write the log prices when ``keep == BLOCK_PATHS`` (a view into the chunk).
    scratch : ndarray, shape (n_assets, BLOCK_PATHS, n_steps), optional
        Work space for the diffusion normals without numba, reused from block to block
        (overwritten); unused with numba.
    """
    rng = _block_generator(seed, block)
    n_assets, n_steps, n = model.n_assets, model.n_steps, BLOCK_PATHS
    compiled = _market_kernels.HAVE_NUMBA
    if not compiled:
        # numpy's normals, drawn first from the block's stream (as before the compiled path)
        shape = (n_assets, n, n_steps)
        diffusion = (
            rng.standard_normal(shape) if scratch is None else rng.standard_normal(out=scratch)
        )

    path, step, frac, kind, jump, trough_last, trough_mark = _block_events(rng, model, n)
    if path.size:
        order = np.lexsort((frac, step, path))
        path, step, frac, kind = path[order], step[order], frac[order], kind[order]
        jump, trough_last, trough_mark = (
            jump[:, order],
            trough_last[:, order],
            trough_mark[:, order],
        )

    # grid values (correlated diffusion + compensated drift + the permanent jumps of each step)
    # and the continuous part at the events, from the bridge between the step's grid points
    bridge_normals = rng.standard_normal((n_assets, path.size))
    drift_per_step = model.log_drift * model.dt_years
    arguments = (model.step_factor, drift_per_step, model.log_price0, path, step, frac, jump)
    if compiled:
        log_price = out if out is not None and keep == n else np.empty((n_assets, n, n_steps + 1))
        state = seed_state(rng.bit_generator.seed_seq)  # type: ignore[arg-type]
        log_before = _market_kernels.block_paths(state, *arguments, bridge_normals, log_price)
    else:
        log_price, log_before = _market_kernels.numpy_block_paths(
            diffusion.transpose(1, 2, 0), *arguments, bridge_normals
        )
        if out is not None and keep == n:
            out[...] = log_price
            log_price = out

    if keep < n:
        log_price = log_price[:, :keep]
        rows = path < keep
        path, step, frac, kind = path[rows], step[rows], frac[rows], kind[rows]
        log_before, jump = log_before[:, rows], jump[:, rows]
        trough_last, trough_mark = trough_last[:, rows], trough_mark[:, rows]
    events = EventTable(path, step, frac, log_before, jump, trough_last, trough_mark, kind)
    return log_price, events


def _concatenate_events(tables: list[EventTable], offsets: list[int], n_assets: int) -> EventTable:
    if not tables:
        empty = np.zeros((n_assets, 0))
        none = np.zeros(0, dtype=np.int64)
        return EventTable(none, none, np.zeros(0), empty, empty, empty, empty, none)
    return EventTable(
        path=np.concatenate([t.path + o for t, o in zip(tables, offsets, strict=True)]),
        step=np.concatenate([t.step for t in tables]),
        frac=np.concatenate([t.frac for t in tables]),
        log_before=np.concatenate([t.log_before for t in tables], axis=1),
        jump=np.concatenate([t.jump for t in tables], axis=1),
        trough_last=np.concatenate([t.trough_last for t in tables], axis=1),
        trough_mark=np.concatenate([t.trough_mark for t in tables], axis=1),
        kind=np.concatenate([t.kind for t in tables]),
    )


def _whole_number(value: object, field: str, smallest: int) -> int:
    """``value`` as an int >= ``smallest``, or a :class:`ScenarioError` naming ``field``."""
    try:
        number = int(value)  # type: ignore[call-overload]
        valid = not isinstance(value, bool) and number == value and number >= smallest
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        raise ScenarioError(field, f"must be a whole number >= {smallest}, got {value!r}")
    return number


def _positive_int(value: object, field: str) -> int:
    return _whole_number(value, field, 1)


def simulate_paths(
    scenario: Scenario,
    *,
    paths: int | None = None,
    seed: int | None = None,
    chunk_paths: int | None = None,
    first_path: int = 0,
) -> Iterator[PathChunk]:
    """Generate price paths chunk by chunk.

    Parameters
    ----------
    scenario : Scenario
        Market model, horizon and grid step.
    paths : int, optional
        Number of paths; default ``scenario.paths``.
    seed : int, optional
        Root seed; default ``scenario.seed``. Same seed, same paths, whatever the chunk size.
    chunk_paths : int, optional
        Paths per chunk, rounded up to a multiple of :data:`BLOCK_PATHS`; default
        ``scenario.chunk_paths``. Sets memory (O(chunk_paths x n_steps)), never the numbers.
    first_path : int
        Global number of the first path, a multiple of :data:`BLOCK_PATHS`: paths
        ``first_path .. first_path + paths - 1`` are generated, identical to the same paths of
        a run from 0 (this is how workers split a run).

    Yields
    ------
    PathChunk
        Consecutive chunks; path ``k`` of the run is row ``k - path_index[0]`` of its chunk.

    Raises
    ------
    ScenarioError
        If ``paths``, ``seed`` or ``chunk_paths`` is not a valid number.

    Examples
    --------
    >>> import margin_sim as ms
    >>> s = ms.load_scenario("params/scenarios/baseline.yaml")
    >>> chunk = next(simulate_paths(s, paths=1000, chunk_paths=1000))
    >>> chunk.log_price.shape
    (1, 1000, 721)
    """
    n_paths = _positive_int(scenario.paths if paths is None else paths, "paths")
    root = _whole_number(scenario.seed if seed is None else seed, "seed", 0)
    per_chunk = _positive_int(
        scenario.chunk_paths if chunk_paths is None else chunk_paths, "chunk_paths"
    )
    blocks_per_chunk = -(-per_chunk // BLOCK_PATHS)
    if isinstance(first_path, bool) or first_path < 0 or first_path % BLOCK_PATHS:
        raise ScenarioError(
            "first_path", f"must be a multiple of {BLOCK_PATHS} >= 0, got {first_path!r}"
        )
    model = _model(scenario)
    return _chunks(
        model,
        scenario.asset_names,
        first_path + n_paths,
        root,
        blocks_per_chunk,
        first_path // BLOCK_PATHS,
    )


def _chunks(
    model: _Model,
    assets: tuple[str, ...],
    n_paths: int,
    seed: int,
    blocks_per_chunk: int,
    start_block: int = 0,
) -> Iterator[PathChunk]:
    n_blocks = -(-n_paths // BLOCK_PATHS)
    times = np.arange(model.n_steps + 1, dtype=np.float64) * model.dt_years
    step_variance = model.vol**2 * model.dt_years
    scratch = (
        None
        if _market_kernels.HAVE_NUMBA
        else np.empty((model.n_assets, BLOCK_PATHS, model.n_steps))
    )
    for first_block in range(start_block, n_blocks, blocks_per_chunk):
        last_block = min(first_block + blocks_per_chunk, n_blocks)
        first_path = first_block * BLOCK_PATHS
        n = min(last_block * BLOCK_PATHS, n_paths) - first_path
        log_price = np.empty((model.n_assets, n, model.n_steps + 1))
        tables: list[EventTable] = []
        offsets: list[int] = []
        for block in range(first_block, last_block):
            row = (block - first_block) * BLOCK_PATHS
            keep = min(BLOCK_PATHS, n - row)
            target = log_price[:, row : row + BLOCK_PATHS] if keep == BLOCK_PATHS else None
            values, table = _generate_block(model, seed, block, keep, target, scratch)
            if target is None:
                log_price[:, row : row + keep] = values
            tables.append(table)
            offsets.append(row)
        yield PathChunk(
            path_index=np.arange(first_path, first_path + n, dtype=np.int64),
            times_years=times,
            assets=assets,
            log_price=log_price,
            step_variance=step_variance,
            correlation=model.correlation,
            events=_concatenate_events(tables, offsets, model.n_assets),
        )


# ---------------------------------------------------------------------- fine bars


def _bar_seconds(resolution: str | float, step_seconds: float) -> tuple[float, int]:
    """Bar length in seconds and bars per grid step; the step must be a whole number of bars."""
    try:
        seconds = parse_duration(resolution) if isinstance(resolution, str) else float(resolution)
    except ValueError as error:
        raise ScenarioError("resolution", str(error)) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ScenarioError("resolution", f"must be a positive duration, got {resolution!r}")
    per_step = step_seconds / seconds
    if per_step < 1 - 1e-9 or abs(per_step - round(per_step)) > 1e-9 * per_step:
        raise ScenarioError(
            "resolution",
            f"the grid step ({step_seconds:g} s) must be a whole number of bars of {seconds:g} s",
        )
    return seconds, round(per_step)


def _wick_overlay(
    chunk: PathChunk, scenario: Scenario, bars_per_step: int, n_fine: int
) -> tuple[FloatArray, FloatArray]:
    """Transient part of the wicks at the fine points, for last and mark (log units).

    From the trough at the event time the price recovers linearly, over the wick's
    ``duration``, to the level after the permanent residual: the transient part is
    ``(trough - jump) (1 - elapsed / duration)`` on ``[t_event, t_event + duration]``.
    """
    events = chunk.events
    n_assets, n_paths = chunk.log_price.shape[:2]
    overlay_last = np.zeros((n_assets, n_paths, n_fine))
    overlay_mark = np.zeros((n_assets, n_paths, n_fine))
    wick_rows = np.flatnonzero(events.kind != KIND_JUMP)
    if wick_rows.size == 0:
        return overlay_last, overlay_mark
    bar = scenario.step / bars_per_step
    market = scenario.market.market_wicks
    asset_duration = np.array(
        [
            spec.duration if (spec := scenario.market.assets[name].wicks) is not None else 0.0
            for name in chunk.assets
        ]
    )
    market_duration = market.duration if market is not None else 0.0
    kind = events.kind[wick_rows]
    duration = np.where(kind == KIND_WICK, asset_duration[:, None], market_duration) / bar
    position = (events.step[wick_rows] + events.frac[wick_rows]) * bars_per_step
    # the recovery is complete at the next grid point at the latest, so the bars agree with
    # the grid values (the engine, too, sees the wick recovered at the next knot)
    to_grid = (events.step[wick_rows] + 1) * bars_per_step - position
    duration = np.minimum(duration, to_grid)
    first = np.ceil(position).astype(np.int64)
    last = np.minimum(np.floor(position + duration.max(axis=0)).astype(np.int64), n_fine - 1)
    counts = np.clip(last - first + 1, 0, None)
    pair = np.repeat(np.arange(wick_rows.size), counts)
    offsets = np.arange(pair.size) - np.repeat(np.cumsum(counts) - counts, counts)
    fine = first[pair] + offsets
    path = events.path[wick_rows][pair]
    for a in range(n_assets):
        remaining = np.clip(
            1.0 - (fine - position[pair]) / np.maximum(duration[a, pair], 1e-300), 0.0, 1.0
        )
        jump = events.jump[a, wick_rows][pair]
        np.add.at(
            overlay_last[a],
            (path, fine),
            (events.trough_last[a, wick_rows][pair] - jump) * remaining,
        )
        np.add.at(
            overlay_mark[a],
            (path, fine),
            (events.trough_mark[a, wick_rows][pair] - jump) * remaining,
        )
    overlay_last[:, :, ::bars_per_step] = 0.0
    overlay_mark[:, :, ::bars_per_step] = 0.0
    return overlay_last, overlay_mark


def sample_paths(
    scenario: Scenario,
    n_paths: int = 5,
    *,
    seed: int | None = None,
    resolution: str | float = "1min",
) -> pd.DataFrame:
    """A few paths as fine OHLC bars of last and mark price, for plots and notebooks.

    Path k is path k of :func:`simulate_paths` with the same seed: the bars open exactly at
    its grid values at grid times. Between knots (grid points and events) the path is filled
    with Brownian bridges from a separate random stream (so the grid values do not depend on
    ``resolution``). A wick shows its trough in the low of the bar it falls in (the mark low
    shows the mark trough) and recovers linearly over the wick's ``duration``, or by the next
    grid point if that comes first (there the bars equal the grid values, as the engine sees
    them).

    Parameters
    ----------
    scenario : Scenario
    n_paths : int
        Number of paths (the first ``n_paths`` of the run).
    seed : int, optional
        Root seed; default ``scenario.seed``.
    resolution : str or float
        Bar length, text (``"1min"``) or seconds; the grid step must be a whole number of bars.

    Returns
    -------
    pandas.DataFrame
        One row per (path, asset, bar) with columns ``path`` (global path number), ``asset``,
        ``hours`` (bar open time, hours since the start), and ``last_open, last_high,
        last_low, last_close, mark_open, mark_high, mark_low, mark_close`` (quote currency).

    Raises
    ------
    ScenarioError
        For a bad ``n_paths``, ``seed`` or ``resolution``, or too many bars to hold at once.

    Examples
    --------
    >>> import margin_sim as ms
    >>> s = ms.load_scenario("params/scenarios/baseline.yaml", {"horizon": "1d"})
    >>> bars = sample_paths(s, n_paths=2)
    >>> bars.shape
    (2880, 11)
    """
    n = _positive_int(n_paths, "n_paths")
    root = _whole_number(scenario.seed if seed is None else seed, "seed", 0)
    bar, per_step = _bar_seconds(resolution, scenario.step)
    n_assets = len(scenario.asset_names)
    n_bars = scenario.n_steps * per_step
    if n * n_assets * (n_bars + 1) > _MAX_FINE_POINTS:
        raise ScenarioError(
            "n_paths",
            f"{n} paths x {n_assets} assets x {n_bars} bars is too many; "
            "use fewer paths or a coarser resolution",
        )
    chunk = next(iter(simulate_paths(scenario, paths=n, seed=root, chunk_paths=n)))
    model = _model(scenario)
    events = chunk.events
    generators = [
        np.random.Generator(
            np.random.SFC64(np.random.SeedSequence(root, spawn_key=(_FINE_STREAM_KEY, int(k))))
        )
        for k in chunk.path_index
    ]
    base = fill_between_knots(
        chunk.log_price,
        per_step,
        events.path,
        events.step,
        events.frac,
        events.log_before,
        events.log_before + events.jump,
        model.step_factor,
        generators,
    )
    overlay_last, overlay_mark = _wick_overlay(chunk, scenario, per_step, n_bars + 1)
    columns: dict[str, object] = {}
    bar_of_event = np.minimum(
        np.floor((events.step + events.frac) * per_step).astype(np.int64), n_bars - 1
    )
    for price, overlay, trough in (
        ("last", overlay_last, events.trough_last),
        ("mark", overlay_mark, events.trough_mark),
    ):
        values = base + overlay
        open_, close = values[:, :, :-1], values[:, :, 1:]
        high, low = np.maximum(open_, close), np.minimum(open_, close)
        # the instants around each event: before, trough, after its permanent jump
        extremes = np.stack(
            [events.log_before, events.log_before + trough, events.log_before + events.jump]
        )
        for a in range(n_assets):
            np.maximum.at(high[a], (events.path, bar_of_event), extremes[:, a].max(axis=0))
            np.minimum.at(low[a], (events.path, bar_of_event), extremes[:, a].min(axis=0))
        for name, array in (("open", open_), ("high", high), ("low", low), ("close", close)):
            columns[f"{price}_{name}"] = np.exp(array.transpose(1, 0, 2).ravel())
    hours = np.arange(n_bars) * (bar / 3600.0)
    frame = pd.DataFrame(
        {
            "path": np.repeat(chunk.path_index, n_assets * n_bars),
            "asset": np.tile(np.repeat(np.array(chunk.assets, dtype=object), n_bars), n),
            "hours": np.tile(hours, n * n_assets),
            **columns,
        }
    )
    return frame
