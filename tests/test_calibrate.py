"""Jump-diffusion MLE, wick estimation and correlation recover known parameters."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import integrate, stats

from margin_sim.calibrate import calibrate_market, return_correlation
from margin_sim.cli import main
from margin_sim.data import Candles, _find_gaps
from margin_sim.jump_mle import fit_jump_diffusion, kou_jump_split, kou_logpdf, merton_logpdf
from margin_sim.scenario import Market
from margin_sim.wicks_estimate import estimate_wicks

MARKET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market"


def _kou_returns(
    rng: np.random.Generator,
    n: int,
    mu: float,
    sigma: float,
    lam: float,
    p: float,
    eta1: float,
    eta2: float,
) -> np.ndarray:
    counts = rng.poisson(lam, n)
    total = counts.sum()
    up = rng.random(total) < p
    sizes = np.where(up, rng.exponential(1 / eta1, total), -rng.exponential(1 / eta2, total))
    jumps = np.zeros(n)
    np.add.at(jumps, np.repeat(np.arange(n), counts), sizes)
    return mu + sigma * rng.standard_normal(n) + jumps


def test_kou_split_is_a_distribution_with_the_right_mean() -> None:
    p, eta1, eta2 = 0.3, 40.0, 25.0
    for n in range(1, 6):
        up, down = kou_jump_split(p, eta1, eta2, n)
        k = np.arange(1, n + 1)
        assert math.isclose(up.sum() + down.sum(), 1.0, rel_tol=1e-12)
        mean = np.sum(up * k / eta1) - np.sum(down * k / eta2)
        assert math.isclose(mean, n * (p / eta1 - (1 - p) / eta2), rel_tol=1e-10)


def test_kou_density_matches_numerical_convolution() -> None:
    # two jumps exactly: N(0, v) * (J1 + J2), J double exponential; oracle = quadrature
    sigma, p, eta1, eta2 = 0.01, 0.4, 30.0, 20.0

    def jump_pdf(y: float) -> float:
        return p * eta1 * math.exp(-eta1 * y) if y >= 0 else (1 - p) * eta2 * math.exp(eta2 * y)

    def two_jump_pdf(y: float) -> float:
        return integrate.quad(lambda u: jump_pdf(u) * jump_pdf(y - u), -1, 1, points=[0, y])[0]

    for x in (-0.08, -0.01, 0.0, 0.03):
        oracle = integrate.quad(
            lambda y, x=x: two_jump_pdf(y) * stats.norm.pdf(x - y, scale=sigma),
            -0.6,
            0.6,
            points=[x],
            limit=200,
        )[0]
        lam = 2.0
        # density with K=2 minus K=1 isolates the Poisson(2) term: w2 * f2(x)
        f2 = np.exp(kou_logpdf(np.array([x]), 0.0, sigma, lam, p, eta1, eta2, max_jumps=2))
        f1 = np.exp(kou_logpdf(np.array([x]), 0.0, sigma, lam, p, eta1, eta2, max_jumps=1))
        w2 = stats.poisson.pmf(2, lam)
        assert math.isclose(float(f2[0] - f1[0]) / w2, oracle, rel_tol=1e-6)


def test_densities_integrate_to_one() -> None:
    for logpdf, args in (
        (merton_logpdf, (0.0, 0.01, 0.3, -0.02, 0.03)),
        (kou_logpdf, (0.0, 0.01, 0.3, 0.4, 30.0, 20.0)),
    ):
        total = integrate.quad(
            lambda x, f=logpdf, a=args: float(np.exp(f(np.array([x]), *a, max_jumps=6))[0]),
            -1,
            1,
            points=[0],
            limit=200,
        )[0]
        assert math.isclose(total, 1.0, abs_tol=1e-6)


def _check_within(fit: object, truth: dict[str, float], k: float = 4.0) -> None:
    for name, value in truth.items():
        est, se = fit.value(name), fit.stderr(name)  # type: ignore[attr-defined]
        assert math.isfinite(se) and se > 0, name
        assert abs(est - value) < k * se, f"{name}: {est:.5g} vs {value:.5g} (SE {se:.3g})"


def test_merton_mle_recovers_parameters() -> None:
    rng = np.random.default_rng(11)
    n, truth = 8000, {"mu": 1e-4, "sigma": 0.005, "lam": 0.04, "m": -0.012, "s": 0.02}
    counts = rng.poisson(truth["lam"], n)
    r = (
        truth["mu"]
        + truth["sigma"] * rng.standard_normal(n)
        + counts * truth["m"]
        + np.sqrt(counts) * truth["s"] * rng.standard_normal(n)
    )
    fit = fit_jump_diffusion(r, "merton", max_jumps=3)
    assert fit.converged
    _check_within(fit, truth)


def test_kou_mle_recovers_parameters() -> None:
    rng = np.random.default_rng(12)
    truth = {"mu": 0.0, "sigma": 0.005, "lam": 0.05, "p": 0.4, "eta1": 80.0, "eta2": 50.0}
    r = _kou_returns(rng, 8000, *truth.values())
    fit = fit_jump_diffusion(r, "kou", max_jumps=3)
    assert fit.converged
    _check_within(fit, truth)


def _synthetic_minutes(
    rng: np.random.Generator,
    days: int,
    vol: float,
    wicks_per_year: float,
    depth_mean: float,
    recovery: float,
    start: str = "2024-01-01",
) -> tuple[Candles, int]:
    """1m OHLC of a GBM with exact bridge extremes, plus wicks inserted inside bars."""
    n = days * 1440
    dt = 1 / 525_600
    sd = vol * math.sqrt(dt)
    log_close = np.cumsum(rng.normal(-0.5 * sd**2, sd, n))
    log_open = np.r_[0.0, log_close[:-1]]
    gap = (log_close - log_open) ** 2
    # extremes of a Brownian bridge between the end points (exact sampling)
    low = 0.5 * (log_open + log_close - np.sqrt(gap - 2 * sd**2 * np.log(rng.random(n))))
    high = 0.5 * (log_open + log_close + np.sqrt(gap - 2 * sd**2 * np.log(rng.random(n))))
    n_wicks = rng.poisson(wicks_per_year * n * dt)
    bars = rng.choice(np.arange(100, n), n_wicks, replace=False)
    depth = np.minimum(rng.exponential(depth_mean, n_wicks), 0.5)
    residual = np.log1p(-depth * (1 - recovery))
    shift = np.zeros(n)
    np.add.at(shift, bars, residual)
    shift = np.cumsum(shift)  # the unrecovered part is permanent from the wick bar on
    before = np.r_[0.0, shift[:-1]]
    log_open, log_close = log_open + before, log_close + shift
    low, high = low + before, high + np.maximum(before, shift)
    low = np.minimum(low, log_close)
    low[bars] = np.minimum(low[bars], log_open[bars] + np.log1p(-depth))
    index = pd.date_range(start, periods=n, freq="1min", tz="UTC", unit="ns")
    frame = pd.DataFrame(
        {
            "open": np.exp(log_open),
            "high": np.exp(high),
            "low": np.exp(low),
            "close": np.exp(log_close),
            "volume": 1.0,
        },
        index=index,
    )
    interval = pd.Timedelta(minutes=1)
    return Candles(frame, interval, _find_gaps(index, interval), index[:0], "synthetic"), n_wicks


def test_wick_rate_depth_and_recovery_recovered() -> None:
    rng = np.random.default_rng(5)
    depth_mean, recovery, min_depth = 0.03, 0.9, 0.01
    candles, _ = _synthetic_minutes(rng, 60, 0.6, 500.0, depth_mean, recovery)
    est = estimate_wicks(candles, min_depth=min_depth, recovery_window="1min")
    # wicks deeper than min_depth arrive at rate 500 exp(-d0/mean) per year
    expected_rate = 500.0 * math.exp(-min_depth / depth_mean)
    assert abs(est.per_year - expected_rate) < 4 * math.sqrt(expected_rate * est.years) / est.years
    # memoryless depths: the mean excess is the exponential mean
    assert abs(est.depth_excess_mean - depth_mean) < 4 * est.depth_excess_mean_se
    assert abs(est.recovery - recovery) < 0.05
    # no false positives without wicks
    calm, _ = _synthetic_minutes(np.random.default_rng(6), 20, 0.6, 0.0, depth_mean, recovery)
    assert estimate_wicks(calm, min_depth=min_depth).count == 0


def test_correlation_recovered() -> None:
    rng = np.random.default_rng(3)
    rho, n = 0.7, 3000
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n) * 0.01
    index = pd.date_range("2024-01-01", periods=n + 1, freq="1h", tz="UTC", unit="ns")
    out = []
    for column in range(2):
        close = 100 * np.exp(np.r_[0.0, np.cumsum(z[:, column])])
        frame = pd.DataFrame(
            {"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index
        )
        out.append(
            Candles(
                frame,
                pd.Timedelta(hours=1),
                _find_gaps(index, pd.Timedelta(hours=1)),
                index[:0],
                f"a{column}",
            )
        )
    estimate, se, used = return_correlation(out[0], out[1], bar="1h", clip_sigmas=math.inf)
    assert used == n and abs(estimate - rho) < 4 * se


needs_market = pytest.mark.skipif(not MARKET.is_dir(), reason=f"market data not at {MARKET}")


@needs_market
@pytest.mark.requires_market_data
def test_real_market_block_validates_and_cli_writes_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [
        MARKET / "BTCUSDT_spot_1m_20211111_20211211.csv.gz",
        MARKET / "ETHUSDT_spot_1m_20211111_20211211.csv.gz",
    ]
    calibration = calibrate_market(files, bar="1h")
    market = Market.model_validate(calibration.market())
    assert set(market.assets) == {"BTC", "ETH"}
    assert 0.0 < market.correlation["BTC-ETH"] < 1.0
    report = calibration.report()
    assert report["se"].notna().sum() > 10
    out = tmp_path / "market.yaml"
    assert main(["calibrate", str(files[0]), "--asset", "BTC", "--out", str(out)]) == 0
    block = yaml.safe_load(out.read_text())["market"]
    Market.model_validate(block)
    assert "vol" in capsys.readouterr().out


def test_cli_bad_file_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["calibrate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "timestamp" in err


def test_an_estimate_on_its_bound_is_flagged_and_has_no_standard_error() -> None:
    """Returns with a jump in almost every bar, fitted with the intensity capped far below
    that: the intensity ends on its cap, which is a limit, not an estimate."""
    from margin_sim.jump_mle import fit_jump_diffusion

    rng = np.random.default_rng(5)
    n = 4000
    jumps = rng.poisson(0.8, n)
    returns = 0.002 * rng.standard_normal(n) + rng.normal(0.0, 0.01, n) * np.sqrt(jumps)
    fit = fit_jump_diffusion(returns, "merton", max_jumps_per_bar=0.01)
    assert fit.at_bound == ("lam",)
    assert math.isnan(fit.se[fit.names.index("lam")])
    assert np.isfinite(fit.se[fit.names.index("sigma")])
    rare = 0.002 * rng.standard_normal(n) + rng.normal(0.0, 0.01, n) * np.sqrt(rng.poisson(0.05, n))
    free = fit_jump_diffusion(rare, "merton")
    assert free.at_bound == ()
    assert np.all(np.isfinite(free.se))


@pytest.mark.parametrize("model", ["merton", "kou"])
def test_mle_recovers_the_parameters_of_the_projects_own_paths(model: str) -> None:
    """Fit the daily grid returns of margin_sim.market.simulate_paths (the paths the engine
    evaluates) and find the scenario's jump parameters back within 4 standard errors."""
    import margin_sim as ms
    from margin_sim.market import simulate_paths

    jumps = (
        {"model": "merton", "per_year": 40, "mean": -0.04, "std": 0.03}
        if model == "merton"
        else {"model": "kou", "per_year": 40, "p_up": 0.4, "up_mean": 0.03, "down_mean": 0.05}
    )
    scenario = ms.load_scenario(
        {
            "paths": 400,
            "horizon": "30d",
            "step": "1d",
            "seed": 21,
            "market": {"assets": {"X": {"price": 100.0, "vol": 0.5, "jumps": jumps}}},
            "exchange": "binance-usdm",
            "account": {
                "balance": 1000,
                "positions": [{"asset": "X", "side": "long", "leverage": 2, "margin": 100}],
            },
        }
    )
    returns = np.concatenate(
        [np.diff(chunk.log_price[0], axis=1).ravel() for chunk in simulate_paths(scenario)]
    )
    fit = fit_jump_diffusion(returns, model, max_jumps=4)
    assert fit.converged
    dt = 1 / 365
    truth = {"sigma": 0.5 * math.sqrt(dt), "lam": 40 * dt}
    if model == "merton":
        truth |= {"m": -0.04, "s": 0.03}
    else:
        truth |= {"p": 0.4, "eta1": 1 / 0.03, "eta2": 1 / 0.05}
    for name, value in truth.items():
        estimate, se = fit.value(name), fit.stderr(name)
        assert math.isfinite(se) and se > 0, name
        assert abs(estimate - value) < 4 * se, (name, estimate, value, se)
