"""Property tests (hypothesis) of the liquidation-price rules, over every shipped exchange."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import margin_sim as ms
from margin_sim.exchange import ExchangeRules
from margin_sim.scenario import PARAMS_DIR

SHIPPED = sorted(path.stem for path in (PARAMS_DIR / "exchanges").glob("*.yaml"))
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

exchanges = st.sampled_from(SHIPPED)
assets = st.sampled_from(["BTC", "ETH", "OTHER"])
sides = st.sampled_from(["long", "short"])
entry_prices = st.floats(min_value=1.0, max_value=200_000.0)
# notionals from 10 USDT to 2 billion: across every tier of every table
notionals = st.floats(min_value=1.0, max_value=9.3).map(lambda x: 10.0**x)
leverages = st.floats(min_value=1.05, max_value=150.0)


def _as_long_order(price: float) -> float:
    """NaN (no price liquidates a long) ranks below every price."""
    return -math.inf if math.isnan(price) else price


@PROPERTY_SETTINGS
@given(exchanges, assets, entry_prices, notionals, leverages, leverages)
def test_long_liquidation_price_rises_with_leverage(
    exchange: str, asset: str, entry: float, notional: float, lev_a: float, lev_b: float
) -> None:
    low, high = sorted((lev_a, lev_b))
    quantity = notional / entry
    kwargs = {"exchange": exchange, "asset": asset}
    at_low = ms.liquidation_price("long", entry, quantity, notional / low, **kwargs)
    at_high = ms.liquidation_price("long", entry, quantity, notional / high, **kwargs)
    assert _as_long_order(at_low) <= _as_long_order(at_high) * (1 + 1e-12)


@PROPERTY_SETTINGS
@given(exchanges, assets, sides, entry_prices, notionals, leverages, st.floats(0.0, 1e6))
def test_adding_margin_moves_the_liquidation_price_away(
    exchange: str, asset: str, side: str, entry: float, notional: float, lev: float, extra: float
) -> None:
    quantity = notional / entry
    margin = notional / lev
    kwargs = {"exchange": exchange, "asset": asset}
    before = ms.liquidation_price(side, entry, quantity, margin, **kwargs)
    after = ms.liquidation_price(side, entry, quantity, margin + extra, **kwargs)
    if side == "long":
        assert _as_long_order(after) <= _as_long_order(before) * (1 + 1e-12)
    else:
        assert after >= before * (1 - 1e-12)


@PROPERTY_SETTINGS
@given(
    st.sampled_from(["binance-usdm", "okx", "hyperliquid"]),
    entry_prices,
    st.floats(1e-3, 1e3),
    st.floats(0.0, 0.2),
    st.floats(0.0, 0.3),
)
def test_long_and_short_are_mirror_images(
    exchange: str, entry: float, quantity: float, mmr: float, margin_fraction: float
) -> None:
    # With one flat tier of rate r (no maintenance amount), the long solves
    # M + Q (P_L - EP) = Q P_L r and the short M - Q (P_S - EP) = Q P_S r, so
    # P_L (1 - r) and P_S (1 + r) lie symmetrically about EP; bankruptcy prices exactly so.
    rules = ExchangeRules.from_name(exchange).with_overrides(asset="BTC", mmr=mmr, taker_fee=0.0)
    rate = float(rules.maintenance_rate("BTC", quantity, entry, entry))
    margin = margin_fraction * quantity * entry
    long_price = float(rules.isolated_liquidation_price("BTC", 1, quantity, entry, margin))
    short_price = float(rules.isolated_liquidation_price("BTC", -1, quantity, entry, margin))
    assert math.isfinite(short_price)
    if math.isfinite(long_price):
        mirrored = long_price * (1 - rate) + short_price * (1 + rate)
        assert mirrored == pytest.approx(2 * entry, rel=1e-12)
    else:
        assert margin >= quantity * entry * (1 - 1e-12)  # only a fully funded long escapes
    long_bankrupt = float(rules.bankruptcy_price("BTC", 1, quantity, entry, margin))
    short_bankrupt = float(rules.bankruptcy_price("BTC", -1, quantity, entry, margin))
    if math.isfinite(long_bankrupt):
        assert long_bankrupt + short_bankrupt == pytest.approx(2 * entry, rel=1e-12)


@PROPERTY_SETTINGS
@given(assets, entry_prices, notionals, leverages, sides)
def test_bybit_long_and_short_mirror_about_entry(
    asset: str, entry: float, notional: float, lev: float, side: str
) -> None:
    # The requirement is on the entry value, the same for both sides: LP = EP -/+ (M - MM)/Q.
    quantity, margin = notional / entry, notional / lev
    long_price = ms.liquidation_price(
        "long", entry, quantity, margin, exchange="bybit", asset=asset
    )
    short_price = ms.liquidation_price(
        "short", entry, quantity, margin, exchange="bybit", asset=asset
    )
    if math.isfinite(long_price):
        assert long_price + short_price == pytest.approx(2 * entry, rel=1e-12)


@PROPERTY_SETTINGS
@given(exchanges, assets, sides, entry_prices, notionals, leverages)
def test_margin_balance_equals_the_requirement_at_the_liquidation_price(
    exchange: str, asset: str, side: str, entry: float, notional: float, lev: float
) -> None:
    rules = ExchangeRules.from_name(exchange)
    sign = 1 if side == "long" else -1
    quantity, margin = notional / entry, notional / lev
    price = float(rules.isolated_liquidation_price(asset, sign, quantity, entry, margin))
    if math.isnan(price):
        assert sign == 1
        # then no positive mark liquidates: the buffer stays positive down to ~0
        tiny = entry * 1e-9
        assert float(rules.liquidation_buffer(asset, sign, quantity, entry, margin, tiny)) > 0
        return
    balance = float(rules.margin_balance(sign, quantity, entry, margin, price))
    requirement = float(rules.maintenance_margin(asset, quantity, price, entry))
    assert balance == pytest.approx(requirement, rel=1e-9, abs=1e-9 * notional * 1e-3)
    # and it is the first such price: a little on the safe side the position survives
    safe = price * (1 + sign * 1e-7)
    assert not rules.is_liquidated(asset, sign, quantity, entry, margin, safe)


@PROPERTY_SETTINGS
@given(
    exchanges,
    sides,
    entry_prices,
    notionals,
    leverages,
    st.floats(0.0, 1e7),
    st.lists(
        st.tuples(sides, st.floats(0.01, 100.0), st.floats(100.0, 5000.0), st.floats(0.5, 1.5)),
        max_size=3,
    ),
)
def test_more_idle_wallet_never_liquidates_a_cross_position_earlier(
    exchange: str,
    side: str,
    entry: float,
    notional: float,
    lev: float,
    idle: float,
    raw_others: list[tuple[str, float, float, float]],
) -> None:
    others = [
        {"side": s, "quantity": q, "entry_price": ep, "mark_price": ep * move, "asset": "ETH"}
        for s, q, ep, move in raw_others
    ]
    quantity, wallet = notional / entry, notional / lev
    kwargs = {"exchange": exchange, "mode": "cross", "others": others}
    lean = ms.liquidation_price(side, entry, quantity, wallet, **kwargs)
    rich = ms.liquidation_price(side, entry, quantity, wallet + idle, **kwargs)
    if side == "long":
        assert _as_long_order(rich) <= _as_long_order(lean) * (1 + 1e-12)
    else:
        assert rich >= lean * (1 - 1e-12)


@settings(max_examples=25, deadline=None)
@given(exchanges, assets, st.integers(0, 2**32 - 1))
def test_vectorised_prices_equal_one_at_a_time(exchange: str, asset: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rules = ExchangeRules.from_name(exchange)
    n = 20
    sign = rng.choice([1.0, -1.0], n)
    entry = rng.uniform(10, 1e5, n)
    quantity = 10 ** rng.uniform(1, 9, n) / entry
    margin = quantity * entry / rng.uniform(0.5, 120, n)
    together = rules.isolated_liquidation_price(asset, sign, quantity, entry, margin)
    alone = [
        float(rules.isolated_liquidation_price(asset, sign[i], quantity[i], entry[i], margin[i]))
        for i in range(n)
    ]
    np.testing.assert_array_equal(together, alone)
