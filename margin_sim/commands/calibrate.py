"""``margin-sim calibrate DATA...``: estimate a scenario market block from candle files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``calibrate`` subcommand."""
    parser = subparsers.add_parser(
        "calibrate",
        help="estimate a scenario market block (vol, jumps, wicks, correlation) from candles",
        description=(
            "Fit a jump-diffusion by maximum likelihood to bar returns, measure flash-crash "
            "wicks on the short bars, and write the scenario 'market' block as YAML."
        ),
    )
    parser.add_argument("data", nargs="+", help="candle files (csv, csv.gz, parquet), one each")
    parser.add_argument(
        "--asset",
        action="append",
        default=None,
        help="asset name for each file, in order (default: from the file name, BTCUSDT_... -> BTC)",
    )
    parser.add_argument("--bar", default="1h", help="bar length of the fitted returns (default 1h)")
    parser.add_argument(
        "--jumps", choices=["merton", "kou", "none"], default="merton", help="jump-size law"
    )
    parser.add_argument("--drift", action="store_true", help="write the estimated drift, not 0")
    parser.add_argument("--out", default=None, help="write the market block to this YAML file")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from margin_sim.calibrate import calibrate_market, write_market_yaml
    from margin_sim.durations import parse_duration
    from margin_sim.errors import DataError

    try:
        parse_duration(args.bar)
    except ValueError as error:
        raise DataError(f"--bar: {error}") from None
    if args.asset is not None:
        if len(args.asset) != len(args.data):
            raise DataError(
                f"--asset: {len(args.asset)} name(s) for {len(args.data)} file(s); "
                "give one --asset per file"
            )
        data: Any = dict(zip(args.asset, args.data, strict=True))
        if len(data) != len(args.asset):
            raise DataError("--asset: the same asset name is given twice")
    else:
        data = list(args.data)
    if args.out:
        from pathlib import Path

        from margin_sim.commands import ensure_folder

        if Path(args.out).is_dir():
            raise DataError(f"--out: {args.out} is a folder; name the YAML file to write")
        ensure_folder(Path(args.out).parent)
    calibration = calibrate_market(data, bar=args.bar, jumps=args.jumps)
    print(calibration.describe())
    if args.out:
        path = write_market_yaml(calibration, args.out, drift=args.drift)
        print(f"wrote {path}")
    else:
        import yaml

        sys.stdout.write(
            yaml.safe_dump({"market": calibration.market(drift=args.drift)}, sort_keys=False)
        )
    return 0
