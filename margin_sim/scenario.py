"""Typed scenario model: market + exchange rules + account + simulation settings.

A scenario file is YAML (read with ``yaml.safe_load`` only) whose keys are those of
DESIGN.md section 3. :func:`load_scenario` reads one, applies dotted overrides, resolves the
exchange by name from ``params/exchanges/`` and returns a frozen :class:`Scenario`, or raises
:class:`~margin_sim.errors.ScenarioError` whose message is one line naming the field and the
reason.

Units: prices and balances in quote currency (USDT); ``vol`` and ``drift`` annualised
(365-day year, see :data:`margin_sim.durations.SECONDS_PER_YEAR`); jump and wick rates per
year; jump sizes in log-price units; wick depths as fractions of the price; fees and
maintenance rates as fractions of notional; durations as text (``"1h"``) stored in seconds.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from margin_sim._typing import FloatArray, MarginMode, Rule, Side
from margin_sim.durations import SECONDS_PER_YEAR, format_duration, parse_duration
from margin_sim.errors import ScenarioError

__all__ = [
    "Account",
    "Asset",
    "ExchangeSpec",
    "FundingSpec",
    "KouJumps",
    "Market",
    "MarketWickSpec",
    "MertonJumps",
    "Position",
    "Ruin",
    "Scenario",
    "Tier",
    "WickSpec",
    "apply_overrides",
    "exchange_dirs",
    "load_exchange",
    "load_scenario",
    "read_yaml_mapping",
]

#: Folder of the exchange files shipped with the project.
PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]


def _wants_number(annotation: Any) -> bool:
    """Whether a field annotation is a number (``int``/``float``, maybe optional)."""
    if annotation in (int, float):
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _wants_number(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_wants_number(arg) for arg in get_args(annotation) if arg is not type(None))
    return False


#: pydantic error type of a boolean given where a number belongs; ``ctx["key"]`` names it.
_BOOLEAN_NUMBER = "boolean_number"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_booleans(cls, data: Any) -> Any:
        # YAML reads yes/no/true/false as booleans and pydantic's lax mode would take them as
        # 1 and 0: `paths: yes` must be an error, not one path.
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if field is None or any(isinstance(m, BeforeValidator) for m in field.metadata):
                continue  # durations parse their own text and refuse booleans
            annotation = field.annotation
            if isinstance(value, bool) and _wants_number(annotation):
                raise PydanticCustomError(
                    _BOOLEAN_NUMBER, "must be a number, got {value}", {"key": name, "value": value}
                )
            if (
                isinstance(value, dict)
                and get_origin(annotation) is dict
                and _wants_number(get_args(annotation)[1])
            ):
                for key, item in value.items():
                    if isinstance(item, bool):
                        raise PydanticCustomError(
                            _BOOLEAN_NUMBER,
                            "must be a number, got {value}",
                            {"key": f"{name}.{key}", "value": item},
                        )
        return data


# --------------------------------------------------------------------------- market


class MertonJumps(_Model):
    """Compound-Poisson jumps with normal log sizes (Merton 1976).

    Attributes
    ----------
    model : {"merton"}
        Selects this jump law.
    per_year : float
        Expected number of jumps per year (365-day year).
    mean, std : float
        Mean and standard deviation of the log jump size (log-price units).
    """

    model: Literal["merton"] = "merton"
    per_year: NonNegative = 0.0
    mean: float = 0.0
    std: NonNegative = 0.0


class KouJumps(_Model):
    """Compound-Poisson jumps with double-exponential log sizes (Kou 2002).

    Attributes
    ----------
    model : {"kou"}
        Selects this jump law.
    per_year : float
        Expected number of jumps per year (365-day year).
    p_up : float
        Probability that a jump is upwards (dimensionless).
    up_mean : float
        Mean of an upward log jump (1/eta1), log-price units; below 1 so that E[exp(J)] is
        finite.
    down_mean : float
        Mean size of a downward log jump (1/eta2), log-price units, a positive number.
    """

    model: Literal["kou"] = "kou"
    per_year: NonNegative = 0.0
    p_up: Fraction = 0.5
    up_mean: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.02
    down_mean: Positive = 0.02


Jumps = Annotated[MertonJumps | KouJumps, Field(discriminator="model")]


class WickSpec(_Model):
    """Flash-crash wicks of one asset: a transient drop that mostly recovers within minutes.

    Attributes
    ----------
    per_year : float
        Expected number of wicks per year (365-day year).
    depth_mean : float
        Mean depth as a fraction of the price (exponentially distributed, capped).
    depth_max : float
        Cap on the depth, a fraction below 1.
    recovery : float
        Fraction of the drop recovered after the trough (1 = the price comes all the way back).
    mark_pass_through : float
        Fraction of the drop the mark price sees (index prices smooth wicks on one venue).
    duration : float
        Time from the trough to the recovered price, seconds (text such as ``"3min"``).
    """

    per_year: NonNegative = 0.0
    depth_mean: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    depth_max: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    recovery: Fraction = 0.9
    mark_pass_through: Fraction = 1.0
    duration: Duration = 180.0

    @model_validator(mode="after")
    def _depth_order(self) -> WickSpec:
        if self.depth_mean > self.depth_max:
            raise ValueError(
                f"depth_mean {self.depth_mean} is larger than depth_max {self.depth_max}"
            )
        return self


class MarketWickSpec(WickSpec):
    """Market-wide wicks: one event hits every asset at once, its depth scaled by ``beta``.

    Attributes
    ----------
    per_year, depth_mean, depth_max, recovery, mark_pass_through, duration
        As in :class:`WickSpec` (per year; fractions of the price; seconds).
    beta : dict of str to float
        Depth multiplier per asset, dimensionless (1 for assets not listed); the scaled depth
        is capped at ``depth_max``.
    """

    beta: dict[str, NonNegative] = Field(default_factory=dict)


class Asset(_Model):
    """One underlying: starting price and its price dynamics.

    Attributes
    ----------
    price : float
        Starting last and mark price, quote currency.
    vol : float
        Diffusion volatility of the log price, per square root of a year (365-day year):
        0.60 means 60% a year.
    drift : float
        Expected return per year, continuously compounded: E[S_T] = S_0 exp(drift T),
        jumps and wicks compensated.
    jumps : MertonJumps or KouJumps, optional
        Permanent jumps.
    wicks : WickSpec, optional
        Flash-crash wicks of this asset alone.
    """

    price: Positive
    vol: NonNegative
    drift: float = 0.0
    jumps: Jumps | None = None
    wicks: WickSpec | None = None


class Market(_Model):
    """Assets, their correlation and market-wide wicks.

    Attributes
    ----------
    assets : dict of str to Asset
        The underlyings by name (``BTC``).
    correlation : dict of str to float
        Correlation of the diffusion parts (dimensionless, -1 to 1) by pair name
        ``"BTC-ETH"``; pairs not given are 0.
    market_wicks : MarketWickSpec, optional
        Wicks that hit every asset at the same time.
    """

    assets: Annotated[dict[str, Asset], Field(min_length=1)]
    correlation: dict[str, Annotated[float, Field(ge=-1.0, le=1.0)]] = Field(default_factory=dict)
    market_wicks: MarketWickSpec | None = None

    @field_validator("assets")
    @classmethod
    def _asset_names(cls, assets: dict[str, Asset]) -> dict[str, Asset]:
        for name in assets:
            if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
                raise ValueError(f"asset name {name!r} must be letters, digits, '_' or '.'")
        return assets

    @model_validator(mode="after")
    def _check_correlation(self) -> Market:
        names = list(self.assets)
        seen: dict[frozenset[str], float] = {}
        for pair, value in self.correlation.items():
            field = f"market.correlation.{pair}"
            parts = pair.split("-")
            if len(parts) != 2:
                raise ScenarioError(field, "a pair is written 'A-B', e.g. 'BTC-ETH'")
            for part in parts:
                if part not in self.assets:
                    raise ScenarioError(field, f"unknown asset {part!r} (assets: {names})")
            if parts[0] == parts[1]:
                raise ScenarioError(field, "an asset's correlation with itself is always 1")
            key = frozenset(parts)
            if key in seen and seen[key] != value:
                raise ScenarioError(field, "the pair is given twice with different values")
            seen[key] = value
        matrix = self.correlation_matrix()
        smallest = float(np.linalg.eigvalsh(matrix).min()) if len(names) > 1 else 1.0
        if smallest < -1e-10:
            raise ScenarioError(
                "market.correlation",
                f"the matrix is not positive semi-definite (smallest eigenvalue {smallest:.3g})",
            )
        if self.market_wicks is not None:
            for name in self.market_wicks.beta:
                if name not in self.assets:
                    raise ScenarioError(
                        f"market.market_wicks.beta.{name}", f"unknown asset (assets: {names})"
                    )
        return self

    @property
    def asset_names(self) -> tuple[str, ...]:
        """Asset names in file order; every array over assets uses this order."""
        return tuple(self.assets)

    def correlation_matrix(self) -> FloatArray:
        """Correlation matrix of the diffusion parts, in :attr:`asset_names` order."""
        names = list(self.assets)
        index = {name: i for i, name in enumerate(names)}
        matrix = np.eye(len(names))
        for pair, value in self.correlation.items():
            first, second = pair.split("-")
            matrix[index[first], index[second]] = matrix[index[second], index[first]] = value
        return matrix


# ------------------------------------------------------------------------- exchange


class FundingSpec(_Model):
    """Funding payments between longs and shorts.

    Attributes
    ----------
    interval : float
        Time between payments, seconds (text such as ``"8h"``).
    rate : float
        Rate per interval, fraction of the notional at mark; positive means longs pay shorts.
    model : {"constant", "random"}
        ``random`` draws each interval's rate per path from Normal(rate, std).
    std : float
        Standard deviation of the per-interval rate for the random model, fraction of the
        notional per interval.
    """

    interval: Duration = 8 * 3600.0
    rate: Annotated[float, Field(ge=-0.05, le=0.05)] = 0.0001
    model: Literal["constant", "random"] = "constant"
    std: Annotated[float, Field(ge=0.0, le=0.05)] = 0.0


class Tier(_Model):
    """One maintenance-margin tier (bracket) of a notional range.

    Attributes
    ----------
    floor, cap : float
        Notional range of the tier, quote currency; the last tier's cap may be open (None).
    mmr : float
        Maintenance margin rate, fraction of notional.
    cum : float
        Maintenance amount, quote currency, so that MM = notional * mmr - cum is continuous;
        derived from the floors when omitted.
    max_leverage : float
        Highest leverage (notional / margin, dimensionless) allowed for a notional in this
        tier.
    """

    floor: NonNegative
    cap: Positive | None = None
    mmr: Annotated[float, Field(ge=0.0, lt=1.0)]
    cum: float | None = None
    max_leverage: Positive


def _derive_cum(tiers: list[Tier], field: str) -> list[Tier]:
    """Fill in ``cum`` so MM is continuous, and refuse given values that break continuity."""
    out: list[Tier] = []
    cum = 0.0
    for k, tier in enumerate(tiers):
        where = f"{field}.{k}"
        if k == 0:
            if tier.floor != 0:
                raise ScenarioError(f"{where}.floor", "the first tier must start at notional 0")
            cum = tier.cum if tier.cum is not None else 0.0
        else:
            previous = tiers[k - 1]
            if previous.cap is None or not math.isclose(previous.cap, tier.floor, rel_tol=1e-12):
                raise ScenarioError(
                    f"{where}.floor",
                    f"floor {tier.floor:g} must equal the previous tier's cap {previous.cap}",
                )
            cum = cum + tier.floor * (tier.mmr - previous.mmr)
            if tier.cum is not None and not math.isclose(tier.cum, cum, rel_tol=1e-9, abs_tol=0.01):
                raise ScenarioError(
                    f"{where}.cum",
                    f"{tier.cum:g} breaks the continuity of the maintenance margin "
                    f"(continuous value {cum:.2f})",
                )
        if tier.cap is not None and tier.cap <= tier.floor:
            raise ScenarioError(f"{where}.cap", "cap must be above floor")
        out.append(tier.model_copy(update={"cum": cum}))
    return out


class ExchangeSpec(_Model):
    """An exchange's rule set: how maintenance is computed, fees, funding and tiers.

    Attributes
    ----------
    name : str
        File name the rules came from, or ``inline``.
    rule : {"binance", "bybit", "okx", "hyperliquid"}
        How the maintenance requirement is computed (DESIGN.md section 4).
    as_of : date, optional
        Date of the numbers.
    taker_fee, maker_fee : float
        Fractions of notional; the taker fee is paid on open and on close.
    liquidation_fee : float
        Clearance fee, fraction of the liquidated notional.
    funding : FundingSpec
        Funding interval and rate.
    tiers : dict of str to list of Tier
        Maintenance tiers per asset, with ``default`` for assets not listed.
    """

    name: str = "inline"
    rule: Rule
    as_of: _dt.date | None = None
    taker_fee: Annotated[float, Field(ge=0.0, lt=0.1)] = 0.0005
    maker_fee: Annotated[float, Field(gt=-0.01, lt=0.1)] = 0.0002
    liquidation_fee: Annotated[float, Field(ge=0.0, lt=0.2)] = 0.005
    funding: FundingSpec = FundingSpec()
    tiers: dict[str, Annotated[list[Tier], Field(min_length=1)]]

    @model_validator(mode="after")
    def _continuous_tiers(self) -> ExchangeSpec:
        tiers = {
            asset: _derive_cum(table, f"exchange.tiers.{asset}")
            for asset, table in self.tiers.items()
        }
        object.__setattr__(self, "tiers", tiers)
        return self

    def tier_table(self, asset: str) -> list[Tier]:
        """Tiers of ``asset``, or the ``default`` table.

        Raises
        ------
        ScenarioError
            If neither exists.
        """
        table = self.tiers.get(asset, self.tiers.get("default"))
        if table is None:
            raise ScenarioError(
                "exchange.tiers", f"no tier table for {asset!r} and no 'default' table"
            )
        return table

    def tier_for(self, asset: str, notional: float) -> Tier:
        """The tier whose notional range contains ``notional`` (the last tier above all caps)."""
        table = self.tier_table(asset)
        for tier in table:
            if tier.cap is None or notional < tier.cap:
                return tier
        return table[-1]


# -------------------------------------------------------------------------- account


class Position(_Model):
    """One perpetual-futures position, opened at the asset's starting price.

    Attributes
    ----------
    asset : str
        Name of an asset of the market.
    side : {"long", "short"}
        Long gains when the price rises, short when it falls.
    leverage : float
        Notional / margin at entry (dimensionless, ``10`` = 10x).
    margin : float
        Initial margin, quote currency; notional = margin * leverage.
    stop_loss : float, optional
        Adverse move, fraction of the entry price, at which a stop-market order closes it.
    auto_add_margin : bool
        Isolated mode: top up the isolated margin from the free wallet to stay clear of
        liquidation (Binance/Bybit "auto-add margin").
    """

    asset: str
    side: Side
    leverage: Positive
    margin: Positive
    stop_loss: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    auto_add_margin: bool = False

    @property
    def notional(self) -> float:
        """Entry notional, quote currency."""
        return self.margin * self.leverage

    @property
    def sign(self) -> int:
        """+1 for a long, -1 for a short."""
        return 1 if self.side == "long" else -1


class Account(_Model):
    """Wallet and positions.

    Attributes
    ----------
    balance : float
        Wallet balance before opening, quote currency.
    positions : list of Position
        The open positions, at least one.
    """

    balance: Positive
    positions: Annotated[list[Position], Field(min_length=1)]


class Ruin(_Model):
    """Ruin threshold.

    Attributes
    ----------
    equity_fraction : float
        Ruin = account equity at or below this fraction of the starting balance, at any time.
    """

    equity_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5


# ------------------------------------------------------------------------- scenario


class Scenario(_Model):
    """A full scenario; see DESIGN.md section 3 for the file format.

    Attributes
    ----------
    name : str
        Label used in reports and result files.
    seed : int
        Same seed, same numbers, whatever the chunking or worker count.
    paths : int
        Number of Monte Carlo paths (count).
    horizon, step : float
        Horizon and grid step, seconds (text such as ``"30d"``, ``"1h"``).
    chunk_paths : int
        Paths evaluated at once (count); sets memory, never the numbers.
    market : Market
        The assets and their price dynamics.
    exchange : ExchangeSpec
        Given by name (``binance-usdm`` -> ``params/exchanges/binance-usdm.yaml``) or inline.
    account : Account
        Wallet balance and positions.
    modes : list of {"isolated", "cross"}
        Margin modes to evaluate, all on the same paths.
    ruin : Ruin
        What counts as ruin.
    """

    name: str = "scenario"
    seed: Annotated[int, Field(ge=0)] = 0
    paths: Annotated[int, Field(ge=1, le=100_000_000)] = 10_000
    horizon: Duration = 30 * 86400.0
    step: Duration = 3600.0
    chunk_paths: Annotated[int, Field(ge=1)] = 2_000
    market: Market
    exchange: ExchangeSpec
    account: Account
    modes: Annotated[list[MarginMode], Field(min_length=1)] = Field(
        default_factory=lambda: ["isolated", "cross"]
    )
    ruin: Ruin = Ruin()

    @field_validator("exchange", mode="before")
    @classmethod
    def _resolve_exchange(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            base = (info.context or {}).get("base_dir")
            return load_exchange(value, base_dir=base)
        return value

    @field_validator("modes")
    @classmethod
    def _unique_modes(cls, modes: list[str]) -> list[str]:
        if len(set(modes)) != len(modes):
            raise ValueError("a mode is listed twice")
        return modes

    @model_validator(mode="after")
    def _consistency(self) -> Scenario:
        if self.step > self.horizon:
            raise ScenarioError(
                "step",
                f"step {format_duration(self.step)} is longer than the horizon "
                f"{format_duration(self.horizon)}",
            )
        steps = self.horizon / self.step
        if abs(steps - round(steps)) > 1e-9 * steps:
            raise ScenarioError(
                "horizon",
                f"{format_duration(self.horizon)} is not a whole number of steps of "
                f"{format_duration(self.step)}",
            )
        total_margin = 0.0
        for k, position in enumerate(self.account.positions):
            where = f"account.positions.{k}"
            if position.asset not in self.market.assets:
                raise ScenarioError(
                    f"{where}.asset",
                    f"unknown asset {position.asset!r} (assets: {list(self.market.assets)})",
                )
            try:
                tier = self.exchange.tier_for(position.asset, position.notional)
            except ScenarioError as error:
                raise ScenarioError(f"{where}.asset", error.reason) from None
            if position.leverage > tier.max_leverage + 1e-12:
                raise ScenarioError(
                    f"{where}.leverage",
                    f"{position.leverage:g}x is above the maximum {tier.max_leverage:g}x of "
                    f"{self.exchange.name} for a {position.asset} notional of "
                    f"{position.notional:,.0f}",
                )
            if position.margin > self.account.balance:
                raise ScenarioError(
                    f"{where}.margin",
                    f"margin {position.margin:g} is larger than the balance "
                    f"{self.account.balance:g}",
                )
            total_margin += position.margin
        if total_margin > self.account.balance * (1 + 1e-12):
            raise ScenarioError(
                "account.positions",
                f"the margins add up to {total_margin:g}, more than the balance "
                f"{self.account.balance:g}",
            )
        return self

    # -- conveniences for the numerics ------------------------------------------------

    @property
    def n_steps(self) -> int:
        """Number of grid steps over the horizon."""
        return round(self.horizon / self.step)

    @property
    def dt_years(self) -> float:
        """Grid step in years."""
        return self.step / SECONDS_PER_YEAR

    @property
    def horizon_years(self) -> float:
        """Horizon in years."""
        return self.horizon / SECONDS_PER_YEAR

    @property
    def asset_names(self) -> tuple[str, ...]:
        """Asset names in file order."""
        return self.market.asset_names

    def to_mapping(self) -> dict[str, Any]:
        """Plain JSON-able mapping (exchange inline) that loads back to an equal scenario."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the scenario (identifies a grid point's inputs)."""
        text = json.dumps(self.to_mapping(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def with_overrides(self, overrides: Mapping[str, Any] | Iterable[str]) -> Scenario:
        """A copy with dotted overrides applied and validated again."""
        return load_scenario(self.to_mapping(), overrides)


# -------------------------------------------------------------------------- loading


def read_yaml_mapping(path: str | Path, what: str = "scenario") -> dict[str, Any]:
    """Read a YAML file that must hold a mapping, with ``yaml.safe_load`` only.

    Raises
    ------
    ScenarioError
        If the file does not exist, is not valid YAML, or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(str(path), f"{what} file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = _one_line(getattr(error, "problem", None) or "")
        reason = f"not valid YAML: {problem or 'syntax error'}{where}"
        raise ScenarioError(str(path), reason) from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "not a UTF-8 text file") from None
    except OSError as error:
        raise ScenarioError(str(path), f"cannot read the file: {error.strerror}") from None
    if data is None:
        raise ScenarioError(str(path), f"the {what} file is empty")
    if not isinstance(data, dict):
        raise ScenarioError(
            str(path), f"a {what} file must be a YAML mapping, got {type(data).__name__}"
        )
    return data


def exchange_dirs(base_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for ``<name>.yaml`` exchange files, first match wins."""
    dirs: list[Path] = []
    if base_dir is not None:
        base = Path(base_dir)
        dirs += [base / "exchanges", base.parent / "exchanges"]
    dirs.append(PARAMS_DIR / "exchanges")
    return dirs


@functools.lru_cache(maxsize=64)
def _read_exchange_file(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Parsed exchange file, cached while the file is unchanged (a grid loads it per point)."""
    return read_yaml_mapping(path, what="exchange")


def load_exchange(name: str, *, base_dir: str | Path | None = None) -> dict[str, Any]:
    """Read an exchange file by name; the mapping is validated with the scenario.

    Raises
    ------
    ScenarioError
        If no file of that name exists.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ScenarioError("exchange", f"{name!r} is not an exchange name")
    dirs = exchange_dirs(base_dir)
    for folder in dirs:
        path = folder / f"{name}.yaml"
        if path.is_file():
            stat = path.stat()
            data = copy.deepcopy(_read_exchange_file(str(path), stat.st_mtime_ns, stat.st_size))
            data.setdefault("name", name)
            return data
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})
    raise ScenarioError("exchange", f"unknown exchange {name!r} (known: {', '.join(known)})")


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ScenarioError(item, "an override is written key.path=value")
    key, text = item.split("=", 1)
    if not key.strip():
        raise ScenarioError(item, "an override is written key.path=value; the key is empty")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def apply_overrides(
    data: Mapping[str, Any], overrides: Mapping[str, Any] | Iterable[str]
) -> dict[str, Any]:
    """Return a deep copy of ``data`` with dotted-key overrides applied.

    Parameters
    ----------
    data : mapping
        A raw scenario mapping.
    overrides : mapping or iterable of str
        ``{"account.positions.0.leverage": 20}`` or ``["account.positions.0.leverage=20"]``
        (values read as YAML). Integer parts index lists; missing mapping keys are created
        (and then validated like any other key).

    Raises
    ------
    ScenarioError
        If a path goes through a value that is not a mapping or list, or past a list's end.
    """
    result = json.loads(json.dumps(data, default=str))
    items = overrides.items() if isinstance(overrides, Mapping) else map(_parse_override, overrides)
    for key, value in items:
        parts = key.split(".")
        if not key or any(not part for part in parts):
            raise ScenarioError(key or repr(key), "empty part in the key path")
        node: Any = result
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ScenarioError(where, f"no item {part} in a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ScenarioError(where, "cannot set a key inside a plain value")
    return result


_DISCRIMINATOR_TAGS = {"merton", "kou"}

#: pydantic error types that mean "expected a mapping here".
_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type"}


def _one_line(text: str) -> str:
    """Collapse any whitespace run (newlines included) to one space."""
    return " ".join(text.split())


def _short(value: Any, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters so an error stays one short line."""
    text = repr(value)
    return text if len(text) <= width else f"{text[: width - 3]}..."


def _format_validation_error(error: ValidationError) -> ScenarioError:
    """Turn pydantic's error list into one :class:`ScenarioError` (the first error)."""
    errors = error.errors()
    first = errors[0]
    raw = [str(part) for part in first["loc"]]
    # a discriminated union puts the tag ("merton") in the location: jumps.merton.std
    loc = [
        part
        for k, part in enumerate(raw)
        if not (k > 0 and raw[k - 1] == "jumps" and part in _DISCRIMINATOR_TAGS)
    ]
    kind = first["type"]
    value = first.get("input")
    shown = "" if isinstance(value, dict | list) else f", got {_short(value)}"
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "missing key"
    elif kind == "union_tag_invalid":
        reason = f"unknown jump model {first['ctx']['tag']!r} (use 'merton' or 'kou')"
        if loc[-1:] != ["model"]:
            loc.append("model")
    elif kind == "union_tag_not_found":
        loc.append("model")
        reason = "missing key (the jump model: 'merton' or 'kou')"
    elif kind == _BOOLEAN_NUMBER:
        loc.append(str(first["ctx"]["key"]))
        reason = f"must be a number, got {first['ctx']['value']!r}"
    elif kind == "finite_number":
        reason = f"must be a finite number, got {value!r}"
    elif kind in _MAPPING_ERRORS:
        what = "an exchange name or a mapping" if loc == ["exchange"] else "a mapping"
        reason = f"must be {what}, got {type(value).__name__} {_short(value)}"
    elif kind == "list_type":
        reason = f"must be a list, got {type(value).__name__} {_short(value)}"
    elif kind == "too_short":
        reason = "must not be empty"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if kind == "value_error":
            shown = ""  # our own validators name the value when it helps
        elif shown and ", got " in message:
            shown = f" ({_short(value)})"  # "a valid integer, got a number with a fraction"
        reason = f"{message[:1].lower()}{message[1:]}{shown}"
    more = len(errors) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ScenarioError(_one_line(".".join(loc)) or "scenario", _one_line(reason))


def load_scenario(
    source: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | Iterable[str] = (),
) -> Scenario:
    """Load and validate a scenario.

    Parameters
    ----------
    source : path or mapping
        A YAML file, or a mapping with the same keys.
    overrides : mapping or iterable of str
        Dotted-key overrides applied before validation, see :func:`apply_overrides`.

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        With a one-line message naming the field and the reason.

    Examples
    --------
    >>> s = load_scenario("params/scenarios/baseline.yaml", {"account.positions.0.leverage": 20})
    >>> s.account.positions[0].leverage
    20.0
    """
    base_dir: Path | None = None
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        data = read_yaml_mapping(path)
        base_dir = path.resolve().parent
        data.setdefault("name", path.stem)
    if not isinstance(overrides, Mapping):
        overrides = dict(map(_parse_override, overrides))
    if isinstance(data.get("exchange"), str) and any(
        str(key).startswith("exchange.") for key in overrides
    ):
        # an override inside a named exchange: start from that file's mapping
        data["exchange"] = load_exchange(data["exchange"], base_dir=base_dir)
    data = apply_overrides(data, overrides)
    try:
        return Scenario.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        raise _format_validation_error(error) from None
