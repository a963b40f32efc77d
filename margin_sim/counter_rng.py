"""Counter-based random numbers: a uniform for every (seed, path, slot, index).

The engine's own draws (which step a liquidation is sampled in, where inside the step, random
funding rates) are pure functions of the seed and the GLOBAL path number, so they are the same
whatever the chunk size or the worker that evaluates the path. The generator is the SplitMix64
finaliser (Steele, Lea and Flood 2014, "Fast splittable pseudorandom number generators",
OOPSLA), applied to a combination of the counters; it passes BigCrush as a hash of a counter.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from margin_sim._typing import FloatArray, IntArray

__all__ = ["counter_normal", "counter_uniform"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def counter_uniform(
    seed: int, path_index: IntArray, slot: int, index: IntArray | int = 0
) -> FloatArray:
    """Uniforms in (0, 1) that depend only on their counters.

    Parameters
    ----------
    seed : int
        The run's seed.
    path_index : int array
        Global path numbers.
    slot : int
        Which use the numbers are for (a different stream per use).
    index : int or int array
        A further counter, broadcast against ``path_index`` (e.g. a funding interval).

    Returns
    -------
    array of float
        Uniforms strictly between 0 and 1, shape of ``path_index`` broadcast with ``index``.

    Examples
    --------
    >>> u = counter_uniform(7, np.arange(3), slot=0)
    >>> bool(np.all((u > 0) & (u < 1))), u.shape
    (True, (3,))
    """
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GAMMA + np.uint64(slot + 1))
        p = np.asarray(path_index).astype(np.uint64)
        i = np.asarray(index).astype(np.uint64)
        z = _mix(key ^ _mix(p * _GAMMA + _M1) ^ _mix((i + np.uint64(1)) * _M2))
        z = _mix(z + _GAMMA)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def counter_normal(
    seed: int, path_index: IntArray, slot: int, index: IntArray | int = 0
) -> FloatArray:
    """Standard normals from :func:`counter_uniform` by the inverse CDF."""
    return ndtri(counter_uniform(seed, path_index, slot, index))
