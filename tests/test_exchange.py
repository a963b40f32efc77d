"""Exchange rules: published check values, hand-worked cases, tiers, errors and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import brentq

import margin_sim as ms
from margin_sim.cli import main
from margin_sim.errors import ExchangeError, MarginSimError, ScenarioError
from margin_sim.exchange import ExchangeRules, resolve_exchange
from margin_sim.scenario import PARAMS_DIR, ExchangeSpec, load_exchange

SHIPPED = sorted(path.stem for path in (PARAMS_DIR / "exchanges").glob("*.yaml"))

# Binance "Liquidation Price Calculation" cross example (DESIGN.md section 4).
BINANCE_WALLET = 1_535_443.01
BINANCE_BTC = {
    "side": "long",
    "quantity": 109.488,
    "entry_price": 32_481.98,
    "mark_price": 31_967.27,
    "mmr": 0.025,
    "maint_amount": 16_300.0,
}
BINANCE_ETH = {
    "side": "long",
    "quantity": 3_683.979,
    "entry_price": 1_456.84,
    "mark_price": 1_335.18,
    "mmr": 0.10,
    "maint_amount": 135_365.0,
}


def _cross(position: dict, other: dict) -> float:
    return ms.liquidation_price(
        position["side"],
        position["entry_price"],
        position["quantity"],
        BINANCE_WALLET,
        exchange="binance-usdm",
        mode="cross",
        mmr=position["mmr"],
        maint_amount=position["maint_amount"],
        others=[other],
    )


# --------------------------------------------------------------------- published values


def test_binance_cross_example_to_the_cent() -> None:
    assert round(_cross(BINANCE_BTC, BINANCE_ETH), 2) == 26_316.89
    assert round(_cross(BINANCE_ETH, BINANCE_BTC), 2) == 1_153.26


@pytest.mark.parametrize(
    ("side", "entry", "leverage", "expected"),
    [
        ("long", 20_000.0, 50, 19_700.0),
        ("long", 10_000.0, 50, 9_850.0),
        ("short", 8_000.0, 40, 8_160.0),
    ],
)
@pytest.mark.parametrize("override", [True, False])
def test_bybit_isolated_examples_to_the_cent(
    side: str, entry: float, leverage: float, expected: float, override: bool
) -> None:
    extra = {"mmr": 0.005} if override else {}  # the shipped table's first tier is 0.5% too
    price = ms.liquidation_price(side, entry, 1.0, entry / leverage, exchange="bybit", **extra)
    assert round(price, 2) == expected


def test_okx_isolated_long_worked_by_hand() -> None:
    # 1 BTC long at 20,000 with 400 USDT isolated margin (50x); OKX tier 1 MMR 0.4%, taker
    # fee 0.05%. Liquidation when 400 + (P - 20,000) = P * (0.004 + 0.0005):
    #   P (1 - 0.0045) = 19,600  ->  P = 19,600 / 0.9955 = 19,688.5987...
    price = ms.liquidation_price("long", 20_000, 1, 400, exchange="okx")
    assert price == pytest.approx(19_600 / 0.9955, rel=1e-12)
    assert round(price, 2) == 19_688.60
    # The fee is part of the requirement: a larger taker fee liquidates earlier.
    higher = ms.liquidation_price("long", 20_000, 1, 400, exchange="okx", taker_fee=0.001)
    assert higher == pytest.approx(19_600 / (1 - 0.005), rel=1e-12)


def test_okx_isolated_short_worked_by_hand() -> None:
    # 2 BTC short at 30,000 with 1,500 margin (40x): 1,500 - 2 (P - 30,000) = 2 P (0.0045)
    #   -> P = 61,500 / 2.009 = 30,612.2449...
    price = ms.liquidation_price("short", 30_000, 2, 1_500, exchange="okx")
    assert price == pytest.approx(61_500 / 2.009, rel=1e-12)


def test_hyperliquid_takes_the_opening_fee_from_isolated_margin() -> None:
    # 1 BTC long at 50,000 with 2,500 margin (20x); BTC tier 40x -> rate 1/80; opening fee
    # 50,000 * 0.045% = 22.5 leaves 2,477.5: 2,477.5 + (P - 50,000) = P / 80.
    price = ms.liquidation_price("long", 50_000, 1, 2_500, exchange="hyperliquid")
    assert price == pytest.approx((50_000 - 2_477.5) / (1 - 1 / 80), rel=1e-12)
    cross = ms.liquidation_price("long", 50_000, 1, 2_500, exchange="hyperliquid", mode="cross")
    assert cross == pytest.approx((50_000 - 2_500) / (1 - 1 / 80), rel=1e-12)


def test_maintenance_margin_by_hand() -> None:
    assert ms.maintenance_margin(1, 60_000) == pytest.approx(60_000 * 0.005 - 50)
    # Bybit's requirement is on the entry value: the mark does not move it.
    assert ms.maintenance_margin(1, 15_000, entry_price=20_000, exchange="bybit") == (
        pytest.approx(100.0)
    )
    many = ms.maintenance_margin(np.array([0.5, 1.0]), 60_000)
    assert many == pytest.approx([30_000 * 0.004, 250.0])


def test_bankruptcy_prices_by_hand() -> None:
    assert ms.bankruptcy_price("long", 20_000, 1, 400, exchange="bybit") == 19_600.0
    assert ms.bankruptcy_price("short", 8_000, 1, 200, exchange="okx") == 8_200.0
    assert math.isnan(ms.bankruptcy_price("long", 20_000, 1, 20_000))


# ---------------------------------------------------------------------- tier selection


def _brute_force(
    rules: ExchangeRules, asset: str, sign: int, q: float, ep: float, m: float
) -> float:
    """Root of margin balance - requirement by bracketing (an independent oracle)."""

    def buffer(price: float) -> float:
        return float(rules.liquidation_buffer(asset, sign, q, ep, m, price))

    if sign > 0:
        low, high = 1e-9 * ep, ep * 4
        if buffer(low) > 0:
            return math.nan
    else:
        low, high = ep / 4, ep * 100
    return brentq(buffer, low, high, xtol=1e-12, rtol=1e-14)


@pytest.mark.parametrize("exchange", SHIPPED)
def test_liquidation_price_matches_a_bracketing_root_finder(exchange: str) -> None:
    rules = ExchangeRules.from_name(exchange)
    rng = np.random.default_rng(11)
    for _ in range(60):
        asset = str(rng.choice(["BTC", "ETH", "SOL"]))
        sign = int(rng.choice([1, -1]))
        ep = float(rng.uniform(1_000, 100_000))
        notional = float(10 ** rng.uniform(3, 9.3))  # crosses most tier boundaries
        leverage = float(rng.uniform(1.0, 60.0))
        q = notional / ep
        margin = notional / leverage
        got = float(rules.isolated_liquidation_price(asset, sign, q, ep, margin))
        want = _brute_force(rules, asset, sign, q, ep, margin)
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(want, rel=1e-9)


def test_tier_is_the_one_at_the_liquidation_price() -> None:
    # 2.6 BTC at 20,000 = 52,000 notional is in Binance's 0.5% tier, but at the liquidation
    # price the notional is below 50,000: the 0.4% tier (cum 0) applies there.
    rules = ExchangeRules.from_name("binance-usdm")
    price = float(rules.isolated_liquidation_price("BTC", 1, 2.6, 20_000, 2_600))
    assert 2.6 * price < 50_000
    assert price == pytest.approx((52_000 - 2_600) / (2.6 * (1 - 0.004)), rel=1e-12)


def test_no_price_liquidates_a_long_at_one_x_but_a_short_always() -> None:
    assert math.isnan(ms.liquidation_price("long", 20_000, 1, 20_000))
    assert math.isnan(ms.liquidation_price("long", 20_000, 1, 30_000, exchange="okx"))
    assert math.isfinite(ms.liquidation_price("short", 20_000, 1, 1e9))


def test_vectorised_over_margin_and_entry() -> None:
    rules = ExchangeRules.from_name("binance-usdm")
    margins = np.linspace(100, 30_000, 7)[:, None]
    entries = np.array([15_000.0, 20_000.0, 25_000.0])
    prices = rules.isolated_liquidation_price("BTC", 1, 1.3, entries, margins)
    assert prices.shape == (7, 3)
    for i in range(7):
        for j in range(3):
            one = rules.isolated_liquidation_price("BTC", 1, 1.3, entries[j], margins[i, 0])
            np.testing.assert_equal(prices[i, j], one)
    bankrupt = rules.bankruptcy_price("BTC", -1, 1.3, entries, margins)
    np.testing.assert_allclose(bankrupt, entries + margins / 1.3, rtol=1e-15)


def test_is_liquidated_agrees_with_the_liquidation_price() -> None:
    rules = ExchangeRules.from_name("okx")
    price = float(rules.isolated_liquidation_price("BTC", 1, 1, 20_000, 400))
    marks = np.array([price * (1 + 1e-9), price, price * (1 - 1e-9)])
    flags = rules.is_liquidated("BTC", 1, 1, 20_000, 400, marks)
    assert flags.tolist() == [False, True, True]


@pytest.mark.parametrize("exchange", SHIPPED)
def test_maintenance_rate_is_the_derivative(exchange: str) -> None:
    rules = ExchangeRules.from_name(exchange)
    q, ep = 2.0, 30_000.0
    marks = np.array([10_000.0, 30_000.0, 2.1e6, 4.3e7])  # off the tier boundaries
    step = 1e-3
    slope = (
        rules.maintenance_margin("BTC", q, marks + step, ep)
        - rules.maintenance_margin("BTC", q, marks - step, ep)
    ) / (2 * step * q)
    np.testing.assert_allclose(rules.maintenance_rate("BTC", q, marks, ep), slope, atol=1e-6)


# -------------------------------------------------------------------------- the tables


@pytest.mark.parametrize("exchange", SHIPPED)
def test_shipped_tables_are_continuous_at_every_boundary(exchange: str) -> None:
    rules = ExchangeRules.from_name(exchange)
    assert rules.spec.tiers, "an exchange file without tiers"
    for asset in rules.spec.tiers:
        table = rules.tiers(asset)
        assert table.floors[0] == 0
        np.testing.assert_array_equal(table.floors[1:], table.caps[:-1])
        for floor in table.floors[1:]:
            below = rules.maintenance_margin(asset, 1.0, floor * (1 - 1e-12), floor * (1 - 1e-12))
            at = rules.maintenance_margin(asset, 1.0, floor, floor)
            assert below == pytest.approx(at, rel=1e-9), f"{exchange} {asset} at {floor:g}"
        # the spec's cum (validated by the scenario model) continues the tiers' own mmr
        cums = np.array([tier.cum for tier in rules.spec.tier_table(asset)])
        mmrs = np.array([tier.mmr for tier in rules.spec.tier_table(asset)])
        for k in range(1, len(cums)):
            left = table.floors[k] * mmrs[k - 1] - cums[k - 1]
            assert table.floors[k] * mmrs[k] - cums[k] == pytest.approx(left, rel=1e-9)


def test_hyperliquid_file_mmr_is_half_the_initial_margin_at_max_leverage() -> None:
    spec = ExchangeRules.from_name("hyperliquid").spec
    for table in spec.tiers.values():
        for tier in table:
            assert tier.mmr == pytest.approx(1 / (2 * tier.max_leverage), rel=1e-12)


def test_shipped_files_state_a_source_and_a_date() -> None:
    for name in SHIPPED:
        text = (PARAMS_DIR / "exchanges" / f"{name}.yaml").read_text(encoding="utf-8")
        assert "as_of:" in text
        assert text.lstrip().startswith("#")
        assert ExchangeRules.from_name(name).spec.as_of is not None


def test_a_cum_that_breaks_continuity_is_refused() -> None:
    data = load_exchange("binance-usdm")
    data["tiers"]["BTC"][1]["cum"] = 49.0
    with pytest.raises(ScenarioError, match="continuity"):
        ExchangeRules.from_mapping(data)


# --------------------------------------------------------------------- inputs and types


def test_exchange_given_as_name_spec_rules_or_mapping() -> None:
    rules = ExchangeRules.from_name("bybit")
    spec = ExchangeSpec.model_validate(load_exchange("bybit"))
    for exchange in ("bybit", spec, rules, load_exchange("bybit")):
        assert ms.liquidation_price("long", 20_000, 1, 400, exchange=exchange) == 19_700.0
    assert resolve_exchange(rules) is rules
    assert rules.opening_fee_from_isolated_margin is False
    assert ExchangeRules.from_name("hyperliquid").opening_fee_from_isolated_margin is True
    assert rules.funding.interval == 8 * 3600


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"quantity": -1}, ExchangeError, "quantity"),
        ({"side": "sideways"}, ExchangeError, "side"),
        ({"exchange": "nope"}, ScenarioError, "unknown exchange"),
        ({"exchange": 3}, ExchangeError, "exchange"),
        ({"mode": "portfolio"}, ExchangeError, "mode"),
        ({"entry_price": math.nan}, ExchangeError, "entry_price"),
        ({"wallet": -5}, ExchangeError, "wallet"),
        ({"maint_amount": 10}, ExchangeError, "mmr"),
        ({"mmr": 1.5}, ExchangeError, "mmr"),
        ({"others": [{"side": "long"}]}, ExchangeError, "mode='cross'"),
        (
            {"mode": "cross", "others": [{"side": "long", "quantity": 1}]},
            ExchangeError,
            "entry_price",
        ),
        ({"mode": "cross", "others": [dict(BINANCE_ETH, colour=1)]}, ExchangeError, "colour"),
    ],
)
def test_bad_input_raises_one_clear_line(kwargs: dict, error: type, text: str) -> None:
    call = {"side": "long", "entry_price": 20_000, "quantity": 1, "wallet": 400}
    call.update(kwargs)
    with pytest.raises(error, match=text) as caught:
        ms.liquidation_price(
            call.pop("side"), call.pop("entry_price"), call.pop("quantity"), call.pop("wallet"),
            **call,
        )  # fmt: skip
    assert isinstance(caught.value, MarginSimError)
    assert "\n" not in str(caught.value)


def test_others_without_mmr_use_the_tier_table() -> None:
    other = {"side": "short", "quantity": 1.0, "entry_price": 3_000.0, "mark_price": 3_100.0}
    rules = ExchangeRules.from_name("binance-usdm")
    price = ms.liquidation_price(
        "long", 20_000, 1, 1_000, mode="cross", others=[dict(other, asset="ETH")]
    )
    margin = 1_000 - 100.0 - float(rules.maintenance_margin("ETH", 1.0, 3_100.0, 3_000.0))
    assert price == float(rules.isolated_liquidation_price("BTC", 1, 1, 20_000, margin))


# -------------------------------------------------------------------------------- CLI


def test_cli_prints_a_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["liq-price", "--exchange", "bybit", "--side", "long", "--entry", "20000", "--qty", "1",
         "--wallet", "400"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "liquidation price 19,700.00" in out
    assert "bankruptcy price 19,600.00" in out
    assert "-1.50%" in out


def test_cli_json_cross_with_others(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["liq-price", "--side", "long", "--entry", "32481.98", "--qty", "109.488", "--wallet",
         "1535443.01", "--mode", "cross", "--mmr", "0.025", "--maint-amount", "16300",
         "--other", "long:3683.979:1456.84:1335.18:0.1:135365", "--json"]
    )  # fmt: skip
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert round(payload["liquidation_price"], 2) == 26_316.89
    assert payload["distance_pct"] == pytest.approx((26_316.893 / 32_481.98 - 1) * 100, abs=1e-3)


def test_cli_nan_is_null_in_json_and_words_in_text(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["liq-price", "--side", "long", "--entry", "100", "--qty", "1", "--wallet", "200"]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["liquidation_price"] is None
    assert main(args) == 0
    assert "no price liquidates" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra",
    [["--side", "up"], ["--other", "long:1:2"], ["--other", "long:x:1:1"], ["--exchange", "nope"]],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["liq-price", "--side", "long", "--entry", "100", "--qty", "1", "--wallet", "20",
            "--mode", "cross"]  # fmt: skip
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("margin-sim: error:") and err.count("\n") == 1


def test_installed_script_runs() -> None:
    script = Path(sys.executable).with_name("margin-sim")
    if not script.exists():
        pytest.skip(f"{script} is not installed")
    done = subprocess.run(
        [str(script), "liq-price", "--exchange", "okx", "--side", "short", "--entry", "30000",
         "--qty", "2", "--wallet", "1500", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["liquidation_price"] == pytest.approx(61_500 / 2.009)


def test_a_short_that_every_price_liquidates_has_price_zero() -> None:
    # cross: the other long has lost 1,000 of a 100 wallet, more than the short's entry value
    other = {"side": "long", "quantity": 10.0, "entry_price": 200.0, "mark_price": 100.0,
             "mmr": 0.01}  # fmt: skip
    price = ms.liquidation_price("short", 50, 1, 100, mode="cross", others=[other])
    assert price == 0.0
    assert ms.bankruptcy_price("short", 50, 1, 100, mode="cross", others=[other]) == 0.0


# ----------------------------------------------------------------------- fees and funding


def test_fees_by_hand() -> None:
    rules = ExchangeRules.from_name("binance-usdm")
    assert float(rules.initial_margin(2, 30_000, 10)) == pytest.approx(6_000.0)
    assert float(rules.opening_fee(2, 30_000)) == pytest.approx(60_000 * 0.0005)
    assert float(rules.closing_fee(2, 25_000)) == pytest.approx(50_000 * 0.0005)
    assert float(rules.liquidation_fee_amount(2, 25_000)) == pytest.approx(50_000 * 0.005)


def test_funding_times_follow_the_interval() -> None:
    np.testing.assert_allclose(
        ExchangeRules.from_name("bybit").funding_times(86_400.0), [28_800, 57_600, 86_400]
    )
    assert len(ExchangeRules.from_name("hyperliquid").funding_times(86_400.0)) == 24


def test_funding_paid_from_isolated_margin_moves_the_liquidation_price() -> None:
    rules = ExchangeRules.from_name("binance-usdm")
    rates = rules.funding_rates(1, 3)
    np.testing.assert_array_equal(rates, np.full((1, 3), 0.0001))
    paid = rules.funding_payment(1, 1.0, 20_000.0, rates).sum()
    assert paid == pytest.approx(3 * 2.0)  # a long pays 20,000 * 0.01% per interval
    assert float(rules.funding_payment(-1, 1.0, 20_000.0, 0.0001)) == pytest.approx(-2.0)
    before = float(rules.isolated_liquidation_price("BTC", 1, 1.0, 20_000, 2_000))
    after = float(rules.isolated_liquidation_price("BTC", 1, 1.0, 20_000, 2_000 - paid))
    # same 0.4% tier: the price moves by the payment / (Q (1 - mmr))
    assert after - before == pytest.approx(paid / (1 - 0.004), rel=1e-9)


def test_random_funding_model_mean_and_spread() -> None:
    data = load_exchange("binance-usdm")
    data["funding"] = {"interval": "8h", "rate": 0.0001, "model": "random", "std": 0.0003}
    rules = ExchangeRules.from_mapping(data)
    rates = rules.funding_rates(2_000, 30, np.random.default_rng(5))
    standard_error = 0.0003 / math.sqrt(rates.size)
    assert abs(rates.mean() - 0.0001) < 4 * standard_error
    assert rates.std() == pytest.approx(0.0003, rel=0.05)
    with pytest.raises(ExchangeError, match="random"):
        rules.funding_rates(2, 2)
