"""Brownian-bridge helpers of the path generator (private to :mod:`margin_sim.market`).

Facts used (e.g. Glasserman 2004, *Monte Carlo Methods in Financial Engineering*, sec. 3.1;
Karatzas and Shreve 1991, sec. 5.6.B): for a Brownian motion X with covariance matrix
``Sigma`` per unit time, conditional on ``X(u0) = x0`` and ``X(u1) = x1``, the value at
``u0 < t < u1`` is normal with

    mean = x0 + (t - u0) / (u1 - u0) * (x1 - x0)
    cov  = Sigma * (t - u0) (u1 - t) / (u1 - u0),

and, jointly over several times, ``X(t) = x0 + lam (x1 - x0) + (W(t) - W(u0)) - lam (W(u1) -
W(u0))`` with ``lam = (t - u0) / (u1 - u0)`` and W any Brownian motion with covariance
``Sigma`` (the bridge construction). Drift does not change the bridge. The conditional law
given ``X(u0)`` and ``X(u1)`` is independent of the path outside ``[u0, u1]`` (Markov property),
so several points inside one interval are sampled one after the other, each between the
previous sampled point and the right end.
"""

from __future__ import annotations

import numpy as np

from margin_sim._typing import FloatArray, IntArray
from margin_sim.errors import ScenarioError

__all__ = [
    "correlation_factor",
    "fill_between_knots",
    "group_starts",
    "rank_in_group",
    "sample_bridge_points",
]

#: Smallest eigenvalue below which a correlation matrix is refused (same as the scenario).
_PSD_TOLERANCE = 1e-10


def correlation_factor(correlation: FloatArray) -> FloatArray:
    """A matrix F with ``F @ F.T == correlation``.

    Cholesky when the matrix is positive definite; otherwise (positive semi-definite but
    singular, e.g. a correlation of exactly 1) the symmetric eigen-decomposition with the
    tiny negative round-off eigenvalues set to 0.

    Parameters
    ----------
    correlation : ndarray, shape (n_assets, n_assets)
        Symmetric correlation matrix (dimensionless).

    Returns
    -------
    ndarray, shape (n_assets, n_assets)

    Raises
    ------
    ScenarioError
        If the matrix is not positive semi-definite (field ``market.correlation``).
    """
    matrix = np.asarray(correlation, dtype=np.float64)
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        pass
    values, vectors = np.linalg.eigh(matrix)
    if values.min() < -_PSD_TOLERANCE:
        raise ScenarioError(
            "market.correlation",
            f"the matrix is not positive semi-definite (smallest eigenvalue {values.min():.3g})",
        )
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def group_starts(new_group: np.ndarray) -> IntArray:
    """For each row of a sorted table, the index of the first row of its group.

    Parameters
    ----------
    new_group : ndarray of bool, shape (m,)
        True where a row starts a new group (must be True at row 0 when m > 0).

    Returns
    -------
    ndarray of int64, shape (m,)
    """
    index = np.arange(new_group.size, dtype=np.int64)
    return np.maximum.accumulate(np.where(new_group, index, 0))


def rank_in_group(new_group: np.ndarray) -> IntArray:
    """0 for the first row of each group, 1 for the second, ... (rows sorted by group)."""
    index = np.arange(new_group.size, dtype=np.int64)
    return index - group_starts(new_group)


def sample_bridge_points(
    left: FloatArray,
    right: FloatArray,
    frac: FloatArray,
    rank: IntArray,
    step_factor: FloatArray,
    normals: FloatArray,
) -> FloatArray:
    """Sample a correlated Brownian bridge at event times inside grid steps.

    Rows are events sorted by (path, step, frac); the events of one (path, step) are sampled
    one after the other: the k-th event (``rank == k``) is drawn from the bridge between the
    (k-1)-th event (or the step's left knot) and the step's right knot. Vectorised over all
    events of the same rank; the only loop is over the rank.

    Parameters
    ----------
    left, right : ndarray, shape (n_assets, m)
        Continuous part of the log price at the step's left and right grid points.
    frac : ndarray, shape (m,)
        Event position inside its step, in (0, 1).
    rank : ndarray of int, shape (m,)
        Position of the event among the events of its (path, step).
    step_factor : ndarray, shape (n_assets, n_assets)
        F with ``F @ F.T`` the covariance of the log-price diffusion over one whole step
        (``diag(vol) corr diag(vol) dt``, log-price units squared).
    normals : ndarray, shape (n_assets, m)
        Independent standard normals, one column per event.

    Returns
    -------
    ndarray, shape (n_assets, m)
        Continuous part of the log price at the events.
    """
    values = np.empty_like(left)
    if frac.size == 0:
        return values
    correlated = step_factor @ normals
    for k in range(int(rank.max()) + 1):
        rows = np.flatnonzero(rank == k)
        f = frac[rows]
        if k == 0:
            previous_frac = np.zeros_like(f)
            previous = left[:, rows]
        else:
            previous_frac = frac[rows - 1]
            previous = values[:, rows - 1]
        remaining = 1.0 - previous_frac
        weight = (f - previous_frac) / remaining
        scale = np.sqrt(np.clip((f - previous_frac) * (1.0 - f) / remaining, 0.0, None))
        values[:, rows] = (
            previous + weight * (right[:, rows] - previous) + scale * correlated[:, rows]
        )
    return values


def fill_between_knots(
    grid_values: FloatArray,
    points_per_step: int,
    event_path: IntArray,
    event_step: IntArray,
    event_frac: FloatArray,
    event_before: FloatArray,
    event_after: FloatArray,
    step_factor: FloatArray,
    generators: list[np.random.Generator],
) -> FloatArray:
    """Log prices on a fine grid that pass exactly through the knots of coarse paths.

    The fine grid divides every grid step into ``points_per_step`` equal parts. Knots are the
    grid points and the events; between two consecutive knots of a path the log price is the
    Brownian bridge from the right-hand value of the left knot (after its jump) to the
    left-hand value of the right knot (before its jump), built from a free Brownian motion
    sampled at every fine point and knot (the bridge construction in the module docstring).

    Parameters
    ----------
    grid_values : ndarray, shape (n_assets, n, n_steps + 1)
        Log prices at the grid points.
    points_per_step : int
        Fine intervals per grid step (>= 1).
    event_path, event_step, event_frac : ndarray, shape (m,)
        Events sorted by (path, step, frac), ``frac`` in (0, 1).
    event_before, event_after : ndarray, shape (n_assets, m)
        Log prices just before and just after each event.
    step_factor : ndarray, shape (n_assets, n_assets)
        F with ``F @ F.T`` the diffusion covariance over one grid step.
    generators : list of numpy.random.Generator
        One per path, for the free Brownian motion of that path.

    Returns
    -------
    ndarray, shape (n_assets, n, n_steps * points_per_step + 1)
        Log prices at the fine points; equal to ``grid_values`` at every grid point.
    """
    n_assets, n_paths, n_knots = grid_values.shape
    q = points_per_step
    n_fine = (n_knots - 1) * q + 1
    m = event_path.size
    fine_index = np.arange(n_fine, dtype=np.int64)
    point_path = np.concatenate([np.repeat(np.arange(n_paths, dtype=np.int64), n_fine), event_path])
    point_step = np.concatenate([np.tile(fine_index // q, n_paths), event_step])
    point_frac = np.concatenate([np.tile((fine_index % q) / q, n_paths), event_frac])
    is_event = np.concatenate([np.zeros(n_paths * n_fine, dtype=bool), np.ones(m, dtype=bool)])
    origin = np.concatenate([np.arange(n_paths * n_fine, dtype=np.int64), np.arange(m)])
    order = np.lexsort((is_event, point_frac, point_step, point_path))
    point_path, point_step, point_frac = point_path[order], point_step[order], point_frac[order]
    is_event, origin = is_event[order], origin[order]
    time = point_step + point_frac  # in grid steps

    # values to the left and right of every knot (NaN elsewhere)
    n_points = time.size
    is_grid = ~is_event & (point_frac == 0.0)
    is_knot = is_grid | is_event
    value_left = np.full((n_assets, n_points), np.nan)
    value_right = np.full((n_assets, n_points), np.nan)
    grid_rows = np.flatnonzero(is_grid)
    grid_flat = grid_values[:, point_path[grid_rows], point_step[grid_rows]]
    value_left[:, grid_rows] = value_right[:, grid_rows] = grid_flat
    event_rows = np.flatnonzero(is_event)
    value_left[:, event_rows] = event_before[:, origin[event_rows]]
    value_right[:, event_rows] = event_after[:, origin[event_rows]]

    # free Brownian motion at every point, one generator per path (path order is kept)
    elapsed = np.diff(time, prepend=0.0)
    elapsed[np.flatnonzero(np.diff(point_path, prepend=-1))] = 0.0
    counts = np.bincount(point_path, minlength=n_paths)
    normals = np.concatenate(
        [g.standard_normal((n_assets, c)) for g, c in zip(generators, counts, strict=True)],
        axis=1,
    )
    free = np.cumsum((step_factor @ normals) * np.sqrt(np.clip(elapsed, 0.0, None)), axis=1)

    index = np.arange(n_points, dtype=np.int64)
    left = np.maximum.accumulate(np.where(is_knot, index, 0))
    right = np.minimum.accumulate(np.where(is_knot, index, n_points)[::-1])[::-1]
    span = time[right] - time[left]
    weight = np.where(span > 0, (time - time[left]) / np.where(span > 0, span, 1.0), 0.0)
    start = value_right[:, left]
    values = (
        start
        + weight * (value_left[:, right] - start)
        + (free - free[:, left])
        - weight * (free[:, right] - free[:, left])
    )
    values[:, grid_rows] = grid_flat
    fine_rows = np.flatnonzero(~is_event)
    return values[:, fine_rows].reshape(n_assets, n_paths, n_fine)
