"""Compiled inner loop of the path generator (numba), with its plain-numpy twin.

The grid values of a block of paths are a cumulative sum of increments: correlated diffusion
normals scaled by the step factor, the compensated drift, and the permanent jumps of each step.
:func:`diffusion_paths` draws the normals one at a time (:func:`margin_sim._normals.draw_normal`)
and adds each increment to the running log price at once, so nothing of size (assets x paths x
steps) exists besides the output. :func:`numpy_diffusion_paths` computes the same from given
normals; ``tests/test_normals.py`` checks that both agree.
"""

from __future__ import annotations

import numpy as np

from margin_sim._normals import HAVE_NUMBA, draw_normal, njit
from margin_sim._typing import FloatArray, IntArray

__all__ = ["HAVE_NUMBA", "diffusion_paths", "numpy_diffusion_paths"]


def numpy_diffusion_paths(
    normals: FloatArray,
    step_factor: FloatArray,
    drift_per_step: FloatArray,
    log_price0: FloatArray,
    event_path: IntArray,
    event_step: IntArray,
    event_jump: FloatArray,
) -> FloatArray:
    """Grid log prices from given normals (plain numpy).

    Parameters
    ----------
    normals : ndarray, shape (n_paths, n_steps, n_assets)
        Independent standard normals (dimensionless).
    step_factor : ndarray, shape (n_assets, n_assets)
        F with ``F @ F.T`` the covariance of the diffusion over one step (log units squared).
    drift_per_step : ndarray, shape (n_assets,)
        Compensated drift over one step, ``mu dt`` (log units).
    log_price0 : ndarray, shape (n_assets,)
        ln price at time 0.
    event_path, event_step : ndarray of int64, shape (m,)
        Path row and grid step of every event, sorted by (path, step).
    event_jump : ndarray, shape (n_assets, m)
        Permanent change of ln price at each event (log units).

    Returns
    -------
    ndarray, shape (n_assets, n_paths, n_steps + 1)
        ln price at the grid points: ``log_price0`` plus the running sum of
        ``F z_s + drift + (jumps in step s)``.
    """
    n_paths, n_steps, n_assets = normals.shape
    increments = np.einsum("ab,psb->aps", step_factor, normals)
    increments += drift_per_step[:, None, None]
    flat = event_path * n_steps + event_step
    for a in range(n_assets):
        np.add.at(increments[a].reshape(-1), flat, event_jump[a])
    log_price = np.empty((n_assets, n_paths, n_steps + 1))
    log_price[:, :, 0] = log_price0[:, None]
    increments[:, :, 0] += log_price0[:, None]
    np.cumsum(increments, axis=2, out=log_price[:, :, 1:])
    return log_price


@njit(cache=True, nogil=True)
def _one_asset(
    state, step_factor, drift_per_step, log_price0, event_path, event_step, event_jump, out
):  # pragma: no cover
    """:func:`_any_assets` for one asset, with the running level in a register."""
    _, n_paths, n_points = out.shape
    m = event_path.size
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    scale, drift = step_factor[0, 0], drift_per_step[0]
    e = 0
    for p in range(n_paths):
        level = log_price0[0]
        row = out[0, p]
        row[0] = level
        for s in range(n_points - 1):
            z, s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            increment = scale * z + drift
            while e < m and event_path[e] == p and event_step[e] == s:
                increment += event_jump[0, e]
                e += 1
            level += increment
            row[s + 1] = level
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _two_assets(
    state, step_factor, drift_per_step, log_price0, event_path, event_step, event_jump, out
):  # pragma: no cover
    """:func:`_any_assets` for two assets, with the running levels in registers."""
    _, n_paths, n_points = out.shape
    m = event_path.size
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    f00, f01, f10, f11 = step_factor[0, 0], step_factor[0, 1], step_factor[1, 0], step_factor[1, 1]
    drift0, drift1 = drift_per_step[0], drift_per_step[1]
    e = 0
    for p in range(n_paths):
        level0, level1 = log_price0[0], log_price0[1]
        row0, row1 = out[0, p], out[1, p]
        row0[0], row1[0] = level0, level1
        for s in range(n_points - 1):
            z0, s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            z1, s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            increment0 = f00 * z0 + f01 * z1 + drift0
            increment1 = f10 * z0 + f11 * z1 + drift1
            while e < m and event_path[e] == p and event_step[e] == s:
                increment0 += event_jump[0, e]
                increment1 += event_jump[1, e]
                e += 1
            level0 += increment0
            level1 += increment1
            row0[s + 1] = level0
            row1[s + 1] = level1
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _any_assets(
    state, step_factor, drift_per_step, log_price0, event_path, event_step, event_jump, out
):  # pragma: no cover
    """Grid log prices of a block into ``out``; normals by path, step, asset from ``state``."""
    n_assets, n_paths, n_points = out.shape
    m = event_path.size
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    normal = np.empty(n_assets)
    level = np.empty(n_assets)
    e = 0
    for p in range(n_paths):
        for a in range(n_assets):
            level[a] = log_price0[a]
            out[a, p, 0] = log_price0[a]
        for s in range(n_points - 1):
            for b in range(n_assets):
                normal[b], s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
            first = e
            while e < m and event_path[e] == p and event_step[e] == s:
                e += 1
            for a in range(n_assets):
                increment = 0.0
                for b in range(n_assets):
                    increment += step_factor[a, b] * normal[b]
                increment += drift_per_step[a]
                for k in range(first, e):
                    increment += event_jump[a, k]
                level[a] += increment
                out[a, p, s + 1] = level[a]
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


def diffusion_paths(
    state: np.ndarray,
    step_factor: FloatArray,
    drift_per_step: FloatArray,
    log_price0: FloatArray,
    event_path: IntArray,
    event_step: IntArray,
    event_jump: FloatArray,
    out: FloatArray,
) -> None:
    """Compiled :func:`numpy_diffusion_paths` that draws its own normals.

    The normals come from the xoshiro256++ ziggurat stream of ``state``
    (:mod:`margin_sim._normals`), path by path, step by step, asset by asset: the same numbers
    as ``numpy_diffusion_paths(standard_normal(state, (n_paths, n_steps, n_assets)), ...)``.

    Parameters
    ----------
    state : ndarray of uint64, shape (4,)
        Generator state (:func:`margin_sim._normals.seed_state`); advanced in place.
    step_factor, drift_per_step, log_price0, event_path, event_step, event_jump
        As in :func:`numpy_diffusion_paths`.
    out : ndarray, shape (n_assets, n_paths, n_steps + 1)
        Receives the ln prices at the grid points (may be a view into a larger chunk).

    Raises
    ------
    RuntimeError
        If numba is not installed.
    """
    if not HAVE_NUMBA:
        raise RuntimeError("diffusion_paths needs numba; use numpy_diffusion_paths")
    n_assets = out.shape[0]
    kernel = _one_asset if n_assets == 1 else _two_assets if n_assets == 2 else _any_assets
    kernel(
        state,
        np.ascontiguousarray(step_factor, dtype=np.float64),
        np.ascontiguousarray(drift_per_step, dtype=np.float64),
        np.ascontiguousarray(log_price0, dtype=np.float64),
        np.ascontiguousarray(event_path, dtype=np.int64),
        np.ascontiguousarray(event_step, dtype=np.int64),
        np.ascontiguousarray(event_jump, dtype=np.float64),
        out,
    )
