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
