"""``margin-sim grid GRID.yaml``: run a scenario grid, keep its table, write the grid report."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from margin_sim.commands import ensure_folder

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``grid`` subcommand."""
    parser = subparsers.add_parser(
        "grid",
        help="run a scenario grid into a Parquet table and write the grid report",
        description=(
            "Evaluate every point of a grid file (DESIGN.md section 8) in both margin modes, "
            "keep one row per point in <out>/<grid name>.parquet, and execute "
            "notebooks/grid.ipynb on the table (<out>/<grid name>.ipynb and .html). A killed "
            "run resumes where it stopped; points whose inputs did not change are not "
            "computed again."
        ),
    )
    parser.add_argument("grid", help="grid YAML file")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local worker processes (default: cores)",
    )
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    parser.add_argument(
        "--executor",
        choices=("process", "inline", "dask-local"),
        default=None,
        help="process pool (default), this process only, or a Dask LocalCluster",
    )
    parser.add_argument(
        "--out", default="results", metavar="DIR", help="output folder (default: results/)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0.01,
        metavar="P",
        help="ruin-probability budget of the leverage frontier (default: 0.01)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not execute grid.ipynb")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_grid)


def _leverage(value: float) -> str:
    return "none" if math.isnan(value) else f"{value:g}x"


def _grid(args: argparse.Namespace) -> int:
    from margin_sim.errors import GridError
    from margin_sim.grid import leverage_frontier, load_grid, run_grid

    if not 0.0 < args.budget < 1.0:
        raise GridError(f"--budget: must be a probability between 0 and 1, got {args.budget}")
    if args.scheduler is not None and args.executor not in (None, "dask"):
        raise GridError(f"--executor: {args.executor} cannot be used with --scheduler")
    grid = load_grid(args.grid)
    ensure_folder(args.out)
    table = run_grid(
        grid,
        out=args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        executor=args.executor,
        progress=not args.no_progress,
    )
    path = Path(table.attrs["table"])
    print(
        f"{path}: {len(table)} points "
        f"({table.attrs['computed']} computed, {table.attrs['reused']} already stored)"
    )
    try:
        frontier = leverage_frontier(table, budget=args.budget)
    except GridError:
        frontier = None
    if frontier is not None and len(frontier) and frontier["mode"].is_unique:
        # one frontier per mode (no other axis varies): one line says it all
        shown = ", ".join(
            f"{row.mode} {_leverage(row.frontier_leverage)}" for row in frontier.itertuples()
        )
        print(f"leverage frontier (ruin probability < {args.budget:g}): {shown}")
    if not args.no_report:
        from margin_sim.notebooks import NOTEBOOK_DIR, NotebookExecutionError, execute_notebook

        try:
            notebook, html = execute_notebook(
                NOTEBOOK_DIR / "grid.ipynb",
                {"table": str(path.resolve()), "ruin_budget": args.budget},
                args.out,
                grid.name,
            )
        except NotebookExecutionError as error:
            # the table is complete; only the write-up failed
            print(f"margin-sim: error: grid report: {error}", file=sys.stderr)
            return 1
        print(f"report: {html} (notebook {notebook})")
    return 0
