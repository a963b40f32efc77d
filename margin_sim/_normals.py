"""Compiled standard normal draws: xoshiro256++ bits through a 256-layer ziggurat.

The path generator needs about 1,400 normals per path for a two-asset month of hourly steps;
numpy's ``standard_normal`` costs ~10 ns per draw, most of it call and buffer overhead around
the bit generator. Here both the bit generator and the normal transform are written out for
numba, so a kernel can draw normals one at a time, with the generator state in registers, and
use them at once (no array of normals in memory).

Bits: xoshiro256++ (Blackman and Vigna, "Scrambled linear pseudorandom number generators",
ACM Trans. Math. Software 47(4), 2021; preprint 2018), a 256-bit state with period
2^256 - 1, whose every output bit passes BigCrush. The state is 4 unsigned 64-bit words, not
all 0.

Normals: the ziggurat method of Marsaglia and Tsang ("The ziggurat method for generating
random variables", J. Statistical Software 5(8), 2000) for the half-normal, with a random
sign. The area under ``f(x) = exp(-x^2/2)``, ``x >= 0``, is covered by N = 256 layers of
equal area ``v``: layer 0 is the rectangle ``[0, r] x [0, f(r)]`` plus the tail beyond ``r``
(virtual width ``x_0 = v / f(r)``), layer i >= 1 is ``[0, x_i] x [f(x_i), f(x_{i+1})]`` with
``x_1 = r``, ``x_{i+1} = f^{-1}(f(x_i) + v / x_i)`` and ``x_N = 0``; ``r = 3.6541528853610088``
and ``v = r f(r) + integral_r^inf f`` (Marsaglia and Tsang's table for N = 256). A draw picks a
layer i and a uniform u, and returns ``u x_i`` if that is below ``x_{i+1}`` (about 99% of
draws); otherwise it samples the tail (layer 0; Marsaglia 1964: ``x = -ln(u1) / r``,
``y = -ln(u2)``, accept ``r + x`` if ``2 y > x^2``) or the wedge (accept ``u x_i`` if a uniform
height in ``[f(x_i), f(x_{i+1})]`` lies below ``f(u x_i)``, else start again). Following
Doornik ("An improved ziggurat method to generate normal random samples", 2005), the layer,
the sign and the uniform come from disjoint bits of one 64-bit output (bits 0-7 the layer,
bit 8 the sign, bits 11-63 a 53-bit uniform), so they are independent; Marsaglia and Tsang's
original took the layer from the low bits of the same 32-bit word as the uniform.
"""

from __future__ import annotations

import math

import numpy as np

from margin_sim._kernels import HAVE_NUMBA, njit
from margin_sim._typing import FloatArray

__all__ = [
    "HAVE_NUMBA",
    "ZIGGURAT_LAYERS",
    "ZIGGURAT_R",
    "draw_normal",
    "fill_standard_normal",
    "seed_state",
    "standard_normal",
]


#: Number of ziggurat layers.
ZIGGURAT_LAYERS = 256

#: Right edge ``r`` of the base layer (Marsaglia and Tsang 2000, N = 256), log-price-free units
#: of a standard normal.
ZIGGURAT_R = 3.6541528853610088


def _tables() -> tuple[FloatArray, FloatArray, FloatArray]:
    """Ziggurat tables over 512 entries (index = layer + 256 x sign bit).

    Returns
    -------
    width : ndarray, shape (512,)
        ``+x_i`` for entries 0-255, ``-x_i`` for 256-511 (so the sign costs no branch).
    ratio : ndarray, shape (512,)
        ``x_{i+1} / x_i``: a uniform below it is accepted at once.
    height : ndarray, shape (257,)
        ``f(x_i)`` for i = 0..256, with ``f(x_0) = f(r)`` and ``f(x_256) = 1`` (layer i spans
        heights ``height[i]`` to ``height[i + 1]``).
    """
    n, r = ZIGGURAT_LAYERS, ZIGGURAT_R
    f_r = math.exp(-0.5 * r * r)
    area = r * f_r + math.sqrt(math.pi / 2.0) * math.erfc(r / math.sqrt(2.0))
    x = np.empty(n + 1)
    x[0], x[1], x[n] = area / f_r, r, 0.0
    for i in range(1, n - 1):
        x[i + 1] = math.sqrt(-2.0 * math.log(math.exp(-0.5 * x[i] ** 2) + area / x[i]))
    height = np.exp(-0.5 * x**2)
    height[0] = f_r  # layer 0 is f(r) tall over its whole virtual width
    height[n] = 1.0
    ratio = x[1:] / x[:-1]
    return np.concatenate([x[:n], -x[:n]]), np.concatenate([ratio, ratio]), height


_WIDTH, _RATIO, _HEIGHT = _tables()
_HEIGHT_BELOW, _HEIGHT_ABOVE = _HEIGHT[:-1].copy(), _HEIGHT[1:].copy()

_ROTATE_23, _ROTATE_45 = np.uint64(23), np.uint64(45)
_ROTATE_41, _ROTATE_19 = np.uint64(41), np.uint64(19)
_SHIFT_17, _SHIFT_11 = np.uint64(17), np.uint64(11)
_INDEX_MASK = np.uint64(2 * ZIGGURAT_LAYERS - 1)
_LAYER_MASK = np.uint64(ZIGGURAT_LAYERS - 1)
_TO_UNIT = 2.0**-53


@njit(cache=True, nogil=True, inline="always")
def _next_bits(s0, s1, s2, s3):  # pragma: no cover
    """One xoshiro256++ step: (64 output bits, new state) (Blackman and Vigna 2021)."""
    total = s0 + s3
    bits = ((total << _ROTATE_23) | (total >> _ROTATE_41)) + s0
    shifted = s1 << _SHIFT_17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= shifted
    s3 = (s3 << _ROTATE_45) | (s3 >> _ROTATE_19)
    return bits, s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always")
def _open_unit(bits):  # pragma: no cover
    """A uniform in (0, 1] from the top 53 bits (never 0, so its log is finite)."""
    return (float(bits >> _SHIFT_11) + 1.0) * _TO_UNIT


@njit(cache=True, nogil=True)
def _slow_normal(bits, s0, s1, s2, s3):  # pragma: no cover
    """The rare ziggurat cases (tail and wedges), then further rounds until one is accepted.

    ``bits`` is the output that was not accepted at once; returns (normal, new state).
    """
    while True:
        index = bits & _INDEX_MASK
        layer = bits & _LAYER_MASK
        u = float(bits >> _SHIFT_11) * _TO_UNIT
        ratio = _RATIO[index]
        width = _WIDTH[index]
        if u < ratio:
            return u * width, s0, s1, s2, s3
        if layer == 0:
            # tail beyond r (Marsaglia 1964); the sign comes with the layer's width
            while True:
                bits, s0, s1, s2, s3 = _next_bits(s0, s1, s2, s3)
                x = -math.log(_open_unit(bits)) / ZIGGURAT_R
                bits, s0, s1, s2, s3 = _next_bits(s0, s1, s2, s3)
                y = -math.log(_open_unit(bits))
                if 2.0 * y > x * x:
                    return math.copysign(ZIGGURAT_R + x, width), s0, s1, s2, s3
        z = u * width
        bits, s0, s1, s2, s3 = _next_bits(s0, s1, s2, s3)
        low, high = _HEIGHT_BELOW[layer], _HEIGHT_ABOVE[layer]
        height = low + float(bits >> _SHIFT_11) * _TO_UNIT * (high - low)
        if height < math.exp(-0.5 * z * z):
            return z, s0, s1, s2, s3
        bits, s0, s1, s2, s3 = _next_bits(s0, s1, s2, s3)


@njit(cache=True, nogil=True, inline="always")
def draw_normal(s0, s1, s2, s3):  # pragma: no cover
    """One standard normal from the state words; returns ``(z, s0, s1, s2, s3)``.

    For use inside other numba kernels: keep the four words in local variables, call this per
    draw, and store them back at the end (see :func:`fill_standard_normal`).

    Parameters
    ----------
    s0, s1, s2, s3 : numpy.uint64
        xoshiro256++ state.

    Returns
    -------
    z : float
        Standard normal draw (dimensionless).
    s0, s1, s2, s3 : numpy.uint64
        The advanced state.
    """
    bits, s0, s1, s2, s3 = _next_bits(s0, s1, s2, s3)
    index = bits & _INDEX_MASK
    u = float(bits >> _SHIFT_11) * _TO_UNIT
    if u < _RATIO[index]:
        return u * _WIDTH[index], s0, s1, s2, s3
    return _slow_normal(bits, s0, s1, s2, s3)


@njit(cache=True, nogil=True)
def _fill(state, out):  # pragma: no cover
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    for k in range(out.size):
        out[k], s0, s1, s2, s3 = draw_normal(s0, s1, s2, s3)
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


def seed_state(sequence: np.random.SeedSequence) -> np.ndarray:
    """A xoshiro256++ state from a :class:`numpy.random.SeedSequence`.

    Uses words 4-7 of ``sequence.generate_state(8, np.uint64)``; numpy's bit generators seeded
    from the same sequence use its first words, so the two streams start from unrelated states.

    Parameters
    ----------
    sequence : numpy.random.SeedSequence

    Returns
    -------
    ndarray of uint64, shape (4,)
        Generator state (never all zero), advanced in place by the draws.
    """
    state = sequence.generate_state(8, np.uint64)[4:].copy()
    if not state.any():  # the one state xoshiro must avoid (probability 2^-256)
        state[0] = np.uint64(0x9E3779B97F4A7C15)
    return state


def fill_standard_normal(state: np.ndarray, out: FloatArray) -> None:
    """Fill ``out`` with standard normals and advance ``state`` (compiled; needs numba).

    Parameters
    ----------
    state : ndarray of uint64, shape (4,)
        Generator state from :func:`seed_state`; updated in place.
    out : ndarray of float64, C-contiguous
        Filled in memory order.

    Raises
    ------
    RuntimeError
        If numba is not installed (there is no plain-Python twin: it would be far too slow).
    """
    if not HAVE_NUMBA:
        raise RuntimeError("the compiled normal generator needs numba")
    if state.dtype != np.uint64 or state.shape != (4,):
        raise ValueError("state must be 4 uint64 words")
    if out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float64 array")
    _fill(state, out.reshape(-1))


def standard_normal(state: np.ndarray, size: int | tuple[int, ...]) -> FloatArray:
    """New array of standard normals from ``state`` (advanced in place).

    Parameters
    ----------
    state : ndarray of uint64, shape (4,)
        Generator state from :func:`seed_state`.
    size : int or tuple of int
        Output shape.

    Returns
    -------
    ndarray of float64
        Independent standard normal draws (dimensionless), in the order the generator gives
        them (C order).

    Examples
    --------
    >>> state = seed_state(np.random.SeedSequence(1))
    >>> standard_normal(state, 3).shape
    (3,)
    """
    out = np.empty(size)
    fill_standard_normal(state, out)
    return out
