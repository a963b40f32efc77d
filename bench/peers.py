"""Peer library: ``sdepy`` (Merton/Kou jump-diffusion processes), on the same jump-diffusion.

sdepy (https://pypi.org/project/sdepy/, v1.2) integrates Ito SDEs on a time grid, with
``merton_jumpdiff_process`` and ``kou_jumpdiff_process`` among its ready-made processes. A user
of it would generate minute paths with it and then check closes exactly as :mod:`bench.baseline`
does, so only the path generator differs. sdepy has no flash-crash wicks and no mixed-model
correlated assets, so it runs single-asset workloads with the wicks switched off.

sdepy's drift convention: its mean grows at ``mu + lam (E[e^y] - 1)``, so we pass
``mu = drift - lam (E[e^y] - 1)`` to get E[S_T] = S_0 e^(drift T) as the scenario says.
"""

from __future__ import annotations

import numpy as np

from bench.baseline import CloseCheckResult, evaluate_closes, jump_compensator
from margin_sim._typing import FloatArray
from margin_sim.scenario import KouJumps, Scenario

__all__ = ["sdepy_available", "sdepy_log_marks", "simulate_sdepy"]


def sdepy_available() -> bool:
    """True when sdepy can be imported (it is in the ``bench`` extra only)."""
    try:
        import sdepy  # noqa: F401
    except ImportError:
        return False
    return True


def sdepy_log_marks(
    scenario: Scenario, n: int, rng: np.random.Generator, step_seconds: float = 60.0
) -> FloatArray:
    """ln(price / initial) at every close from sdepy, (1, n, m + 1); single asset, no wicks."""
    import sdepy

    if len(scenario.asset_names) != 1:
        raise ValueError("the sdepy peer runs single-asset workloads only")
    asset = scenario.market.assets[scenario.asset_names[0]]
    m = round(scenario.horizon / step_seconds)
    timeline = np.linspace(0.0, scenario.horizon_years, m + 1)
    jumps = asset.jumps
    mu = asset.drift - jump_compensator(jumps)
    common = {"paths": n, "rng": rng, "x0": 1.0, "mu": mu, "sigma": asset.vol}
    if jumps is None or jumps.per_year == 0:
        process = sdepy.lognorm_process(**common)
    elif isinstance(jumps, KouJumps):
        process = sdepy.kou_jumpdiff_process(
            **common,
            lam=jumps.per_year,
            a=jumps.up_mean,
            b=jumps.down_mean,
            pa=jumps.p_up,
        )
    else:
        process = sdepy.merton_jumpdiff_process(
            **common, lam=jumps.per_year, a=jumps.mean, b=jumps.std
        )
    values = np.asarray(process(timeline))  # (m + 1, n)
    return np.log(values.T)[None, :, :]


def simulate_sdepy(
    scenario: Scenario,
    *,
    paths: int,
    seed: int = 0,
    step_seconds: float = 60.0,
    chunk_paths: int = 100,
) -> CloseCheckResult:
    """sdepy minute paths checked at every close, in chunks (see :func:`simulate_closes`)."""
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, paths, chunk_paths):
        n = min(chunk_paths, paths - start)
        parts.append(evaluate_closes(scenario, sdepy_log_marks(scenario, n, rng, step_seconds)))
    return CloseCheckResult.concatenate(parts)
