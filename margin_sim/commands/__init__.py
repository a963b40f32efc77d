"""One module per ``margin-sim`` subcommand; each has ``register(subparsers)``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from margin_sim.errors import MarginSimError

__all__ = ["add_scenario_options", "ensure_folder"]


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


def ensure_folder(folder: str | Path, option: str = "--out") -> Path:
    """Create an output folder before any work starts, or refuse it in one line.

    Parameters
    ----------
    folder : str or Path
        The folder the command will write into (created with its parents if missing).
    option : str
        The command-line option that named it, for the message.

    Returns
    -------
    Path
        ``folder``, which now exists.

    Raises
    ------
    MarginSimError
        If the folder cannot be created or is not a writable folder.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise MarginSimError(f"{option}: {path} is a file, not a folder") from None
    except OSError as error:
        raise MarginSimError(
            f"{option}: cannot create the folder {path}: {error.strerror or error}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MarginSimError(f"{option}: cannot write into the folder {path}")
    return path
