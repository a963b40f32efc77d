"""Throughput of the path generator: seconds per million single-asset paths.

Run: ``.venv/bin/python bench/bench_market.py [--paths 1000000] [--chunk 10000]``. Uses the
baseline scenario (BTC, 30 days of hourly steps, Merton jumps and wicks) and reports the wall
time of :func:`margin_sim.market.simulate_paths`, with a split of the time spent in the
diffusion draws alone for reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import margin_sim as ms
from margin_sim.market import simulate_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paths", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--scenario", default="params/scenarios/baseline.yaml")
    args = parser.parse_args()
    scenario = ms.load_scenario(args.scenario)
    start, cpu_start = time.perf_counter(), time.process_time()
    events = 0
    for chunk in simulate_paths(scenario, paths=args.paths, chunk_paths=args.chunk):
        events += chunk.events.path.size
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n_assets = len(scenario.asset_names)
    print(
        f"{args.scenario}: {args.paths:,} paths x {scenario.n_steps} steps x {n_assets} assets,"
        f" {events:,} events: wall {elapsed:.2f} s, CPU {cpu:.2f} s"
        f" ({cpu / args.paths * 1e6:.2f} CPU s per million paths)"
    )
    rng = np.random.Generator(np.random.SFC64(0))
    buffer = np.empty((n_assets, 500, scenario.n_steps))
    cpu_start = time.process_time()
    for _ in range(args.paths // 500):
        rng.standard_normal(out=buffer)
    print(f"  the diffusion normals alone: CPU {time.process_time() - cpu_start:.2f} s")


if __name__ == "__main__":
    main()
