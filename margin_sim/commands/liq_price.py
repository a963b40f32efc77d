"""``margin-sim liq-price``: liquidation and bankruptcy price of one position.

Examples
--------
``margin-sim liq-price --exchange bybit --side long --entry 20000 --qty 1 --wallet 400``
prints the liquidation price (19,700), the bankruptcy price and the distance from entry;
``--json`` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from margin_sim.errors import ExchangeError

__all__ = ["parse_other", "register"]


def register(subparsers: Any) -> None:
    """Add the ``liq-price`` subcommand."""
    parser = subparsers.add_parser(
        "liq-price",
        help="liquidation and bankruptcy price of one position",
        description=(
            "Liquidation price (mark price at which margin balance equals the maintenance "
            "requirement) and bankruptcy price (margin balance zero) of one position, "
            "isolated or cross, under an exchange's rules (params/exchanges/<name>.yaml)."
        ),
    )
    parser.add_argument("--exchange", default="binance-usdm", help="exchange rule file name")
    parser.add_argument("--asset", default="BTC", help="asset whose tier table applies")
    parser.add_argument("--side", required=True, help="long or short")
    parser.add_argument("--entry", type=float, required=True, help="entry price, quote currency")
    parser.add_argument("--qty", type=float, required=True, help="quantity, contracts (base)")
    parser.add_argument(
        "--wallet",
        type=float,
        required=True,
        help="isolated margin (isolated) or wallet balance (cross), quote currency",
    )
    parser.add_argument("--mode", default="isolated", help="isolated or cross")
    parser.add_argument("--mmr", type=float, default=None, help="flat maintenance rate")
    parser.add_argument(
        "--maint-amount", type=float, default=None, help="maintenance amount (cum) with --mmr"
    )
    parser.add_argument("--taker-fee", type=float, default=None, help="override the taker fee")
    parser.add_argument(
        "--other",
        action="append",
        default=[],
        metavar="SIDE:QTY:ENTRY:MARK[:MMR:CUM]",
        help="another cross position frozen at its mark (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run)


def parse_other(text: str) -> dict[str, Any]:
    """Read ``side:qty:entry:mark[:mmr:cum]`` into an ``others`` mapping.

    Raises
    ------
    ExchangeError
        If the text has the wrong number of parts or a part is not a number.
    """
    parts = text.split(":")
    if len(parts) not in (4, 6):
        raise ExchangeError(f"--other: {text!r} must be side:qty:entry:mark[:mmr:cum]")
    names = ("quantity", "entry_price", "mark_price", "mmr", "maint_amount")
    other: dict[str, Any] = {"side": parts[0]}
    for name, value in zip(names, parts[1:], strict=False):
        try:
            other[name] = float(value)
        except ValueError:
            raise ExchangeError(f"--other: {name} {value!r} is not a number") from None
    return other


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _run(args: argparse.Namespace) -> int:
    from margin_sim.exchange import bankruptcy_price, liquidation_price

    others = [parse_other(text) for text in args.other]
    common: dict[str, Any] = {
        "exchange": args.exchange,
        "mode": args.mode,
        "mmr": args.mmr,
        "maint_amount": args.maint_amount,
        "others": others,
        "taker_fee": args.taker_fee,
        "asset": args.asset,
    }
    liquidation = liquidation_price(args.side, args.entry, args.qty, args.wallet, **common)
    bankruptcy = bankruptcy_price(args.side, args.entry, args.qty, args.wallet, **common)
    distance = (liquidation - args.entry) / args.entry * 100.0
    if args.json:
        print(
            json.dumps(
                {
                    "exchange": args.exchange,
                    "asset": args.asset,
                    "side": args.side,
                    "mode": args.mode,
                    "entry_price": args.entry,
                    "quantity": args.qty,
                    "wallet": args.wallet,
                    "liquidation_price": _finite_or_none(liquidation),
                    "bankruptcy_price": _finite_or_none(bankruptcy),
                    "distance_pct": _finite_or_none(distance),
                }
            )
        )
        return 0
    where = f"{args.exchange} {args.mode} {args.side} {args.qty:g} {args.asset} @ {args.entry:,.2f}"
    if math.isnan(liquidation):
        line = f"{where}: no price liquidates this position"
    else:
        line = f"{where}: liquidation price {liquidation:,.2f} ({distance:+.2f}% from entry)"
    if not math.isnan(bankruptcy):
        line += f", bankruptcy price {bankruptcy:,.2f}"
    print(line)
    return 0
