"""Exchange rule sets: tiered maintenance margin, liquidation and bankruptcy prices, fees.

One general rule covers every venue of DESIGN.md section 4. A position of ``Q`` contracts
(``Q > 0``), side ``s`` (+1 long, -1 short), entry price ``EP`` and margin ``M`` (its margin
balance excluding unrealised PnL: the isolated margin after fees and funding taken from it, or in
cross the wallet plus the other positions' unrealised PnL minus their maintenance) has, at mark
price ``P``,

* margin balance ``MB(P) = M + s Q (P - EP)``,
* maintenance requirement ``MM(P) = N r_k - c_k`` with ``N = Q P`` (mark value) or
  ``N = Q EP`` (entry value, Bybit), ``k`` the tier whose notional range holds ``N``,

and is liquidated when ``MB(P) <= MM(P)``. The rule sets differ only in the rate ``r_k`` and in
which notional picks the tier:

=============  =======================  ==========================================================
rule           notional                 rate ``r_k``
=============  =======================  ==========================================================
binance        mark value ``Q P``       ``mmr_k`` (Binance "Liquidation Price Calculation", 2024)
bybit          entry value ``Q EP``     ``mmr_k`` (Bybit Help Center "Liquidation Price (USDT
                                        Contract)", examples 19,700 / 9,850 / 8,160)
okx            mark value ``Q P``       ``mmr_k + taker_fee`` (OKX "Isolated margin mode
                                        liquidation price", the closing fee is part of the
                                        requirement)
hyperliquid    mark value ``Q P``       ``1 / (2 max_leverage_k)`` (Hyperliquid Docs "Margining":
                                        maintenance is half the initial margin at max leverage)
=============  =======================  ==========================================================

``c_k`` is the maintenance amount that makes ``MM`` continuous in ``N``:
``c_k = c_{k-1} + floor_k (r_k - r_{k-1})`` (Binance's "maintenance amount", Hyperliquid's
"maintenance deduction"); it is derived here from the rates so that it is right for every rule.

Within one tier the condition is linear in ``P``, so the liquidation price has the closed form
``P = (M + c_k - s Q EP) / (Q r_k - s Q)`` (Binance's published isolated formula; OKX's
``(EP - s M/Q) / (1 - s (mmr + fee))`` when ``c = 0``). Because ``MB - MM`` is strictly
monotone in ``P`` (slope ``Q (s - r_k)``, ``r_k < 1``), exactly one tier holds the root: the
last tier whose floor price ``floor_k / Q`` lies where the condition already holds. Since
``MB - MM`` at the tier floors is monotone in ``k`` too, that tier is a binary search
(``numpy.searchsorted``) per element against one precomputed level per tier, for every element
at once (no Python loop over elements). The bankruptcy price solves ``MB(P) = 0``:
``P = EP - s M / Q``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from margin_sim._typing import FloatArray, IntArray, MarginMode, Side
from margin_sim.errors import ExchangeError, ScenarioError
from margin_sim.scenario import ExchangeSpec, FundingSpec, Tier, load_exchange

__all__ = [
    "ExchangeRules",
    "TierArrays",
    "bankruptcy_price",
    "liquidation_price",
    "maintenance_margin",
    "resolve_exchange",
]

ArrayLike = npt.ArrayLike

#: Leverage that stands for "no cap" in a tier built from a flat ``mmr`` override.
_UNCAPPED_LEVERAGE = 1e12


@dataclass(frozen=True)
class TierArrays:
    """One asset's tier table as arrays over tiers, in the form the rules use.

    Attributes
    ----------
    floors : FloatArray
        ``(K,)`` lowest notional of each tier, quote currency; ``floors[0] == 0``.
    caps : FloatArray
        ``(K,)`` notional where each tier ends, quote currency; ``inf`` for the last tier.
    rates : FloatArray
        ``(K,)`` the rule's maintenance rate ``r_k`` (fraction of notional).
    cums : FloatArray
        ``(K,)`` maintenance amounts ``c_k`` (quote currency) making ``MM`` continuous.
    max_leverage : FloatArray
        ``(K,)`` highest leverage of each tier.
    """

    floors: FloatArray
    caps: FloatArray
    rates: FloatArray
    cums: FloatArray
    max_leverage: FloatArray

    @functools.cached_property
    def long_floor_levels(self) -> FloatArray:
        """``floor_k (1 - r_k) + c_k``: a long's ``Q EP - M`` at which tier k's floor is hit."""
        return self.floors * (1.0 - self.rates) + self.cums

    @functools.cached_property
    def short_floor_levels(self) -> FloatArray:
        """``floor_k (1 + r_k) - c_k``: a short's ``M + Q EP`` at which tier k's floor is hit."""
        return self.floors * (1.0 + self.rates) - self.cums

    def tier_index(self, notional: FloatArray) -> IntArray:
        """Index of the tier holding each notional (tier k holds ``[floor_k, cap_k)``)."""
        return np.searchsorted(self.floors[1:], notional, side="right").astype(np.int64)


class ExchangeRules:
    """Vectorised rules of one exchange: the single definition of "liquidated".

    Parameters
    ----------
    spec : ExchangeSpec
        A validated exchange description (``cum`` filled in).

    Attributes
    ----------
    spec : ExchangeSpec
    name : str
    rule : {"binance", "bybit", "okx", "hyperliquid"}
    taker_fee, maker_fee : float
        Fractions of notional; the taker fee is paid on open and on close.
    liquidation_fee : float
        Clearance fee, fraction of the liquidated notional at the liquidation price, taken from
        what is left of the position's margin (isolated) or of the account (cross).
    funding : FundingSpec
        Funding interval (seconds), rate per interval and rate model; funding is paid from the
        isolated margin, so it moves the isolated liquidation price.
    opening_fee_from_isolated_margin : bool
        True when the opening taker fee is deducted from the isolated margin (hyperliquid)
        rather than from the free wallet.
    entry_value_maintenance : bool
        True when the requirement is on the entry value (bybit), constant in the mark price.

    Notes
    -----
    Every method broadcasts its array arguments with numpy rules and returns a float array of
    the broadcast shape. ``quantity`` is the number of contracts (base-currency units), ``> 0``;
    ``sign`` is +1 for a long and -1 for a short.

    Examples
    --------
    >>> rules = ExchangeRules.from_name("bybit")
    >>> float(rules.isolated_liquidation_price("BTC", 1, 1.0, 20000.0, 400.0))
    19700.0
    """

    def __init__(self, spec: ExchangeSpec) -> None:
        if not isinstance(spec, ExchangeSpec):
            raise ExchangeError(f"exchange: expected an ExchangeSpec, got {type(spec).__name__}")
        self.spec = spec
        self.name = spec.name
        self.rule = spec.rule
        self.taker_fee = float(spec.taker_fee)
        self.maker_fee = float(spec.maker_fee)
        self.liquidation_fee = float(spec.liquidation_fee)
        self.funding: FundingSpec = spec.funding
        self.opening_fee_from_isolated_margin = spec.rule == "hyperliquid"
        self.entry_value_maintenance = spec.rule == "bybit"
        self._tables: dict[str, TierArrays] = {}
        for asset in spec.tiers:
            self.tiers(asset)  # build and check every table up front

    def __repr__(self) -> str:
        return f"ExchangeRules(name={self.name!r}, rule={self.rule!r})"

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_name(cls, name: str) -> ExchangeRules:
        """Rules of ``params/exchanges/<name>.yaml``.

        Raises
        ------
        ScenarioError
            If no such file exists or it does not validate.
        """
        return _rules_by_name(name)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ExchangeRules:
        """Rules from an inline exchange mapping (the keys of an exchange file).

        Raises
        ------
        ScenarioError
            If the mapping does not validate.
        """
        return cls(_validate_spec(data))

    # -- tiers ------------------------------------------------------------------------

    def _tier_rate(self, tier: Tier) -> float:
        if self.rule == "okx":
            return tier.mmr + self.taker_fee
        if self.rule == "hyperliquid":
            return 1.0 / (2.0 * tier.max_leverage)
        return tier.mmr

    def tiers(self, asset: str) -> TierArrays:
        """The tier table of ``asset`` (or ``default``) as arrays.

        Raises
        ------
        ScenarioError
            If the exchange has neither a table for ``asset`` nor a ``default`` table.
        """
        key = asset if asset in self.spec.tiers else "default"
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        table = self.spec.tier_table(asset)
        floors = np.array([t.floor for t in table], dtype=float)
        caps = np.array([np.inf if t.cap is None else t.cap for t in table], dtype=float)
        rates = np.array([self._tier_rate(t) for t in table], dtype=float)
        if np.any(rates >= 1.0):
            raise ExchangeError(
                f"exchange.tiers.{key}: a maintenance rate of {rates.max():g} (rule "
                f"{self.rule}) is not below 1"
            )
        cums = np.empty_like(rates)
        cums[0] = table[0].cum or 0.0
        cums[1:] = cums[0] + np.cumsum(floors[1:] * np.diff(rates))
        arrays = TierArrays(
            floors=floors,
            caps=caps,
            rates=rates,
            cums=cums,
            max_leverage=np.array([t.max_leverage for t in table], dtype=float),
        )
        self._tables[key] = arrays
        return arrays

    def max_leverage(self, asset: str, notional: ArrayLike) -> FloatArray:
        """Highest leverage allowed at ``notional`` (quote currency)."""
        table = self.tiers(asset)
        return table.max_leverage[table.tier_index(np.asarray(notional, dtype=float))]

    # -- the requirement --------------------------------------------------------------

    def _tier_notional(
        self, quantity: ArrayLike, mark_price: ArrayLike, entry_price: ArrayLike
    ) -> FloatArray:
        price = entry_price if self.entry_value_maintenance else mark_price
        return np.asarray(quantity, dtype=float) * np.asarray(price, dtype=float)

    def maintenance_margin(
        self, asset: str, quantity: ArrayLike, mark_price: ArrayLike, entry_price: ArrayLike
    ) -> FloatArray:
        """Maintenance margin requirement, quote currency.

        Parameters
        ----------
        asset : str
            Asset name (selects the tier table).
        quantity : array_like
            Position size in contracts (base units), ``>= 0``.
        mark_price, entry_price : array_like
            Quote currency per contract.

        Returns
        -------
        FloatArray
            ``N r_k - c_k`` with the tier from the mark notional, or from the entry notional for
            the bybit rule; broadcast shape of the arguments.
        """
        table = self.tiers(asset)
        quantity, mark_price, entry_price = np.broadcast_arrays(
            np.asarray(quantity, dtype=float),
            np.asarray(mark_price, dtype=float),
            np.asarray(entry_price, dtype=float),
        )
        notional = self._tier_notional(quantity, mark_price, entry_price)
        k = table.tier_index(notional)
        return notional * table.rates[k] - table.cums[k]

    def maintenance_rate(
        self, asset: str, quantity: ArrayLike, mark_price: ArrayLike, entry_price: ArrayLike
    ) -> FloatArray:
        """d MM / d(mark notional): the tier's rate, or 0 where MM is on the entry value.

        Parameters are those of :meth:`maintenance_margin`.
        """
        table = self.tiers(asset)
        quantity, mark_price, entry_price = np.broadcast_arrays(
            np.asarray(quantity, dtype=float),
            np.asarray(mark_price, dtype=float),
            np.asarray(entry_price, dtype=float),
        )
        if self.entry_value_maintenance:
            return np.zeros(quantity.shape)
        return table.rates[table.tier_index(quantity * mark_price)]

    def margin_balance(
        self,
        sign: ArrayLike,
        quantity: ArrayLike,
        entry_price: ArrayLike,
        margin: ArrayLike,
        mark_price: ArrayLike,
    ) -> FloatArray:
        """``margin + s Q (P - EP)``, quote currency."""
        sign_ = np.asarray(sign, dtype=float)
        quantity_ = np.asarray(quantity, dtype=float)
        return np.asarray(margin, dtype=float) + sign_ * quantity_ * (
            np.asarray(mark_price, dtype=float) - np.asarray(entry_price, dtype=float)
        )

    def liquidation_buffer(
        self,
        asset: str,
        sign: ArrayLike,
        quantity: ArrayLike,
        entry_price: ArrayLike,
        margin: ArrayLike,
        mark_price: ArrayLike,
    ) -> FloatArray:
        """Margin balance minus maintenance requirement at ``mark_price``, quote currency.

        A position is liquidated where this is ``<= 0`` (see :meth:`is_liquidated`).
        """
        balance = self.margin_balance(sign, quantity, entry_price, margin, mark_price)
        return balance - self.maintenance_margin(asset, quantity, mark_price, entry_price)

    def is_liquidated(
        self,
        asset: str,
        sign: ArrayLike,
        quantity: ArrayLike,
        entry_price: ArrayLike,
        margin: ArrayLike,
        mark_price: ArrayLike,
    ) -> npt.NDArray[np.bool_]:
        """True where margin balance ``<=`` maintenance requirement at ``mark_price``."""
        buffer = self.liquidation_buffer(asset, sign, quantity, entry_price, margin, mark_price)
        return np.asarray(buffer <= 0.0)

    # -- prices -----------------------------------------------------------------------

    def isolated_liquidation_price(
        self,
        asset: str,
        sign: ArrayLike,
        quantity: ArrayLike,
        entry_price: ArrayLike,
        margin: ArrayLike,
    ) -> FloatArray:
        """Mark price at which margin balance equals the maintenance requirement.

        Parameters
        ----------
        asset : str
            Asset name (selects the tier table).
        sign : array_like
            +1 long, -1 short.
        quantity : array_like
            Contracts, ``> 0``.
        entry_price : array_like
            Quote currency per contract.
        margin : array_like
            The position's margin balance excluding unrealised PnL, quote currency (isolated
            margin after fees and funding; in cross the wallet plus the others' unrealised PnL
            minus their maintenance).

        Returns
        -------
        FloatArray
            Liquidation mark price, quote currency, broadcast shape: a long is liquidated at
            or below it, a short at or above it. NaN where no positive price liquidates (a
            long whose margin covers the whole entry value less its maintenance, or
            ``quantity <= 0``); 0 for a short that every positive price liquidates (its
            margin, in cross after the others' losses, below ``-Q EP``). The tier is the one
            holding the notional at that price.
        """
        sign_, quantity_, entry, margin_ = np.broadcast_arrays(
            np.asarray(sign, dtype=float),
            np.asarray(quantity, dtype=float),
            np.asarray(entry_price, dtype=float),
            np.asarray(margin, dtype=float),
        )
        table = self.tiers(asset)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.entry_value_maintenance:
                requirement = self.maintenance_margin(asset, quantity_, entry, entry)
                price = entry - sign_ * (margin_ - requirement) / quantity_
            else:
                # f_k = MB - MM at the floor price floor_k / Q of tier k. f is monotone in P,
                # so the tiers whose floor lies on the unsafe side of the root form a prefix
                # and the root's tier is the last of them. For a long f_k <= 0 reads
                # g_k <= Q EP - M with g_k = floor_k (1 - r_k) + c_k, for a short f_k >= 0
                # reads h_k <= M + Q EP with h_k = floor_k (1 + r_k) - c_k; g and h increase
                # with k (by (floor_k - floor_{k-1})(1 -/+ r_{k-1}) > 0), so the count is a
                # binary search per element, no (elements x tiers) array.
                value = quantity_ * entry
                longs = sign_ > 0
                if longs.all():  # one side only (the usual call): one search, not two
                    count = np.searchsorted(table.long_floor_levels, value - margin_, "right")
                elif not longs.any():
                    count = np.searchsorted(table.short_floor_levels, margin_ + value, "right")
                else:
                    count = np.where(
                        longs,
                        np.searchsorted(table.long_floor_levels, value - margin_, side="right"),
                        np.searchsorted(table.short_floor_levels, margin_ + value, side="right"),
                    )
                k = np.maximum(count - 1, 0)
                rate, cum = table.rates[k], table.cums[k]
                price = (margin_ + cum - sign_ * quantity_ * entry) / (quantity_ * (rate - sign_))
                # no tier floor on the safe side: a long is safe at every positive price, a
                # short (margin below -Q EP) liquidated at every one
                price = np.where(count > 0, price, -1.0)
            # a short liquidated at every positive price has liquidation price 0
            price = np.where((sign_ < 0) & (price <= 0), 0.0, price)
            valid = (quantity_ > 0) & ((price > 0) | (sign_ < 0))
        return np.where(valid, price, np.nan)

    def bankruptcy_price(
        self,
        asset: str,
        sign: ArrayLike,
        quantity: ArrayLike,
        entry_price: ArrayLike,
        margin: ArrayLike,
    ) -> FloatArray:
        """Mark price at which the margin balance is zero: ``EP - s M / Q``.

        Parameters are those of :meth:`isolated_liquidation_price` (``asset`` is accepted for
        symmetry; the bankruptcy price does not depend on the tiers). NaN for a long that no
        positive price bankrupts; 0 for a short bankrupt at every price.
        """
        sign_, quantity_, entry, margin_ = np.broadcast_arrays(
            np.asarray(sign, dtype=float),
            np.asarray(quantity, dtype=float),
            np.asarray(entry_price, dtype=float),
            np.asarray(margin, dtype=float),
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            price = entry - sign_ * margin_ / quantity_
            price = np.where((sign_ < 0) & (price <= 0), 0.0, price)
            valid = (quantity_ > 0) & ((price > 0) | (sign_ < 0))
        return np.where(valid, price, np.nan)

    # -- fees ---------------------------------------------------------------------------

    def initial_margin(
        self, quantity: ArrayLike, entry_price: ArrayLike, leverage: ArrayLike
    ) -> FloatArray:
        """Initial margin, quote currency: ``Q EP / leverage``."""
        return (
            np.asarray(quantity, dtype=float)
            * np.asarray(entry_price, dtype=float)
            / np.asarray(leverage, dtype=float)
        )

    def opening_fee(self, quantity: ArrayLike, entry_price: ArrayLike) -> FloatArray:
        """Taker fee on opening, quote currency: ``Q EP taker_fee``.

        Taken from the isolated margin where :attr:`opening_fee_from_isolated_margin`, else
        from the free wallet.
        """
        return (
            np.asarray(quantity, dtype=float)
            * np.asarray(entry_price, dtype=float)
            * (self.taker_fee)
        )

    def closing_fee(self, quantity: ArrayLike, price: ArrayLike) -> FloatArray:
        """Taker fee on closing at ``price``, quote currency: ``Q P taker_fee``."""
        return np.asarray(quantity, dtype=float) * np.asarray(price, dtype=float) * self.taker_fee

    def liquidation_fee_amount(self, quantity: ArrayLike, price: ArrayLike) -> FloatArray:
        """Clearance fee of a liquidation at ``price``, quote currency: ``Q P liquidation_fee``.

        It is taken from what is left of the position's margin (isolated) or of the account
        (cross), never more than that (DESIGN.md section 4).
        """
        return (
            np.asarray(quantity, dtype=float)
            * np.asarray(price, dtype=float)
            * self.liquidation_fee
        )

    # -- funding ------------------------------------------------------------------------

    def funding_times(self, horizon: float) -> FloatArray:
        """Times of the funding payments within ``(0, horizon]``, seconds from the start."""
        count = int(np.floor(horizon / self.funding.interval * (1 + 1e-12)))
        return self.funding.interval * np.arange(1, count + 1, dtype=float)

    def funding_rates(
        self, n_paths: int, n_payments: int, rng: np.random.Generator | None = None
    ) -> FloatArray:
        """Funding rate of every payment on every path, shape ``(n_paths, n_payments)``.

        ``constant``: the file's rate everywhere. ``random``: independent draws from
        Normal(rate, std) per path and payment (``rng`` required), clipped to +-5% per
        interval (the range a file may give).
        """
        shape = (n_paths, n_payments)
        if self.funding.model == "constant" or self.funding.std == 0.0:
            return np.full(shape, self.funding.rate)
        if rng is None:
            raise ExchangeError("funding: the random funding model needs a random generator")
        draws = rng.normal(self.funding.rate, self.funding.std, size=shape)
        return np.clip(draws, -0.05, 0.05)

    def funding_payment(
        self, sign: ArrayLike, quantity: ArrayLike, mark_price: ArrayLike, rate: ArrayLike
    ) -> FloatArray:
        """Funding PAID by a position, quote currency: ``s Q P rate`` (negative = received).

        Positive rates make longs pay shorts. Paid from the isolated margin (so it moves the
        isolated liquidation price), or from the wallet in cross.
        """
        return (
            np.asarray(sign, dtype=float)
            * np.asarray(quantity, dtype=float)
            * np.asarray(mark_price, dtype=float)
            * np.asarray(rate, dtype=float)
        )

    def with_overrides(
        self,
        *,
        asset: str | None = None,
        mmr: float | None = None,
        maint_amount: float | None = None,
        taker_fee: float | None = None,
    ) -> ExchangeRules:
        """A copy with a flat ``mmr``/``maint_amount`` for ``asset`` and/or another taker fee.

        Raises
        ------
        ExchangeError
            If ``maint_amount`` is given without ``mmr`` or a value is out of range.
        """
        if mmr is None and maint_amount is None and taker_fee is None:
            return self
        data = self.spec.model_dump(mode="json")
        if mmr is not None or maint_amount is not None:
            if mmr is None:
                raise ExchangeError("maint_amount: give mmr together with maint_amount")
            if not (math.isfinite(mmr) and 0.0 <= mmr < 1.0):
                raise ExchangeError(f"mmr: must be in [0, 1), got {mmr!r}")
            cum = 0.0 if maint_amount is None else float(maint_amount)
            if not math.isfinite(cum):
                raise ExchangeError(f"maint_amount: must be a finite number, got {cum!r}")
            # A flat tier; max_leverage = 1/(2 mmr) makes the hyperliquid rate equal mmr too.
            leverage = _UNCAPPED_LEVERAGE if mmr == 0 else min(1.0 / (2.0 * mmr), 1e12)
            data["tiers"][asset or "default"] = [
                {"floor": 0.0, "mmr": mmr, "cum": cum, "max_leverage": leverage}
            ]
        if taker_fee is not None:
            data["taker_fee"] = taker_fee
        try:
            return ExchangeRules(ExchangeSpec.model_validate(data))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ExchangeError(f"{where}: {first['msg']}") from None


def _validate_spec(data: Mapping[str, Any]) -> ExchangeSpec:
    from margin_sim.scenario import _format_validation_error

    try:
        return ExchangeSpec.model_validate(dict(data))
    except ValidationError as error:
        problem = _format_validation_error(error)
        raise ScenarioError(f"exchange.{problem.field}", problem.reason) from None


@functools.lru_cache(maxsize=32)
def _rules_by_name(name: str) -> ExchangeRules:
    return ExchangeRules(_validate_spec(load_exchange(name)))


def resolve_exchange(
    exchange: str | ExchangeSpec | ExchangeRules | Mapping[str, Any],
) -> ExchangeRules:
    """Rules from a name, an :class:`ExchangeSpec`, an inline mapping or rules themselves.

    Raises
    ------
    ScenarioError
        Unknown exchange name or invalid mapping.
    ExchangeError
        Any other type.
    """
    if isinstance(exchange, ExchangeRules):
        return exchange
    if isinstance(exchange, ExchangeSpec):
        return ExchangeRules(exchange)
    if isinstance(exchange, str):
        return ExchangeRules.from_name(exchange)
    if isinstance(exchange, Mapping):
        return ExchangeRules.from_mapping(exchange)
    raise ExchangeError(
        "exchange: expected a name, an ExchangeSpec or ExchangeRules, "
        f"got {type(exchange).__name__}"
    )


# ----------------------------------------------------------------- user-facing calculator

_SIGNS = {"long": 1, "short": -1}


def _sign(side: object, field: str = "side") -> int:
    if isinstance(side, str) and side.strip().lower() in _SIGNS:
        return _SIGNS[side.strip().lower()]
    raise ExchangeError(f"{field}: must be 'long' or 'short', got {side!r}")


def _number(
    value: object, field: str, *, positive: bool = False, minimum: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ExchangeError(f"{field}: must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ExchangeError(f"{field}: must be a finite number, got {value!r}")
    if positive and number <= 0:
        raise ExchangeError(f"{field}: must be positive, got {value!r}")
    if minimum is not None and number < minimum:
        raise ExchangeError(f"{field}: must be at least {minimum:g}, got {value!r}")
    return number


def _optional(value: object, field: str, **limits: Any) -> float | None:
    return None if value is None else _number(value, field, **limits)


def _others_margin(
    rules: ExchangeRules, others: Iterable[Mapping[str, Any]]
) -> tuple[float, float]:
    """Unrealised PnL and maintenance of the other cross positions, summed, at their marks."""
    pnl = 0.0
    requirement_total = 0.0
    allowed = {"side", "quantity", "entry_price", "mark_price", "mmr", "maint_amount", "asset"}
    for j, other in enumerate(others):
        where = f"others.{j}"
        if not isinstance(other, Mapping):
            raise ExchangeError(f"{where}: must be a mapping, got {type(other).__name__}")
        unknown = sorted(set(other) - allowed)
        if unknown:
            raise ExchangeError(f"{where}.{unknown[0]}: unknown key (allowed: {sorted(allowed)})")
        for key in ("side", "quantity", "entry_price", "mark_price"):
            if key not in other:
                raise ExchangeError(f"{where}.{key}: missing key")
        sign = _sign(other["side"], f"{where}.side")
        quantity = _number(other["quantity"], f"{where}.quantity", positive=True)
        entry = _number(other["entry_price"], f"{where}.entry_price", positive=True)
        mark = _number(other["mark_price"], f"{where}.mark_price", positive=True)
        mmr = _optional(other.get("mmr"), f"{where}.mmr", minimum=0.0)
        cum = _optional(other.get("maint_amount"), f"{where}.maint_amount")
        if mmr is not None:
            if mmr >= 1:
                raise ExchangeError(f"{where}.mmr: must be below 1, got {mmr!r}")
            requirement = quantity * mark * mmr - (cum or 0.0)
        elif cum is not None:
            raise ExchangeError(f"{where}.maint_amount: give mmr together with maint_amount")
        else:
            asset = str(other.get("asset", "default"))
            requirement = float(rules.maintenance_margin(asset, quantity, mark, entry))
        pnl += sign * quantity * (mark - entry)
        requirement_total += requirement
    return pnl, requirement_total


def _position_margin(
    side: Side | str,
    entry_price: float,
    quantity: float,
    wallet: float,
    *,
    exchange: str | ExchangeSpec | ExchangeRules | Mapping[str, Any],
    mode: MarginMode | str,
    mmr: float | None,
    maint_amount: float | None,
    others: Iterable[Mapping[str, Any]],
    taker_fee: float | None,
    asset: str,
    bankruptcy: bool = False,
) -> tuple[ExchangeRules, int, float, float, float]:
    """Check the inputs; return rules, sign, entry, quantity and the position's margin.

    The margin is the isolated margin (less the opening fee where the venue takes it from
    there), or in cross the wallet plus the others' unrealised PnL minus their maintenance
    (for the bankruptcy price their maintenance is not subtracted: margin balance zero).
    """
    sign = _sign(side)
    entry = _number(entry_price, "entry_price", positive=True)
    qty = _number(quantity, "quantity", positive=True)
    balance = _number(wallet, "wallet", minimum=0.0)
    mmr_ = _optional(mmr, "mmr", minimum=0.0)
    cum = _optional(maint_amount, "maint_amount")
    fee = _optional(taker_fee, "taker_fee", minimum=0.0)
    if mode not in ("isolated", "cross"):
        raise ExchangeError(f"mode: must be 'isolated' or 'cross', got {mode!r}")
    others = list(others)
    if others and mode != "cross":
        raise ExchangeError("others: other positions only count in mode='cross'")
    rules = resolve_exchange(exchange).with_overrides(
        asset=asset, mmr=mmr_, maint_amount=cum, taker_fee=fee
    )
    margin = balance
    if mode == "isolated" and rules.opening_fee_from_isolated_margin:
        margin -= float(rules.opening_fee(qty, entry))
    if mode == "cross":
        pnl, requirement = _others_margin(rules, others)
        margin += pnl if bankruptcy else pnl - requirement
    return rules, sign, entry, qty, margin


def liquidation_price(
    side: Side | str,
    entry_price: float,
    quantity: float,
    wallet: float,
    *,
    exchange: str | ExchangeSpec | ExchangeRules | Mapping[str, Any] = "binance-usdm",
    mode: MarginMode | str = "isolated",
    mmr: float | None = None,
    maint_amount: float | None = None,
    others: Iterable[Mapping[str, Any]] = (),
    taker_fee: float | None = None,
    asset: str = "BTC",
) -> float:
    """Liquidation (mark) price of one position, isolated or cross.

    Parameters
    ----------
    side : {"long", "short"}
    entry_price : float
        Quote currency per contract.
    quantity : float
        Contracts (base units), positive.
    wallet : float
        Isolated: the position's isolated margin; cross: the wallet balance. Quote currency.
    exchange : str, ExchangeSpec, ExchangeRules or mapping
        Exchange name (``params/exchanges/<name>.yaml``) or its rules.
    mode : {"isolated", "cross"}
    mmr, maint_amount : float, optional
        A flat maintenance rate and amount replacing the asset's tier table.
    others : iterable of dict
        Cross only: the other positions, each with ``side, quantity, entry_price, mark_price``
        and optionally ``mmr, maint_amount`` (else the ``asset`` key's tier table, or
        ``default``). They stay at their marks: their unrealised PnL adds to and their
        maintenance subtracts from the wallet.
    taker_fee : float, optional
        Replaces the exchange's taker fee (part of the okx requirement; deducted from the
        isolated margin on hyperliquid).
    asset : str
        Selects the tier table (extension of DESIGN.md section 4's signature).

    Returns
    -------
    float
        Quote currency; NaN where no price liquidates the position (e.g. a long at <= 1x);
        0 for a short that every price liquidates (cross, the others' losses exceed the wallet).

    Raises
    ------
    ExchangeError
        Bad input (negative quantity, unknown side or mode, ...).
    ScenarioError
        Unknown exchange name or invalid exchange mapping.

    Examples
    --------
    >>> round(liquidation_price("long", 20000, 1, 400, exchange="bybit", mmr=0.005), 2)
    19700.0
    """
    rules, sign, entry, qty, margin = _position_margin(
        side, entry_price, quantity, wallet, exchange=exchange, mode=mode, mmr=mmr,
        maint_amount=maint_amount, others=others, taker_fee=taker_fee, asset=asset,
    )  # fmt: skip
    return float(rules.isolated_liquidation_price(asset, sign, qty, entry, margin))


def bankruptcy_price(
    side: Side | str,
    entry_price: float,
    quantity: float,
    wallet: float,
    *,
    exchange: str | ExchangeSpec | ExchangeRules | Mapping[str, Any] = "binance-usdm",
    mode: MarginMode | str = "isolated",
    mmr: float | None = None,
    maint_amount: float | None = None,
    others: Iterable[Mapping[str, Any]] = (),
    taker_fee: float | None = None,
    asset: str = "BTC",
) -> float:
    """Mark price at which the position's margin balance reaches zero.

    Same parameters as :func:`liquidation_price`. In cross it is the price at which the
    account's margin balance (wallet plus every position's unrealised PnL, the others frozen
    at their marks) reaches zero; ``mmr``/``maint_amount`` do not affect it.

    Returns
    -------
    float
        Quote currency; NaN where no positive price exhausts the margin (a long at <= 1x).

    Examples
    --------
    >>> bankruptcy_price("long", 20000, 1, 400, exchange="bybit")
    19600.0
    """
    rules, sign, entry, qty, margin = _position_margin(
        side, entry_price, quantity, wallet, exchange=exchange, mode=mode, mmr=mmr,
        maint_amount=maint_amount, others=others, taker_fee=taker_fee, asset=asset,
        bankruptcy=True,
    )  # fmt: skip
    return float(rules.bankruptcy_price(asset, sign, qty, entry, margin))


def maintenance_margin(
    quantity: ArrayLike,
    mark_price: ArrayLike,
    *,
    entry_price: ArrayLike | None = None,
    asset: str = "BTC",
    exchange: str | ExchangeSpec | ExchangeRules | Mapping[str, Any] = "binance-usdm",
    mmr: float | None = None,
    maint_amount: float | None = None,
    taker_fee: float | None = None,
) -> FloatArray | float:
    """Maintenance margin requirement of a position, quote currency.

    Parameters
    ----------
    quantity : array_like
        Contracts, ``>= 0``.
    mark_price : array_like
        Quote currency per contract.
    entry_price : array_like, optional
        Needed by the bybit rule (entry-value requirement); defaults to ``mark_price``.
    asset, exchange, mmr, maint_amount, taker_fee
        As in :func:`liquidation_price`.

    Returns
    -------
    float or FloatArray
        A float for scalar inputs.

    Examples
    --------
    >>> maintenance_margin(1, 60000)   # BTC on binance-usdm: 60,000 * 0.5% - 50
    250.0
    """
    q = np.asarray(quantity, dtype=float)
    if np.any(~np.isfinite(q)) or np.any(q < 0):
        raise ExchangeError("quantity: must be a finite number >= 0")
    mark = np.asarray(mark_price, dtype=float)
    if np.any(~np.isfinite(mark)) or np.any(mark <= 0):
        raise ExchangeError("mark_price: must be a positive finite number")
    entry = mark if entry_price is None else np.asarray(entry_price, dtype=float)
    rules = resolve_exchange(exchange).with_overrides(
        asset=asset,
        mmr=_optional(mmr, "mmr", minimum=0.0),
        maint_amount=_optional(maint_amount, "maint_amount"),
        taker_fee=_optional(taker_fee, "taker_fee", minimum=0.0),
    )
    result = rules.maintenance_margin(asset, q, mark, entry)
    return float(result) if result.ndim == 0 else result
