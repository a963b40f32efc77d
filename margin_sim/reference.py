"""Independent reference values: closed forms and transform inversions to test the engine against.

Nothing here simulates. Every function is a formula from the literature, written from the
paper (cited in each docstring), so that the Monte Carlo engine can be checked against numbers
it did not produce itself:

- :func:`gbm_first_passage`: probability that geometric Brownian motion touches a level
  within a horizon (reflection principle);
- :func:`liquidation_barrier`: the liquidation price, as a fraction of entry, of a fee-free
  position with a flat maintenance rate on mark notional;
- :func:`bgk_shift`, :func:`discrete_monitoring_probability`: the Broadie-Glasserman-Kou
  continuity correction, i.e. what checking only the closes of each step gives;
- :func:`kou_first_passage`: first passage of the Kou double-exponential jump diffusion, from
  the Kou-Wang Laplace transform inverted numerically (Abate-Whitt Euler algorithm).

Units: volatilities and drifts annualised, horizons and steps in years (365-day year, as in
:mod:`margin_sim.durations`), barriers as a ratio to the current price, log distances in
log-price units. Pure numpy/scipy; no other project module is used beyond the error types.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import numpy as np
import numpy.typing as npt
from scipy.special import comb, log_ndtr

from margin_sim._typing import FloatArray, Side
from margin_sim.errors import ScenarioError

__all__ = [
    "BGK_BETA",
    "Direction",
    "bgk_shift",
    "discrete_monitoring_probability",
    "gbm_first_passage",
    "kou_first_passage",
    "kou_levy_exponent",
    "liquidation_barrier",
]

Direction = Literal["down", "up"]

#: Broadie-Glasserman-Kou constant ``beta = -zeta(1/2) / sqrt(2 pi)`` (about 0.5826).
BGK_BETA: float = 0.5825971579390107

ArrayLike = npt.ArrayLike


def _check_direction(direction: str) -> None:
    if direction not in ("down", "up"):
        raise ScenarioError("direction", f"must be 'down' or 'up', not {direction!r}")


@overload
def _as_result(value: FloatArray, scalar: Literal[True]) -> float: ...
@overload
def _as_result(value: FloatArray, scalar: bool) -> float | FloatArray: ...
def _as_result(value: FloatArray, scalar: bool) -> float | FloatArray:
    return float(value) if scalar else value


# --------------------------------------------------------------------------- GBM


def gbm_first_passage(
    barrier_ratio: ArrayLike,
    vol: ArrayLike,
    horizon_years: ArrayLike,
    drift: ArrayLike = 0.0,
    *,
    direction: Direction = "down",
) -> float | FloatArray:
    r"""Probability that geometric Brownian motion touches a level within a horizon.

    For ``direction="down"`` this is :math:`P(\min_{t \le T} S_t \le B)` with
    :math:`B = \text{barrier\_ratio} \cdot S_0`; for ``"up"`` it is
    :math:`P(\max_{t \le T} S_t \ge B)`. Continuous monitoring.

    Parameters
    ----------
    barrier_ratio : array_like
        Level as a fraction of the current price, :math:`B / S_0` (dimensionless). NaN means
        "no level" (as :func:`liquidation_barrier` returns for a long at leverage <= 1) and
        gives probability 0.
    vol : array_like
        Annualised volatility :math:`\sigma` of the log price (>= 0).
    horizon_years : array_like
        Horizon :math:`T` in years (>= 0).
    drift : array_like, default 0.0
        Annualised expected return :math:`\mu` of the price, :math:`E[S_T] = S_0 e^{\mu T}`;
        the log price drifts at :math:`\nu = \mu - \sigma^2/2`.
    direction : {"down", "up"}
        Which side the level is on.

    Returns
    -------
    float or ndarray
        Probability in [0, 1], broadcast over the inputs (a float when all are scalars).

    Notes
    -----
    Write :math:`X_t = \ln(S_t/S_0) = \nu t + \sigma W_t` and :math:`b = \ln(B/S_0) < 0`.
    The reflection principle for Brownian motion, combined with Girsanov's change of measure
    to remove the drift, gives the joint law of :math:`(X_T, \min_{t\le T} X_t)` and hence
    (e.g. Harrison 1985, *Brownian Motion and Stochastic Flow Systems*, sec. 1.8; Shreve 2004,
    *Stochastic Calculus for Finance II*, sec. 7.2)

    .. math::

        P\Big(\min_{t \le T} X_t \le b\Big)
        = \Phi\Big(\frac{b - \nu T}{\sigma\sqrt T}\Big)
        + e^{2 \nu b / \sigma^2}\, \Phi\Big(\frac{b + \nu T}{\sigma\sqrt T}\Big).

    An upper level :math:`b > 0` is the mirror image (apply the formula to :math:`-X`, whose
    drift is :math:`-\nu`, at level :math:`-b`):
    :math:`\Phi((-b + \nu T)/(\sigma\sqrt T))
    + e^{2\nu b/\sigma^2}\Phi((-b - \nu T)/(\sigma\sqrt T))`.
    The exponential factor is evaluated together with the normal tail in log space
    (``log_ndtr``) so that it never overflows.

    Edge cases: a level already reached (``barrier_ratio >= 1`` down, ``<= 1`` up) gives 1;
    a level that cannot be reached (``<= 0`` down, ``inf`` up) gives 0; with ``vol = 0`` or
    ``horizon_years = 0`` the path is deterministic, :math:`X_T = \nu T`.

    Examples
    --------
    >>> round(gbm_first_passage(liquidation_barrier(10, 0.005, "long"), 0.8, 1 / 365), 6)
    0.017404
    """
    _check_direction(direction)
    ratio, sigma, horizon, mu = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (barrier_ratio, vol, horizon_years, drift))
    )
    scalar = ratio.ndim == 0
    if np.any(sigma < 0) or np.any(horizon < 0):
        raise ScenarioError("vol/horizon_years", "must be non-negative")
    sign = 1.0 if direction == "down" else -1.0
    nu = mu - 0.5 * sigma**2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Mirror an upper level to a lower one: X -> -X, level b -> -b, drift nu -> -nu.
        b = sign * np.log(ratio)
        nu_m = sign * nu
        s_t = sigma * np.sqrt(horizon)
        random = (s_t > 0) & (b < 0) & np.isfinite(b)
        s_safe = np.where(random, s_t, 1.0)
        sig2 = np.where(random, sigma**2, 1.0)
        b_safe = np.where(random, b, -1.0)
        nu_t = nu_m * horizon
        first = np.exp(log_ndtr((b_safe - nu_t) / s_safe))
        second = np.exp(2.0 * nu_m * b_safe / sig2 + log_ndtr((b_safe + nu_t) / s_safe))
        prob = np.clip(first + second, 0.0, 1.0)
        # Deterministic path (no noise or no time): reached iff nu T already at or past b.
        deterministic = np.where(nu_t <= b, 1.0, 0.0)
        prob = np.where(random, prob, deterministic)
        prob = np.where(b >= 0, 1.0, prob)  # at or beyond the level now
        prob = np.where(np.isnan(ratio) | (b == -np.inf), 0.0, prob)  # no reachable level
    return _as_result(prob, scalar)


def liquidation_barrier(leverage: ArrayLike, mmr: ArrayLike, side: Side) -> float | FloatArray:
    r"""Liquidation price as a fraction of entry for a flat-rate, fee-free position.

    Parameters
    ----------
    leverage : array_like
        Initial leverage :math:`L` = notional / margin at entry (> 0).
    mmr : array_like
        Maintenance margin rate on mark notional, fraction (0 <= mmr < 1).
    side : {"long", "short"}
        Position side.

    Returns
    -------
    float or ndarray
        :math:`P_{liq} / P_{entry}`; NaN where no price liquidates (a long at
        :math:`L \le 1`, whose requirement is never met before the price reaches 0).

    Notes
    -----
    Entry price 1, quantity :math:`Q`, isolated margin :math:`Q/L`, maintenance
    :math:`Q P\,\text{mmr}` on the mark notional (one tier, no fees or funding). The position
    is liquidated when margin balance <= maintenance requirement:

    - long: :math:`Q/L + Q(P - 1) \le Q P\,\text{mmr} \iff P \le (1 - 1/L)/(1 - \text{mmr})`;
    - short: :math:`Q/L - Q(P - 1) \le Q P\,\text{mmr} \iff P \ge (1 + 1/L)/(1 + \text{mmr})`.

    This is Binance's isolated formula ``LP = (WB + cum - s Q EP)/(Q mmr - s Q)`` with
    ``WB = Q/L``, ``cum = 0``, ``EP = 1`` (DESIGN.md section 4).
    """
    if side not in ("long", "short"):
        raise ScenarioError("side", f"must be 'long' or 'short', not {side!r}")
    lev = np.asarray(leverage, dtype=np.float64)
    rate = np.asarray(mmr, dtype=np.float64)
    scalar = np.broadcast(lev, rate).ndim == 0
    if np.any(lev <= 0) or np.any(rate < 0) or np.any(rate >= 1):
        raise ScenarioError("leverage/mmr", "leverage must be > 0 and 0 <= mmr < 1")
    if side == "long":
        ratio = (1.0 - 1.0 / lev) / (1.0 - rate)
        ratio = np.where(ratio > 0, ratio, np.nan)
    else:
        ratio = (1.0 + 1.0 / lev) / (1.0 + rate)
    return _as_result(np.asarray(ratio, dtype=np.float64), scalar)


# --------------------------------------------------------------------------- discrete monitoring


def bgk_shift(vol: ArrayLike, dt_years: ArrayLike) -> float | FloatArray:
    r"""Broadie-Glasserman-Kou continuity correction :math:`e^{\beta\sigma\sqrt{\Delta t}}`.

    Parameters
    ----------
    vol : array_like
        Annualised volatility :math:`\sigma`.
    dt_years : array_like
        Monitoring interval :math:`\Delta t` in years.

    Returns
    -------
    float or ndarray
        The factor (>= 1). A barrier checked only every :math:`\Delta t` behaves like a
        continuously monitored barrier moved AWAY from the current price by this factor:
        :math:`B e^{-\beta\sigma\sqrt{\Delta t}}` for a lower level, :math:`B e^{+\beta\sigma
        \sqrt{\Delta t}}` for an upper one.

    Notes
    -----
    Broadie, Glasserman and Kou (1997), "A continuity correction for discrete barrier
    options", *Mathematical Finance* 7(4), 325-349, Theorem 1:
    :math:`\beta = -\zeta(1/2)/\sqrt{2\pi} \approx 0.5826`, :math:`\zeta` the Riemann zeta
    function. The error of the approximation is :math:`o(\sqrt{\Delta t})`.
    """
    sigma = np.asarray(vol, dtype=np.float64)
    dt = np.asarray(dt_years, dtype=np.float64)
    scalar = np.broadcast(sigma, dt).ndim == 0
    factor = np.exp(BGK_BETA * sigma * np.sqrt(dt))
    return _as_result(np.asarray(factor, dtype=np.float64), scalar)


def discrete_monitoring_probability(
    barrier_ratio: ArrayLike,
    vol: ArrayLike,
    horizon_years: ArrayLike,
    step_years: ArrayLike,
    drift: ArrayLike = 0.0,
    *,
    direction: Direction = "down",
) -> float | FloatArray:
    r"""Approximate probability of touching a level when only the closes of each step are checked.

    Parameters
    ----------
    barrier_ratio, vol, horizon_years, drift, direction
        As in :func:`gbm_first_passage`.
    step_years : array_like
        Interval between checks, years (the grid step of a close-only simulation).

    Returns
    -------
    float or ndarray
        :func:`gbm_first_passage` at the level shifted away by :func:`bgk_shift`
        (Broadie, Glasserman and Kou 1997). This is what a simulation that compares only grid
        closes with the liquidation price converges to: lower than the true probability.

    Examples
    --------
    >>> barrier = liquidation_barrier(10, 0.005, "long")
    >>> round(discrete_monitoring_probability(barrier, 0.8, 1 / 365, 1 / (365 * 24)), 4)
    0.0125
    """
    _check_direction(direction)
    factor = np.asarray(bgk_shift(vol, step_years))
    ratio = np.asarray(barrier_ratio, dtype=np.float64)
    shifted = ratio / factor if direction == "down" else ratio * factor
    return gbm_first_passage(shifted, vol, horizon_years, drift, direction=direction)


# --------------------------------------------------------------------------- Kou


def _kou_rates(p_up: float, up_mean: float, down_mean: float) -> tuple[float, float, float]:
    if not 0.0 <= p_up <= 1.0:
        raise ScenarioError("p_up", "must be in [0, 1]")
    if not 0.0 < up_mean < 1.0:
        raise ScenarioError("up_mean", "must be in (0, 1) so that E[exp(jump)] is finite")
    if not down_mean > 0.0:
        raise ScenarioError("down_mean", "must be positive")
    return p_up, 1.0 / up_mean, 1.0 / down_mean


def _kou_log_drift(
    vol: float, drift: float, per_year: float, p_up: float, eta1: float, eta2: float
) -> float:
    # E[e^J] - 1 for a double-exponential jump J (Kou 2002, eq. 2 and below).
    zeta = p_up * eta1 / (eta1 - 1.0) + (1.0 - p_up) * eta2 / (eta2 + 1.0) - 1.0
    return drift - 0.5 * vol**2 - per_year * zeta


def kou_levy_exponent(
    x: ArrayLike,
    *,
    vol: float,
    drift: float,
    per_year: float,
    p_up: float,
    up_mean: float,
    down_mean: float,
) -> npt.NDArray[np.complex128] | FloatArray:
    r"""Levy exponent :math:`G(x) = \ln E[e^{x X_1}]` of the Kou log price (real or complex ``x``).

    Parameters
    ----------
    x : array_like
        Argument, :math:`-\eta_2 < \operatorname{Re} x < \eta_1`.
    vol, drift, per_year, p_up, up_mean, down_mean
        As in :func:`kou_first_passage`.

    Returns
    -------
    ndarray
        :math:`G(x) = c x + \sigma^2 x^2/2 + \lambda\big(p\eta_1/(\eta_1 - x)
        + q\eta_2/(\eta_2 + x) - 1\big)` with :math:`c` chosen so that :math:`G(1) =`
        ``drift`` (see :func:`kou_first_passage`, Notes).
    """
    p, eta1, eta2 = _kou_rates(p_up, up_mean, down_mean)
    c = _kou_log_drift(vol, drift, per_year, p, eta1, eta2)
    z = np.asarray(x)
    return (
        c * z
        + 0.5 * vol**2 * z**2
        + per_year * (p * eta1 / (eta1 - z) + (1.0 - p) * eta2 / (eta2 + z) - 1.0)
    )


def _upward_roots(
    alpha: npt.NDArray[np.complex128],
    c: float,
    vol: float,
    lam: float,
    p: float,
    eta1: float,
    eta2: float,
) -> npt.NDArray[np.complex128]:
    """Roots of ``G(x) = alpha`` with positive real part, shape ``alpha.shape + (k,)``.

    ``G(x) = alpha`` is multiplied by ``(eta1 - x)(eta2 + x)`` (or by ``eta2 + x`` alone when
    there are no upward jumps) into a polynomial whose roots come from a batch of companion
    matrices; for ``Re alpha > 0`` exactly two (one without upward jumps) lie in the right
    half-plane (Kou and Wang 2003, Lemma 2.1, extended to complex alpha by continuity as in
    Kou, Petrella and Wang 2005).
    """
    a2 = 0.5 * vol**2
    a1 = c
    a0 = -(lam + alpha)  # the constant of c x + s^2 x^2/2 - lam - alpha
    one = np.ones_like(alpha)
    if lam > 0.0 and p > 0.0:
        q = 1.0 - p
        # (a2 x^2 + a1 x + a0)(-x^2 + (eta1 - eta2) x + eta1 eta2)
        #   + lam p eta1 (eta2 + x) + lam q eta2 (eta1 - x),  highest power first
        coeffs = [
            -a2 * one,
            (a2 * (eta1 - eta2) - a1) * one,
            a2 * eta1 * eta2 + a1 * (eta1 - eta2) - a0,
            a1 * eta1 * eta2 + a0 * (eta1 - eta2) + lam * p * eta1 - lam * q * eta2,
            -alpha * eta1 * eta2,
        ]
        keep = 2
    else:
        # No upward jumps: (a2 x^2 + a1 x + a0)(eta2 + x) + lam eta2 = 0.
        coeffs = [a2 * one, (a2 * eta2 + a1) * one, a1 * eta2 + a0, -alpha * eta2]
        keep = 1
    poly = np.stack(coeffs, axis=-1)  # (..., degree + 1)
    degree = poly.shape[-1] - 1
    monic = poly[..., 1:] / poly[..., :1]
    companion = np.zeros((*alpha.shape, degree, degree), dtype=np.complex128)
    companion[..., 0, :] = -monic
    companion[..., np.arange(1, degree), np.arange(degree - 1)] = 1.0
    roots = np.linalg.eigvals(companion)
    # Polish with Newton steps on the polynomial (eigenvalues are good to ~1e-12 relative).
    powers = np.arange(degree, -1, -1)
    for _ in range(2):
        value = np.sum(poly[..., None, :] * roots[..., :, None] ** powers, axis=-1)
        deriv = np.sum(
            poly[..., None, :-1] * powers[:-1] * roots[..., :, None] ** (powers[:-1] - 1),
            axis=-1,
        )
        roots = roots - value / deriv
    order = np.argsort(-roots.real, axis=-1)
    return np.take_along_axis(roots, order, axis=-1)[..., :keep]


def _euler_nodes(terms: int) -> tuple[npt.NDArray[np.complex128], FloatArray, float]:
    """Nodes, weights and scale of the Abate-Whitt Euler inversion with parameter ``terms``.

    Abate and Whitt (2006), "A unified framework for numerically inverting Laplace
    transforms", INFORMS J. Computing 18(4), 408-421, section 5:
    ``f(t) ~ 10^(M/3)/t * sum_{k=0}^{2M} eta_k Re F(beta_k / t)`` with
    ``beta_k = M ln(10)/3 + i pi k``, ``eta_k = (-1)^k xi_k``, ``xi_0 = 1/2``,
    ``xi_k = 1`` (1 <= k <= M), ``xi_2M = 2^-M``,
    ``xi_{2M-k} = xi_{2M-k+1} + 2^-M binom(M, k)`` (0 < k < M).
    """
    m = terms
    k = np.arange(2 * m + 1)
    beta = m * math.log(10.0) / 3.0 + 1j * math.pi * k
    xi = np.ones(2 * m + 1)
    xi[0] = 0.5
    xi[2 * m] = 2.0**-m
    for j in range(1, m):
        xi[2 * m - j] = xi[2 * m - j + 1] + 2.0**-m * comb(m, j)
    eta = np.where(k % 2 == 0, 1.0, -1.0) * xi
    return beta, eta, 10.0 ** (m / 3.0)


def kou_first_passage(
    level_log_distance: float,
    horizon_years: ArrayLike,
    *,
    vol: float,
    drift: float = 0.0,
    per_year: float,
    p_up: float,
    up_mean: float,
    down_mean: float,
    direction: Direction = "down",
    terms: int = 18,
) -> float | FloatArray:
    r"""First-passage probability of the Kou double-exponential jump diffusion.

    :math:`P(\tau \le T)` with :math:`\tau = \inf\{t: X_t \le -b\}` (``"down"``) or
    :math:`\inf\{t: X_t \ge b\}` (``"up"``), :math:`X_t = \ln(S_t/S_0)`, continuous
    monitoring, jumps included (a jump across the level counts, overshoot and all).

    Parameters
    ----------
    level_log_distance : float
        :math:`b = |\ln(B/S_0)|`, the distance to the level in log-price units (> 0; 0 or
        less means the level is already reached and gives 1).
    horizon_years : array_like
        Horizon(s) :math:`T` in years.
    vol : float
        Annualised diffusion volatility :math:`\sigma` (> 0).
    drift : float, default 0.0
        Annualised expected return, jumps compensated: :math:`E[S_T] = S_0 e^{\text{drift}\,T}`
        (the scenario convention, DESIGN.md section 3).
    per_year : float
        Jump rate :math:`\lambda` per year (>= 0).
    p_up : float
        Probability :math:`p` that a jump is upwards.
    up_mean, down_mean : float
        Mean log sizes :math:`1/\eta_1` (< 1) and :math:`1/\eta_2` of up and down jumps.
    direction : {"down", "up"}
        Which side the level is on.
    terms : int, default 18
        Euler inversion parameter :math:`M` (:math:`2M+1` transform evaluations per horizon;
        about :math:`0.6M` significant digits in exact arithmetic).

    Returns
    -------
    float or ndarray
        Probability in [0, 1], one per horizon.

    Notes
    -----
    *Process.* :math:`X_t = c t + \sigma W_t + \sum_{i \le N_t} Y_i`, :math:`N` Poisson with
    rate :math:`\lambda`, :math:`Y` equal to :math:`\text{Exp}(\eta_1)` with probability
    :math:`p` and to :math:`-\text{Exp}(\eta_2)` otherwise (Kou 2002). Its Levy exponent is
    :math:`G(x) = c x + \sigma^2 x^2/2 + \lambda(p\eta_1/(\eta_1-x) + q\eta_2/(\eta_2+x) - 1)`.

    *Drift mapping.* The scenario's ``drift`` :math:`\mu` is the compensated expected return,
    :math:`E[S_T] = S_0 e^{G(1) T} = S_0 e^{\mu T}`, so
    :math:`c = \mu - \sigma^2/2 - \lambda\zeta`, :math:`\zeta = E[e^Y] - 1 =
    p\eta_1/(\eta_1 - 1) + q\eta_2/(\eta_2 + 1) - 1`.

    *Transform.* Kou and Wang (2003), "First passage times of a jump diffusion process",
    *Adv. Appl. Prob.* 35, 504-531, Theorem 3.1: for an upper level at log distance
    :math:`b > 0` and :math:`\alpha > 0`,

    .. math::

        E[e^{-\alpha\tau_b}] = \frac{\eta_1 - \beta_1}{\eta_1}\frac{\beta_2}{\beta_2-\beta_1}
        e^{-b\beta_1} + \frac{\beta_2 - \eta_1}{\eta_1}\frac{\beta_1}{\beta_2-\beta_1}
        e^{-b\beta_2},

    :math:`0 < \beta_1 < \eta_1 < \beta_2` the positive roots of :math:`G(x) = \alpha`. The
    expression is symmetric in :math:`\beta_1, \beta_2`, so for complex :math:`\alpha` the two
    roots in the right half-plane are used without ordering. Without upward jumps it reduces
    to :math:`e^{-b\beta_1}` (creeping only). A lower level uses the mirrored process
    :math:`-X` (:math:`p \leftrightarrow q`, :math:`\eta_1 \leftrightarrow \eta_2`,
    :math:`c \to -c`).

    *Inversion.* :math:`P(\tau \le T)` has Laplace transform :math:`E[e^{-\alpha\tau}]/\alpha`,
    inverted with the Abate-Whitt (2006) Euler algorithm (see ``_euler_nodes``).
    With ``per_year = 0`` the result equals :func:`gbm_first_passage` (tested).
    """
    _check_direction(direction)
    if not vol > 0.0:
        raise ScenarioError("vol", "must be positive for the Kou transform")
    if per_year < 0.0:
        raise ScenarioError("per_year", "must be non-negative")
    if terms < 4:
        raise ScenarioError("terms", "must be at least 4")
    p, eta1, eta2 = _kou_rates(p_up, up_mean, down_mean)
    c = _kou_log_drift(vol, drift, per_year, p, eta1, eta2)
    if direction == "down":
        c, p, eta1, eta2 = -c, 1.0 - p, eta2, eta1
    horizon = np.asarray(horizon_years, dtype=np.float64)
    scalar = horizon.ndim == 0
    flat = np.atleast_1d(horizon).ravel()
    if np.any(flat < 0):
        raise ScenarioError("horizon_years", "must be non-negative")
    b = float(level_log_distance)
    out = np.zeros_like(flat)
    if b <= 0.0:
        out[:] = 1.0
        return _as_result(out.reshape(horizon.shape), scalar)
    positive = flat > 0
    if np.any(positive):
        nodes, weights, scale = _euler_nodes(terms)
        t = flat[positive]
        alpha = nodes[None, :] / t[:, None]  # (n_t, 2M+1)
        roots = _upward_roots(alpha, c, vol, per_year, p, eta1, eta2)
        if roots.shape[-1] == 1:
            transform = np.exp(-b * roots[..., 0])
        else:
            b1, b2 = roots[..., 0], roots[..., 1]
            transform = (
                (eta1 - b1) * b2 * np.exp(-b * b1) + (b2 - eta1) * b1 * np.exp(-b * b2)
            ) / (eta1 * (b2 - b1))
        values = (transform / alpha).real
        out[positive] = scale / t * np.sum(weights * values, axis=-1)
    out = np.clip(out, 0.0, 1.0)
    return _as_result(out.reshape(horizon.shape), scalar)
