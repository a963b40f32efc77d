"""Cost per path of different books, and what the compiled fast paths buy, in one process.

``python -m bench.books [--paths 20000]`` evaluates a few books (one position, a hedge, each
with and without a stop-loss, and a hedge whose isolated margins are most of the wallet, so
that isolated ruin is possible) on one process and prints CPU microseconds per path with the
engine's fast paths on and, for comparison in the same run, switched off
(``engine.FAST_SINGLE_POSITION`` / ``engine.FAST_MULTI_POSITION``): the ratio is the speed-up
of the compiled kernels over the general numpy code on the same paths. Timings are CPU time
of this process after a warm-up run (compilation excluded); they vary by ~10% on a shared
machine.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import margin_sim as ms
from margin_sim import engine

__all__ = ["BOOKS", "time_book"]

#: name -> (scenario file, overrides)
BOOKS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline (1 position)": ("params/scenarios/baseline.yaml", {}),
    "baseline, 5% stop-loss": (
        "params/scenarios/baseline.yaml",
        {"account.positions.0.stop_loss": 0.05},
    ),
    "hedge (2 positions)": ("params/scenarios/hedge.yaml", {}),
    "hedge, 8% stop on the long": (
        "params/scenarios/hedge.yaml",
        {"account.positions.0.stop_loss": 0.08},
    ),
    "hedge, 2,050 wallet (ruin)": (  # isolated ruin possible: margins are most of the wallet
        "params/scenarios/hedge.yaml",
        {"account.balance": 2050, "ruin.equity_fraction": 0.3},
    ),
}


def time_book(file: str, overrides: dict[str, Any], paths: int, fast: bool) -> float:
    """CPU microseconds per path of one run (both modes), after a warm-up run."""
    scenario = ms.load_scenario(file, overrides)
    saved = engine.FAST_SINGLE_POSITION, engine.FAST_MULTI_POSITION
    engine.FAST_SINGLE_POSITION = engine.FAST_MULTI_POSITION = fast
    try:
        ms.simulate(scenario, paths=1000, seed=1, progress=False)  # compile, warm caches
        start = time.process_time()
        ms.simulate(scenario, paths=paths, seed=1, progress=False)
        return (time.process_time() - start) / paths * 1e6
    finally:
        engine.FAST_SINGLE_POSITION, engine.FAST_MULTI_POSITION = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'book':<30}{'fast (us/path)':>16}{'general (us/path)':>19}{'ratio':>8}")
    for name, (file, overrides) in BOOKS.items():
        fast = time_book(file, overrides, args.paths, True)
        general = time_book(file, overrides, args.paths, False)
        print(f"{name:<30}{fast:>16.1f}{general:>19.1f}{general / fast:>7.1f}x")


if __name__ == "__main__":
    main()
