"""The ``margin-sim`` command: a thin layer over the Python API.

Each subcommand lives in its own module of :mod:`margin_sim.commands` with a
``register(subparsers)`` function that adds its parser and sets ``handler``. Errors caused by
user input print one line on stderr and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from margin_sim import __version__
from margin_sim.errors import MarginSimError

__all__ = ["main"]

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "margin_sim.commands.run",
    "margin_sim.commands.report",
    "margin_sim.commands.grid",
    "margin_sim.commands.liq_price",
    "margin_sim.commands.calibrate",
)


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit code 2.

    argparse prints the whole usage block before the message; the project's rule is one line
    per error, so the message points at ``--help`` instead (subparsers inherit the class).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = _OneLineParser(
        prog="margin-sim",
        description="Isolated versus cross margin for leveraged perpetual futures, by Monte Carlo.",
    )
    parser.add_argument("--version", action="version", version=f"margin-sim {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:  # that subcommand is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader went away (``margin-sim run --json | head``): stop quietly, like
        # other Unix tools; point stdout at devnull so the exit-time flush cannot complain
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the pipe
    except MarginSimError as error:
        print(f"margin-sim: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("margin-sim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
