"""One module per ``margin-sim`` subcommand; each has ``register(subparsers)``."""

from __future__ import annotations

import argparse

__all__ = ["add_scenario_options"]


def add_scenario_options(parser: argparse.ArgumentParser, *, every: bool = False) -> None:
    """``--paths``, ``--seed`` and repeatable ``--set KEY.PATH=VALUE`` (run, report)."""
    parser.add_argument("--paths", type=int, default=None, help="number of paths")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help=(
            "override a scenario key"
            + (" in every scenario" if every else ", e.g. account.positions.0.leverage=20")
            + " (repeatable)"
        ),
    )
