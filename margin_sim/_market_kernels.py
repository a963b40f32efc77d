"""Compiled inner loop of the path generator (numba), with its plain-numpy twin.

The grid values of a block of paths are a cumulative sum of increments: correlated diffusion
normals scaled by the step factor, the compensated drift, and the permanent jumps of each step.
At every event the continuous part of the log price is drawn from the Brownian bridge between
the step's grid points (:mod:`margin_sim._market_bridge` gives the law).

:func:`block_paths` draws the diffusion normals one at a time
(:func:`margin_sim._normals.draw_normal`), adds each increment to the running log price at
once, and samples the bridge at a step's events while it is in that step, so nothing of size
(assets x paths x steps) exists besides the output. :func:`numpy_block_paths` computes the same
from given normals with array operations; ``tests/test_normals.py`` checks that both agree.
"""

from __future__ import annotations

import math

import numpy as np

from margin_sim._market_bridge import group_starts, rank_in_group, sample_bridge_points
from margin_sim._normals import HAVE_NUMBA, draw_normal, njit
from margin_sim._typing import FloatArray, IntArray

__all__ = ["HAVE_NUMBA", "block_paths", "numpy_block_paths"]


def numpy_block_paths(
    normals: FloatArray,
    step_factor: FloatArray,
    drift_per_step: FloatArray,
    log_price0: FloatArray,
    event_path: IntArray,
    event_step: IntArray,
    event_frac: FloatArray,
    event_jump: FloatArray,
    bridge_normals: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Grid log prices and the log prices just before the events, from given normals.

    Parameters
    ----------
    normals : ndarray, shape (n_paths, n_steps, n_assets)
        Independent standard normals of the diffusion (dimensionless).
    step_factor : ndarray, shape (n_assets, n_assets)
        F with ``F @ F.T`` the covariance of the diffusion over one step (log units squared).
    drift_per_step : ndarray, shape (n_assets,)
        Compensated drift over one step, ``mu dt`` (log units).
    log_price0 : ndarray, shape (n_assets,)
        ln price at time 0.
    event_path, event_step : ndarray of int64, shape (m,)
        Path row and grid step of every event; events sorted by (path, step, frac).
    event_frac : ndarray, shape (m,)
        Position of each event inside its step, in (0, 1).
    event_jump : ndarray, shape (n_assets, m)
        Permanent change of ln price at each event (log units).
    bridge_normals : ndarray, shape (n_assets, m)
        Independent standard normals for the bridge, one column per event.

    Returns
    -------
    log_price : ndarray, shape (n_assets, n_paths, n_steps + 1)
        ln price at the grid points: ``log_price0`` plus the running sum of
        ``F z_s + drift + (jumps in step s)``.
    log_before : ndarray, shape (n_assets, m)
        ln price just before each event: the bridge between the continuous parts at the
        step's grid points (from the previous event of the step, if any), plus the path's
        earlier jumps.
    """
    n_paths, n_steps, n_assets = normals.shape
    increments = np.einsum("ab,psb->aps", step_factor, normals)
    increments += drift_per_step[:, None, None]
    path, step, jump = event_path, event_step, event_jump
    flat = path * n_steps + step
    for a in range(n_assets):
        np.add.at(increments[a].reshape(-1), flat, jump[a])
    log_price = np.empty((n_assets, n_paths, n_steps + 1))
    log_price[:, :, 0] = log_price0[:, None]
    increments[:, :, 0] += log_price0[:, None]
    np.cumsum(increments, axis=2, out=log_price[:, :, 1:])

    m = path.size
    if m == 0:
        return log_price, np.zeros((n_assets, 0))
    new_path = np.ones(m, dtype=bool)
    new_path[1:] = path[1:] != path[:-1]
    new_group = new_path.copy()
    new_group[1:] |= step[1:] != step[:-1]
    # jumps of the same path before each event (exclusive running sum per path)
    earlier = np.cumsum(jump, axis=1) - jump
    earlier -= earlier[:, group_starts(new_path)]
    start = group_starts(new_group)
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:] - 1, m - 1)
    end = np.repeat(ends, np.diff(np.append(starts, m)))
    left = log_price[:, path, step] - earlier[:, start]
    right = log_price[:, path, step + 1] - (earlier[:, end] + jump[:, end])
    continuous = sample_bridge_points(
        left, right, event_frac, rank_in_group(new_group), step_factor, bridge_normals
    )
    return log_price, continuous + earlier


@njit(cache=True, nogil=True)
def _bridge_step(
    first, end, left, diffusion, jumps_before, step_factor, frac, jump, bridge_normals, out
):  # pragma: no cover
    """Events ``first .. end - 1`` (one path, one step): ln price just before each into ``out``.

    ``left`` and ``left + diffusion`` are the continuous parts at the step's grid points;
    ``jumps_before`` (the path's jumps so far) is advanced past these events.
    """
    n_assets = left.size
    previous_frac = 0.0
    previous = left.copy()
    for k in range(first, end):
        f = frac[k]
        remaining = 1.0 - previous_frac
        weight = (f - previous_frac) / remaining
        scale = math.sqrt(max((f - previous_frac) * (1.0 - f) / remaining, 0.0))
        for a in range(n_assets):
            correlated = 0.0
            for b in range(n_assets):
                correlated += step_factor[a, b] * bridge_normals[b, k]
            right = left[a] + diffusion[a]
            value = previous[a] + weight * (right - previous[a]) + scale * correlated
            previous[a] = value
            out[a, k] = value + jumps_before[a]
            jumps_before[a] += jump[a, k]
        previous_frac = f


@njit(cache=True, nogil=True)
def _one_asset(
    state, step_factor, drift_per_step, log_price0, path, step, frac, jump, bridge, out, before
):  # pragma: no cover
    """:func:`_any_assets` for one asset, with the running level in a register."""
    _, n_paths, n_points = out.shape
    m = path.size
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    scale, drift = step_factor[0, 0], drift_per_step[0]
    left, diffusion, jumps_before = np.empty(1), np.empty(1), np.empty(1)
    e = 0
    for p in range(n_paths):
        level = log_price0[0]
        jumps_before[0] = 0.0
        row = out[0, p]
        row[0] = level
        for s in range(n_points - 1):
            z, s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            increment = scale * z + drift
            if e < m and path[e] == p and step[e] == s:
                first = e
                while e < m and path[e] == p and step[e] == s:
                    e += 1
                left[0], diffusion[0] = level - jumps_before[0], increment
                _bridge_step(
                    first, e, left, diffusion, jumps_before, step_factor, frac, jump, bridge, before
                )
                for k in range(first, e):
                    increment += jump[0, k]
            level += increment
            row[s + 1] = level
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _two_assets(
    state, step_factor, drift_per_step, log_price0, path, step, frac, jump, bridge, out, before
):  # pragma: no cover
    """:func:`_any_assets` for two assets, with the running levels in registers."""
    _, n_paths, n_points = out.shape
    m = path.size
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    f00, f01, f10, f11 = step_factor[0, 0], step_factor[0, 1], step_factor[1, 0], step_factor[1, 1]
    drift0, drift1 = drift_per_step[0], drift_per_step[1]
    left, diffusion, jumps_before = np.empty(2), np.empty(2), np.empty(2)
    e = 0
    for p in range(n_paths):
        level0, level1 = log_price0[0], log_price0[1]
        jumps_before[0] = jumps_before[1] = 0.0
        row0, row1 = out[0, p], out[1, p]
        row0[0], row1[0] = level0, level1
        for s in range(n_points - 1):
            z0, s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            z1, s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            increment0 = f00 * z0 + f01 * z1 + drift0
            increment1 = f10 * z0 + f11 * z1 + drift1
            if e < m and path[e] == p and step[e] == s:
                first = e
                while e < m and path[e] == p and step[e] == s:
                    e += 1
                left[0], left[1] = level0 - jumps_before[0], level1 - jumps_before[1]
                diffusion[0], diffusion[1] = increment0, increment1
                _bridge_step(
                    first, e, left, diffusion, jumps_before, step_factor, frac, jump, bridge, before
                )
                for k in range(first, e):
                    increment0 += jump[0, k]
                    increment1 += jump[1, k]
            level0 += increment0
            level1 += increment1
            row0[s + 1] = level0
            row1[s + 1] = level1
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _any_assets(
    state, step_factor, drift_per_step, log_price0, path, step, frac, jump, bridge, out, before
):  # pragma: no cover
    """Grid log prices into ``out`` and ln prices before the events into ``before``.

    Normals are drawn from ``state`` by path, step, asset.
    """
    n_assets, n_paths, n_points = out.shape
    m = path.size
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    normal, level = np.empty(n_assets), np.empty(n_assets)
    left, diffusion, jumps_before = np.empty(n_assets), np.empty(n_assets), np.empty(n_assets)
    e = 0
    for p in range(n_paths):
        for a in range(n_assets):
            level[a] = log_price0[a]
            jumps_before[a] = 0.0
            out[a, p, 0] = log_price0[a]
        for s in range(n_points - 1):
            for b in range(n_assets):
                normal[b], s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            for a in range(n_assets):
                increment = 0.0
                for b in range(n_assets):
                    increment += step_factor[a, b] * normal[b]
                diffusion[a] = increment + drift_per_step[a]
            first = e
            while e < m and path[e] == p and step[e] == s:
                e += 1
            if e > first:
                for a in range(n_assets):
                    left[a] = level[a] - jumps_before[a]
                _bridge_step(
                    first, e, left, diffusion, jumps_before, step_factor, frac, jump, bridge, before
                )
            for a in range(n_assets):
                increment = diffusion[a]
                for k in range(first, e):
                    increment += jump[a, k]
                level[a] += increment
                out[a, p, s + 1] = level[a]
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


def block_paths(
    state: np.ndarray,
    step_factor: FloatArray,
    drift_per_step: FloatArray,
    log_price0: FloatArray,
    event_path: IntArray,
    event_step: IntArray,
    event_frac: FloatArray,
    event_jump: FloatArray,
    bridge_normals: FloatArray,
    out: FloatArray,
) -> FloatArray:
    """Compiled :func:`numpy_block_paths` that draws its own diffusion normals.

    The normals come from the xoshiro256++ ziggurat stream of ``state``
    (:mod:`margin_sim._normals`), path by path, step by step, asset by asset: the same numbers
    as ``numpy_block_paths(standard_normal(state, (n_paths, n_steps, n_assets)), ...)``.

    Parameters
    ----------
    state : ndarray of uint64, shape (4,)
        Generator state (:func:`margin_sim._normals.seed_state`); advanced in place.
    step_factor, drift_per_step, log_price0, event_path, event_step, event_frac, event_jump,
    bridge_normals
        As in :func:`numpy_block_paths`.
    out : ndarray, shape (n_assets, n_paths, n_steps + 1)
        Receives the ln prices at the grid points (may be a view into a larger chunk).

    Returns
    -------
    ndarray, shape (n_assets, m)
        ln price just before each event (``log_before`` of :func:`numpy_block_paths`).

    Raises
    ------
    RuntimeError
        If numba is not installed.
    """
    if not HAVE_NUMBA:
        raise RuntimeError("block_paths needs numba; use numpy_block_paths")
    n_assets = out.shape[0]
    before = np.empty((n_assets, event_path.size))
    kernel = _one_asset if n_assets == 1 else _two_assets if n_assets == 2 else _any_assets
    kernel(
        state,
        np.ascontiguousarray(step_factor, dtype=np.float64),
        np.ascontiguousarray(drift_per_step, dtype=np.float64),
        np.ascontiguousarray(log_price0, dtype=np.float64),
        np.ascontiguousarray(event_path, dtype=np.int64),
        np.ascontiguousarray(event_step, dtype=np.int64),
        np.ascontiguousarray(event_frac, dtype=np.float64),
        np.ascontiguousarray(event_jump, dtype=np.float64),
        np.ascontiguousarray(bridge_normals, dtype=np.float64),
        out,
        before,
    )
    return before
