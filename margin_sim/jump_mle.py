"""Maximum likelihood for jump-diffusion log returns (Merton and Kou), with standard errors.

Model of one bar's log return ``r`` (bar length ``dt``)::

    r = mu + sigma Z + sum_{i=1}^{N} J_i,   Z ~ N(0, 1),  N ~ Poisson(lam)

with ``mu``, ``sigma``, ``lam`` per bar. The jump sizes ``J_i`` are

- Merton (1976): normal with mean ``m`` and standard deviation ``s``; the density of ``r`` is
  the Poisson mixture ``sum_k Pois(k; lam) N(r; mu + k m, sigma^2 + k s^2)``;
- Kou (2002): double exponential, up with probability ``p`` and rate ``eta1`` (mean 1/eta1),
  down with probability ``1-p`` and rate ``eta2``.

Both mixtures are truncated at ``max_jumps`` jumps per bar (the neglected Poisson tail is below
``lam^(K+1)/(K+1)!``, e.g. 4e-7 for lam = 0.1 and K = 4).

Kou density, derived here. (1) Kou (2002, Management Science 48(8), Appendix B,
Proposition B.1): a sum of n i.i.d. double-exponential jumps has the law of a mixture of
one-signed Gamma sums: ``+Gamma(k, eta1)`` with probability ``P[n,k]`` and ``-Gamma(k, eta2)``
with probability ``Q[n,k]``, k = 1..n, where (w1 = eta1/(eta1+eta2), w2 = eta2/(eta1+eta2))::

    P[n,k] = sum_{i=k}^{n-1} C(n-k-1, i-k) C(n,i) w1^(i-k) w2^(n-i) p^i q^(n-i),  P[n,n] = p^n
    Q[n,k] = sum_{i=k}^{n-1} C(n-k-1, i-k) C(n,i) w1^(n-i) w2^(i-k) p^(n-i) q^i,  Q[n,n] = q^n

(2) The density of ``N(a, v) + Gamma(k, eta)`` at x: completing the square in
``eta^k/(k-1)! int_0^inf y^(k-1) e^(-eta y) phi_v(x - a - y) dy`` gives::

    eta^k / (k-1)! * v^((k-1)/2) * phi((x-a)/sqrt v) * R_{k-1}(z),
    z = (x - a)/sqrt(v) - eta sqrt(v)

with ``R_m(z) = int_0^inf t^m phi(z - t) dt / phi(z)``: ``R_0(z) = Phi(z)/phi(z)`` (a Mills
ratio, computed stably with ``erfcx``), ``R_1 = z R_0 + 1`` and ``R_m = z R_{m-1} + (m-1)
R_{m-2}`` (integration by parts). For k = 1 this is the exponentially modified Gaussian,
``eta exp(eta^2 v/2 - eta (x-a)) Phi(z)`` (Kou 2002, eq. for the small-dt return density).
The down part is the mirror image. Only normal CDFs and exponentials are involved.

Standard errors come from the inverse of a central finite-difference Hessian of the negative
log-likelihood in the natural parameters (the observed information).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import optimize, special

from margin_sim._typing import FloatArray
from margin_sim.errors import DataError

__all__ = [
    "JumpFit",
    "JumpModelName",
    "fit_jump_diffusion",
    "kou_jump_split",
    "kou_logpdf",
    "merton_logpdf",
    "numerical_hessian",
]

JumpModelName = Literal["merton", "kou", "none"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: Natural parameters per model, in vector order (per-bar units).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "none": ("mu", "sigma"),
    "merton": ("mu", "sigma", "lam", "m", "s"),
    "kou": ("mu", "sigma", "lam", "p", "eta1", "eta2"),
}


def _logsumexp_rows(a: FloatArray) -> FloatArray:
    """log(sum(exp(a), axis=0)) for finite-or--inf rows (faster than scipy's general one)."""
    top = np.max(a, axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.sum(np.exp(a - top), axis=0))


def _poisson_log_weights(lam: float, max_jumps: int) -> FloatArray:
    k = np.arange(max_jumps + 1, dtype=np.float64)
    return k * math.log(lam) - lam - special.gammaln(k + 1)


def merton_logpdf(
    r: FloatArray, mu: float, sigma: float, lam: float, m: float, s: float, max_jumps: int = 4
) -> FloatArray:
    """Log density of a Merton jump-diffusion bar return, Poisson mixture truncated at K jumps.

    Parameters
    ----------
    r : ndarray
        Log returns of one bar.
    mu, sigma : float
        Drift and diffusion standard deviation per bar (log units).
    lam : float
        Expected jumps per bar.
    m, s : float
        Mean and standard deviation of one log jump.
    max_jumps : int
        Truncation K of the Poisson sum.

    Returns
    -------
    ndarray
        ``log f(r)``, same shape as ``r``.
    """
    r = np.asarray(r, dtype=np.float64)
    k = np.arange(max_jumps + 1, dtype=np.float64)[:, None]
    var = sigma**2 + k * s**2
    comp = (
        _poisson_log_weights(lam, max_jumps)[:, None]
        - 0.5 * (r[None, :] - mu - k * m) ** 2 / var
        - 0.5 * np.log(var)
        - _LOG_SQRT_2PI
    )
    return _logsumexp_rows(comp)


def kou_jump_split(p: float, eta1: float, eta2: float, n: int) -> tuple[FloatArray, FloatArray]:
    """Kou (2002) Proposition B.1: a sum of n double-exponential jumps as one-signed Gamma sums.

    Returns
    -------
    up, down : ndarray, shape (n,)
        ``up[k-1]`` = P[n,k], probability that the sum is +Gamma(k, eta1); ``down[k-1]`` =
        Q[n,k], probability that it is -Gamma(k, eta2). They add up to 1.
    """
    q = 1.0 - p
    w1 = eta1 / (eta1 + eta2)
    w2 = eta2 / (eta1 + eta2)
    up = np.zeros(n)
    down = np.zeros(n)
    for k in range(1, n):
        i = np.arange(k, n)
        common = special.comb(n - k - 1, i - k) * special.comb(n, i)
        up[k - 1] = np.sum(common * w1 ** (i - k) * w2 ** (n - i) * p**i * q ** (n - i))
        down[k - 1] = np.sum(common * w1 ** (n - i) * w2 ** (i - k) * p ** (n - i) * q**i)
    up[n - 1] = p**n
    down[n - 1] = q**n
    return up, down


def _log_gamma_conv(x: FloatArray, v: float, eta: float, kmax: int) -> FloatArray:
    """log density of N(0, v) + Gamma(k, eta) at x for k = 1..kmax, shape (kmax, n)."""
    sd = math.sqrt(v)
    z = x / sd - eta * sd
    neg = np.flatnonzero(z < 0)
    pos = np.flatnonzero(z >= 0)
    # z < 0: R_0 = Phi(z)/phi(z) = sqrt(pi/2) erfcx(-z/sqrt 2), no underflow or cancellation.
    # z >= 0: J_m = R_m phi(z) directly (J_0 = Phi(z), J_1 = z Phi + phi), all terms positive.
    zn = z[neg]
    zp = z[pos]
    ratios = [math.sqrt(math.pi / 2.0) * special.erfcx(-zn / math.sqrt(2.0))]
    direct = [special.ndtr(zp)]
    if kmax > 1:
        ratios.append(zn * ratios[0] + 1.0)
        direct.append(zp * direct[0] + np.exp(-0.5 * zp**2 - _LOG_SQRT_2PI))
    for m in range(2, kmax):
        ratios.append(zn * ratios[m - 1] + (m - 1) * ratios[m - 2])
        direct.append(zp * direct[m - 1] + (m - 1) * direct[m - 2])
    base_negative = -0.5 * x[neg] ** 2 / v - _LOG_SQRT_2PI
    base_positive = -eta * x[pos] + 0.5 * eta**2 * v
    out = np.empty((kmax, x.size))
    for k in range(1, kmax + 1):
        front = k * math.log(eta) - special.gammaln(k) + 0.5 * (k - 1) * math.log(v)
        out[k - 1, neg] = front + base_negative + np.log(np.maximum(ratios[k - 1], 1e-300))
        out[k - 1, pos] = front + base_positive + np.log(np.maximum(direct[k - 1], 1e-300))
    return out


def kou_logpdf(
    r: FloatArray,
    mu: float,
    sigma: float,
    lam: float,
    p: float,
    eta1: float,
    eta2: float,
    max_jumps: int = 4,
) -> FloatArray:
    """Log density of a Kou double-exponential jump-diffusion bar return (closed form).

    Parameters
    ----------
    r : ndarray
        Log returns of one bar.
    mu, sigma : float
        Drift and diffusion standard deviation per bar.
    lam : float
        Expected jumps per bar.
    p : float
        Probability that a jump is upwards.
    eta1, eta2 : float
        Rates of the upward and downward exponential jump sizes (means 1/eta1, 1/eta2).
    max_jumps : int
        Truncation K of the Poisson sum.

    Notes
    -----
    See the module docstring for the derivation (Kou 2002, Proposition B.1).
    """
    r = np.asarray(r, dtype=np.float64)
    x = r - mu
    v = sigma**2
    logw = _poisson_log_weights(lam, max_jumps)
    weight_up = np.zeros(max_jumps)
    weight_down = np.zeros(max_jumps)
    for n in range(1, max_jumps + 1):
        up, down = kou_jump_split(p, eta1, eta2, n)
        weight_up[:n] += math.exp(logw[n]) * up
        weight_down[:n] += math.exp(logw[n]) * down
    parts = [np.full((1, x.size), logw[0]) + (-0.5 * x**2 / v - 0.5 * math.log(v) - _LOG_SQRT_2PI)]
    with np.errstate(divide="ignore"):
        parts.append(np.log(weight_up)[:, None] + _log_gamma_conv(x, v, eta1, max_jumps))
        parts.append(np.log(weight_down)[:, None] + _log_gamma_conv(-x, v, eta2, max_jumps))
    return _logsumexp_rows(np.vstack(parts))


def numerical_hessian(func: object, theta: FloatArray, steps: FloatArray) -> FloatArray:
    """Central finite-difference Hessian of a scalar function.

    Parameters
    ----------
    func : callable
        ``func(theta) -> float``.
    theta : ndarray
        Point of evaluation.
    steps : ndarray
        Step per coordinate.
    """
    theta = np.asarray(theta, dtype=np.float64)
    n = theta.size
    hess = np.empty((n, n))
    f0 = func(theta)  # type: ignore[operator]
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = steps[i]
        hess[i, i] = (func(theta + ei) - 2 * f0 + func(theta - ei)) / steps[i] ** 2  # type: ignore[operator]
        for j in range(i + 1, n):
            ej = np.zeros(n)
            ej[j] = steps[j]
            value = (
                func(theta + ei + ej)  # type: ignore[operator]
                - func(theta + ei - ej)  # type: ignore[operator]
                - func(theta - ei + ej)  # type: ignore[operator]
                + func(theta - ei - ej)  # type: ignore[operator]
            ) / (4 * steps[i] * steps[j])
            hess[i, j] = hess[j, i] = value
    return hess


@dataclass(frozen=True)
class JumpFit:
    """A fitted jump-diffusion for bar returns (per-bar units).

    Attributes
    ----------
    model : {"merton", "kou", "none"}
    names : tuple of str
        Parameter names, see :data:`PARAMETERS`.
    estimate : ndarray
        Maximum-likelihood estimates, per bar (``lam`` jumps per bar, ``sigma`` per sqrt(bar)).
    covariance : ndarray
        Inverse observed information; NaN where the Hessian is not positive definite
        (e.g. an estimate on a boundary such as ``lam -> 0``).
    log_likelihood : float
    n : int
        Number of returns.
    converged : bool
    max_jumps : int
    at_bound : tuple of str
        Parameters whose estimate sits on an optimiser bound (e.g. the jump rate at its cap of
        ``max_jumps_per_bar``): their standard errors are NaN and the estimate is a limit, not
        a fit.
    """

    model: str
    names: tuple[str, ...]
    estimate: FloatArray
    covariance: FloatArray = field(repr=False)
    log_likelihood: float
    n: int
    converged: bool
    max_jumps: int
    at_bound: tuple[str, ...] = ()

    @property
    def se(self) -> FloatArray:
        """Standard errors of :attr:`estimate`."""
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.diag(self.covariance))
        return np.where([name in self.at_bound for name in self.names], np.nan, se)

    def value(self, name: str) -> float:
        """One estimate by name."""
        return float(self.estimate[self.names.index(name)])

    def stderr(self, name: str) -> float:
        """One standard error by name."""
        return float(self.se[self.names.index(name)])

    @property
    def aic(self) -> float:
        """Akaike information criterion, ``2 k - 2 log L``."""
        return 2 * len(self.names) - 2 * self.log_likelihood

    def log_mgf_one(self) -> float:
        """``log E[exp(r)]`` of one bar: ``mu + sigma^2/2 + lam (E[e^J] - 1)``."""
        e = dict(zip(self.names, self.estimate, strict=True))
        total = e["mu"] + 0.5 * e["sigma"] ** 2
        if self.model == "merton":
            total += e["lam"] * (math.exp(e["m"] + 0.5 * e["s"] ** 2) - 1.0)
        elif self.model == "kou":
            mgf = e["p"] * e["eta1"] / (e["eta1"] - 1.0) + (1 - e["p"]) * e["eta2"] / (
                e["eta2"] + 1.0
            )
            total += e["lam"] * (mgf - 1.0)
        return float(total)


def _unpack(model: str, u: FloatArray, scale: float) -> FloatArray:
    """Unconstrained vector (on returns divided by ``scale``) -> natural parameters."""
    if model == "none":
        return np.array([u[0] * scale, math.exp(u[1]) * scale])
    if model == "merton":
        return np.array(
            [
                u[0] * scale,
                math.exp(u[1]) * scale,
                math.exp(u[2]),
                u[3] * scale,
                math.exp(u[4]) * scale,
            ]
        )
    return np.array(
        [
            u[0] * scale,
            math.exp(u[1]) * scale,
            math.exp(u[2]),
            special.expit(u[3]),
            math.exp(u[4]) / scale,
            math.exp(u[5]) / scale,
        ]
    )


def _pack(
    model: str, theta: FloatArray, scale: float, bounds: list[tuple[float, float]]
) -> FloatArray:
    """Inverse of :func:`_unpack`, clipped into the optimiser's bounds."""
    t = np.asarray(theta, dtype=np.float64)
    if model == "none":
        u = [t[0] / scale, math.log(t[1] / scale)]
    elif model == "merton":
        u = [
            t[0] / scale,
            math.log(t[1] / scale),
            math.log(t[2]),
            t[3] / scale,
            math.log(t[4] / scale),
        ]
    else:
        u = [
            t[0] / scale,
            math.log(t[1] / scale),
            math.log(t[2]),
            special.logit(t[3]),
            math.log(t[4] * scale),
            math.log(t[5] * scale),
        ]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    return np.clip(np.array(u), lo + 1e-9, hi - 1e-9)


def _loglik(model: str, r: FloatArray, theta: FloatArray, max_jumps: int) -> float:
    if model == "none":
        mu, sigma = theta
        return float(np.sum(-0.5 * ((r - mu) / sigma) ** 2 - math.log(sigma) - _LOG_SQRT_2PI))
    if model == "merton":
        return float(np.sum(merton_logpdf(r, *theta, max_jumps=max_jumps)))
    return float(np.sum(kou_logpdf(r, *theta, max_jumps=max_jumps)))


def _valid(model: str, theta: FloatArray, eta1_min: float = 1.0) -> bool:
    if not np.all(np.isfinite(theta)) or theta[1] <= 0:
        return False
    if model == "merton":
        return bool(theta[2] > 0 and theta[4] > 0)
    if model == "kou":
        return bool(theta[2] > 0 and 0 < theta[3] < 1 and theta[4] > eta1_min and theta[5] > 0)
    return True


def fit_jump_diffusion(
    returns: FloatArray,
    model: JumpModelName = "merton",
    *,
    max_jumps: int = 4,
    max_jumps_per_bar: float = 0.5,
    start: JumpFit | None = None,
) -> JumpFit:
    """Fit a jump-diffusion to i.i.d. bar log returns by maximum likelihood.

    Parameters
    ----------
    returns : ndarray
        Log returns of equally long bars.
    model : {"merton", "kou", "none"}
        Jump-size law; ``none`` is the pure diffusion (normal returns).
    max_jumps : int
        Poisson truncation K (jumps per bar).
    max_jumps_per_bar : float
        Upper bound on the jump intensity per bar, so that K jumps cover the Poisson mass.
    start : JumpFit, optional
        A previous fit of the same model (e.g. on an earlier window) used as the only
        starting point: rolling refits then cost a few iterations each.

    Returns
    -------
    JumpFit

    Raises
    ------
    DataError
        With fewer than 50 finite returns, or zero spread.

    Notes
    -----
    The returns are divided by a robust scale (1.4826 x median absolute deviation) before
    optimising; the optimiser (L-BFGS-B on log/logit transforms, several starting points for
    the jump part) therefore sees numbers of order one. The covariance is the inverse of the
    numerical Hessian of minus the log-likelihood in the natural parameters at the optimum.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 50:
        raise DataError(f"returns: need at least 50 bar returns to fit, got {r.size}")
    centre = float(np.median(r))
    scale = 1.4826 * float(np.median(np.abs(r - centre)))
    if not scale > 0:
        scale = float(np.std(r))
    if not scale > 0:
        raise DataError("returns: all returns are equal, nothing to fit")
    x = r / scale
    c0 = centre / scale
    lam_hi = math.log(max_jumps_per_bar)
    if model == "none":
        starts = [np.array([float(np.mean(x)), math.log(float(np.std(x)))])]
        bounds = [(-50.0, 50.0), (-10.0, 5.0)]
    elif model == "merton":
        starts = [
            np.array([c0, 0.0, math.log(lam), 0.0, math.log(size)])
            for lam, size in ((0.02, 5.0), (0.1, 3.0))
        ]
        bounds = [(-50.0, 50.0), (-10.0, 5.0), (-18.0, lam_hi), (-200.0, 200.0), (-6.0, 6.0)]
    elif model == "kou":
        starts = [
            np.array([c0, 0.0, math.log(lam), 0.0, -math.log(size), -math.log(size)])
            for lam, size in ((0.02, 3.0), (0.1, 2.0))
        ]
        eta1_lo = max(-6.0, math.log(scale) + 1e-6)  # up_mean = 1/eta1 < 1: E[e^J] finite
        bounds = [
            (-50.0, 50.0),
            (-10.0, 5.0),
            (-18.0, lam_hi),
            (-8.0, 8.0),
            (eta1_lo, 8.0),
            (-6.0, 8.0),
        ]
    else:
        raise DataError(f"jumps: unknown jump model {model!r} (use merton, kou or none)")
    if start is not None and start.model == model:
        starts = [_pack(model, start.estimate, scale, bounds)]

    def objective(u: FloatArray) -> float:
        theta = _unpack(model, u, 1.0)
        if not _valid(model, theta, eta1_min=scale):  # eta1 > 1 in natural units
            return 1e300
        value = -_loglik(model, x, theta, max_jumps)
        return value if math.isfinite(value) else 1e300

    best: optimize.OptimizeResult | None = None
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        for start in starts:
            result = optimize.minimize(
                objective,
                start,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8},
            )
            if best is None or result.fun < best.fun:
                best = result
    assert best is not None
    theta = _unpack(model, best.x, scale)
    names = PARAMETERS[model]

    def nll(t: FloatArray) -> float:
        if not _valid(model, t):
            return math.nan
        return -_loglik(model, r, t, max_jumps)

    steps = 1e-4 * np.maximum(np.abs(theta), scale * np.ones_like(theta))
    if model == "merton":
        steps[2] = 1e-3 * theta[2]
    elif model == "kou":
        steps[2] = 1e-3 * theta[2]
        steps[3] = 1e-3 * min(theta[3], 1 - theta[3])
        steps[4] = 1e-3 * theta[4]
        steps[5] = 1e-3 * theta[5]
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        hess = numerical_hessian(nll, theta, steps)
    # an estimate pinned to an optimiser bound has no standard error; the others get the
    # covariance conditional on it (the inverse of the free parameters' Hessian block), and the
    # pinned rows and columns are 0 so that functions not involving it keep their SE
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    pinned = (np.abs(best.x - lo) < 1e-6) | (np.abs(best.x - hi) < 1e-6)
    at_bound = tuple(name for name, flag in zip(names, pinned, strict=True) if flag)
    free = ~pinned
    covariance = np.full((len(names), len(names)), np.nan)
    block = hess[np.ix_(free, free)]
    if np.all(np.isfinite(block)) and block.size:
        try:
            if np.linalg.eigvalsh(block).min() > 0:
                covariance = np.zeros((len(names), len(names)))
                covariance[np.ix_(free, free)] = np.linalg.inv(block)
        except np.linalg.LinAlgError:
            pass
    return JumpFit(
        model=model,
        names=names,
        estimate=theta,
        covariance=covariance,
        log_likelihood=-nll(theta),
        n=int(r.size),
        converged=bool(best.success),
        max_jumps=max_jumps,
        at_bound=at_bound,
    )
