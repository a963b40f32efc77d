"""``margin-sim run SCENARIO.yaml``: simulate one scenario and print the summary."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from margin_sim.commands import add_scenario_options

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="simulate a scenario in every margin mode and print the summary",
        description="Simulate a scenario in every margin mode on the same paths.",
    )
    parser.add_argument("scenario", help="scenario YAML file")
    add_scenario_options(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (same numbers for any count; default: one per CPU)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _run(args: argparse.Namespace) -> int:
    from margin_sim.errors import ScenarioError
    from margin_sim.scenario import load_scenario

    overrides = list(args.overrides)
    if args.paths is not None:
        if args.paths < 1:
            raise ScenarioError("--paths", f"must be a positive number of paths, got {args.paths}")
        overrides.append(f"paths={args.paths}")
    if args.seed is not None:
        if args.seed < 0:
            raise ScenarioError("--seed", f"must be a non-negative integer, got {args.seed}")
        overrides.append(f"seed={args.seed}")
    scenario = load_scenario(args.scenario, overrides)
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    if workers < 1:
        raise ScenarioError("--workers", f"must be at least 1, got {workers}")
    # imported after validation so that bad input is reported before any numerics load
    from margin_sim._allocator import keep_freed_memory
    from margin_sim.engine import simulate

    keep_freed_memory()  # this process is ours: reuse freed chunk memory
    result = simulate(scenario, progress=not args.no_progress and not args.json, workers=workers)
    summary = result.summary()
    if args.json:
        payload = {
            "scenario": scenario.name,
            "paths": result.paths,
            "seed": result.seed,
            "modes": {
                mode: {key: _clean(float(value)) for key, value in row.items()}
                for mode, row in summary.to_dict(orient="index").items()
            },
        }
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(result.report())
    return 0
