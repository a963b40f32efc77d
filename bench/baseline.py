"""The baseline: a plain numpy Euler simulation on 1-minute steps that checks closes only.

This is what a user would write by hand to answer the same question without margin_sim:
simulate every minute of the horizon, compare each minute's close with the liquidation price,
count the paths that crossed. It is deliberately straightforward but not careless: paths are
vectorised in chunks, jumps and wicks are placed sparsely (not by a dense Bernoulli draw per
minute), and the liquidation prices come from the same exchange rules as the engine.

Model simplifications a hand-written script typically makes (documented so the comparison is
fair): funding is ignored; a jump or wick lands on a minute close; a wick's trough lasts one
minute close and then the price sits at its recovered level; the mark price is the last price
with the wick's ``mark_pass_through`` applied to the trough. Crossings between closes are
missed, which is the bias measured against the closed form (Broadie, Glasserman and Kou 1997).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from margin_sim._typing import FloatArray
from margin_sim.exchange import ExchangeRules
from margin_sim.scenario import KouJumps, MertonJumps, Scenario, WickSpec

__all__ = [
    "CloseCheckResult",
    "evaluate_closes",
    "jump_compensator",
    "minute_log_marks",
    "simulate_closes",
]


@dataclass(frozen=True)
class CloseCheckResult:
    """Per-path outcomes of a close-only check, by mode.

    Attributes
    ----------
    liquidated : dict of str to ndarray of bool
        Mode -> (paths,) liquidated at some checked close (isolated: any position).
    ruined : dict of str to ndarray of bool
        Mode -> (paths,) account equity at or below ``ruin.equity_fraction`` of the balance.
    """

    liquidated: dict[str, np.ndarray]
    ruined: dict[str, np.ndarray]

    def summary(self) -> dict[str, dict[str, float]]:
        """Mode -> probabilities of liquidation and ruin with binomial standard errors."""
        out: dict[str, dict[str, float]] = {}
        for mode in self.liquidated:
            row: dict[str, float] = {}
            for name, hits in (("liquidation", self.liquidated[mode]), ("ruin", self.ruined[mode])):
                p = float(np.mean(hits))
                row[f"{name}_probability"] = p
                row[f"{name}_probability_se"] = float(np.sqrt(p * (1 - p) / hits.size))
            out[mode] = row
        return out

    @staticmethod
    def concatenate(parts: list[CloseCheckResult]) -> CloseCheckResult:
        """Join chunk results path-wise."""
        modes = parts[0].liquidated
        return CloseCheckResult(
            {m: np.concatenate([p.liquidated[m] for p in parts]) for m in modes},
            {m: np.concatenate([p.ruined[m] for p in parts]) for m in modes},
        )


def _capped_exponential_mean(mean: float, cap: float) -> float:
    # E[min(X, cap)] for X ~ Exp(mean)
    return mean * (1.0 - np.exp(-cap / mean))


def jump_compensator(jumps: MertonJumps | KouJumps | None) -> float:
    """lambda (E[e^J] - 1): subtracted from the log drift so E[S_T] = S_0 e^(drift T)."""
    if jumps is None or jumps.per_year == 0:
        return 0.0
    if isinstance(jumps, MertonJumps):
        return jumps.per_year * (np.exp(jumps.mean + 0.5 * jumps.std**2) - 1.0)
    eta1, eta2 = 1 / jumps.up_mean, 1 / jumps.down_mean
    mean_exp = jumps.p_up * eta1 / (eta1 - 1) + (1 - jumps.p_up) * eta2 / (eta2 + 1)
    return jumps.per_year * (mean_exp - 1.0)


def _draw_jumps(rng: np.random.Generator, jumps: MertonJumps | KouJumps, size: int) -> FloatArray:
    if isinstance(jumps, MertonJumps):
        return rng.normal(jumps.mean, jumps.std, size)
    up = rng.random(size) < jumps.p_up
    return np.where(
        up, rng.exponential(jumps.up_mean, size), -rng.exponential(jumps.down_mean, size)
    )


def _place(rng: np.random.Generator, per_year: float, years: float, n: int, m: int):
    """Sparse event positions: Poisson count over the chunk, uniform (path, minute) slots."""
    count = rng.poisson(per_year * years * n)
    return rng.integers(0, n, count), rng.integers(0, m, count)


def minute_log_marks(
    scenario: Scenario,
    n: int,
    rng: np.random.Generator,
    step_seconds: float = 60.0,
) -> FloatArray:
    """Euler simulation of ln(mark / initial price) at every close, (n_assets, n, m + 1).

    Parameters
    ----------
    scenario : Scenario
        Market model (vol, drift, Merton/Kou jumps, asset and market-wide wicks, correlation).
    n : int
        Paths in this chunk.
    rng : numpy.random.Generator
        Source of randomness.
    step_seconds : float
        Close interval, seconds (60 = minute closes).
    """
    assets = scenario.asset_names
    years = scenario.horizon_years
    m = round(scenario.horizon / step_seconds)
    dt = years / m
    chol = np.linalg.cholesky(scenario.market.correlation_matrix())
    z = rng.standard_normal((len(assets), n * m))
    z = (chol @ z).reshape(len(assets), n, m)
    excursion = np.zeros((len(assets), n, m))
    market_wick = scenario.market.market_wicks
    if market_wick is not None and market_wick.per_year > 0:
        rows, cols = _place(rng, market_wick.per_year, years, n, m)
        base_depth = np.minimum(
            rng.exponential(market_wick.depth_mean, rows.size), market_wick.depth_max
        )
    for i, name in enumerate(assets):
        asset = scenario.market.assets[name]
        increments = z[i]
        compensator = jump_compensator(asset.jumps)
        wick_specs: list[tuple[WickSpec, np.ndarray, np.ndarray, np.ndarray, float]] = []
        if asset.wicks is not None and asset.wicks.per_year > 0:
            w = asset.wicks
            r, c = _place(rng, w.per_year, years, n, m)
            d = np.minimum(rng.exponential(w.depth_mean, r.size), w.depth_max)
            wick_specs.append(
                (w, r, c, d, w.per_year * _capped_exponential_mean(w.depth_mean, w.depth_max))
            )
        if market_wick is not None and market_wick.per_year > 0:
            beta = market_wick.beta.get(name, 1.0)
            d = np.minimum(beta * base_depth, market_wick.depth_max)
            mean_depth = beta * _capped_exponential_mean(
                market_wick.depth_mean, market_wick.depth_max
            )
            wick_specs.append((market_wick, rows, cols, d, market_wick.per_year * mean_depth))
        for w, _, _, _, rate_depth in wick_specs:
            compensator += -rate_depth * (1 - w.recovery)  # lambda E[(1 - d(1-r)) - 1]
        drift = asset.drift - 0.5 * asset.vol**2 - compensator
        increments *= asset.vol * np.sqrt(dt)
        increments += drift * dt
        if asset.jumps is not None and asset.jumps.per_year > 0:
            r, c = _place(rng, asset.jumps.per_year, years, n, m)
            np.add.at(increments, (r, c), _draw_jumps(rng, asset.jumps, r.size))
        for w, r, c, d, _ in wick_specs:
            residual = np.log1p(-d * (1 - w.recovery))
            np.add.at(increments, (r, c), residual)
            np.add.at(excursion[i], (r, c), np.log1p(-w.mark_pass_through * d) - residual)
    log_mark = np.zeros((len(assets), n, m + 1))
    np.cumsum(z, axis=2, out=log_mark[:, :, 1:])
    log_mark[:, :, 1:] += excursion
    return log_mark


def evaluate_closes(scenario: Scenario, log_mark: FloatArray) -> CloseCheckResult:
    """Check isolated and cross liquidation and ruin at every close of the given paths.

    Parameters
    ----------
    scenario : Scenario
        Account, positions, exchange rules, modes and ruin threshold.
    log_mark : ndarray
        (n_assets, n, m + 1) ln(mark / initial price) at the closes (index 0 = entry).

    Returns
    -------
    CloseCheckResult
        Per-path liquidation and ruin flags for every mode of the scenario.
    """
    rules = ExchangeRules(scenario.exchange)
    assets = list(scenario.asset_names)
    balance = scenario.account.balance
    threshold = scenario.ruin.equity_fraction * balance
    n = log_mark.shape[1]
    upnl, maintenance, iso_alive_upnl = [], [], []
    iso_liquidated = np.zeros(n, dtype=bool)
    wallet_fees = 0.0
    all_fees = 0.0
    iso_losses = np.zeros_like(log_mark[0])
    for pos in scenario.account.positions:
        i = assets.index(pos.asset)
        entry = scenario.market.assets[pos.asset].price
        quantity = pos.notional / entry
        price = entry * np.exp(log_mark[i])
        fee = float(rules.opening_fee(quantity, entry))
        margin = pos.margin - (fee if rules.opening_fee_from_isolated_margin else 0.0)
        all_fees += fee
        wallet_fees += 0.0 if rules.opening_fee_from_isolated_margin else fee
        pnl = pos.sign * quantity * (price - entry)
        upnl.append(pnl)
        maintenance.append(rules.maintenance_margin(pos.asset, quantity, price, entry))
        lp = float(rules.isolated_liquidation_price(pos.asset, pos.sign, quantity, entry, margin))
        if np.isnan(lp):
            hit_so_far = np.zeros_like(price, dtype=bool)
        else:
            hit_so_far = np.logical_or.accumulate(pos.sign * (price - lp) <= 0, axis=1)
        iso_liquidated |= hit_so_far[:, -1]
        iso_alive_upnl.append(np.where(hit_so_far, 0.0, pnl))
        iso_losses += np.where(hit_so_far, margin, 0.0)
    result_liq: dict[str, np.ndarray] = {}
    result_ruin: dict[str, np.ndarray] = {}
    for mode in scenario.modes:
        if mode == "isolated":
            equity = balance - wallet_fees - iso_losses + sum(iso_alive_upnl)
            result_liq[mode] = iso_liquidated
            result_ruin[mode] = np.any(equity <= threshold, axis=1)
        else:
            equity = balance - all_fees + sum(upnl)
            liquidated = np.any(equity - sum(maintenance) <= 0, axis=1)
            result_liq[mode] = liquidated
            result_ruin[mode] = liquidated | np.any(equity <= threshold, axis=1)
    return CloseCheckResult(result_liq, result_ruin)


def simulate_closes(
    scenario: Scenario,
    *,
    paths: int,
    seed: int = 0,
    step_seconds: float = 60.0,
    chunk_paths: int = 100,
) -> CloseCheckResult:
    """Run the baseline: minute-step Euler paths, checked at every close, in chunks.

    Parameters
    ----------
    scenario : Scenario
        The scenario (its own ``paths`` and ``step`` are ignored).
    paths : int
        Number of paths.
    seed : int
        Seed of ``numpy.random.default_rng``.
    step_seconds : float
        Close interval, seconds.
    chunk_paths : int
        Paths per chunk (memory is about ``40 * chunk_paths * horizon / step`` bytes per asset).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, paths, chunk_paths):
        n = min(chunk_paths, paths - start)
        parts.append(evaluate_closes(scenario, minute_log_marks(scenario, n, rng, step_seconds)))
    return CloseCheckResult.concatenate(parts)
