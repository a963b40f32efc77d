"""``margin-sim report SCENARIO.yaml...``: papermill research reports as self-contained HTML."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from margin_sim.commands import add_scenario_options, ensure_folder

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write an HTML research report of each scenario (papermill notebook)",
        description=(
            "Run notebooks/scenario.ipynb with papermill for each scenario and write "
            "<out>/<stem>.ipynb and a self-contained, interactive <out>/<stem>.html. "
            "Several scenarios run in parallel processes."
        ),
    )
    parser.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML file(s)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports/)")
    add_scenario_options(parser, every=True)
    parser.add_argument(
        "--jobs", type=int, default=None, help="reports run at once (default: one per CPU)"
    )
    parser.add_argument(
        "--timeout", type=int, default=600, help="longest time one notebook cell may run, s"
    )
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from margin_sim.errors import ScenarioError
    from margin_sim.notebooks import NotebookExecutionError, run_reports

    if args.timeout < 1:
        raise ScenarioError("--timeout", f"must be at least 1 second, got {args.timeout}")
    ensure_folder(args.out)
    try:
        html_paths = run_reports(
            args.scenarios,
            args.out,
            overrides=args.overrides,
            paths=args.paths,
            seed=args.seed,
            jobs=args.jobs,
            timeout=args.timeout,
        )
    except NotebookExecutionError as error:
        print(f"margin-sim: report failed: {error}", file=sys.stderr)
        return 1
    for path in html_paths:
        print(path)
    return 0
