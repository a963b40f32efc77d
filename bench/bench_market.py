"""Throughput of the path generator: CPU microseconds per path, and the normals it draws.

Run: ``.venv/bin/python bench/bench_market.py [--scenario params/scenarios/hedge.yaml]
[--paths 1000000] [--chunk 2000]`` (the engine uses chunks of 2,000 paths). Reports the wall
and CPU time of :func:`margin_sim.market.simulate_paths` after a warm-up chunk (so numba's
compilation or cache load is not counted), then the cost of the same number of diffusion
normals alone, from the compiled generator the market uses (:mod:`margin_sim._normals`) and
from numpy's ``standard_normal`` (SFC64), in ns per draw and as a ratio from the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import margin_sim as ms
from margin_sim import _normals
from margin_sim.market import simulate_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paths", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=2_000)
    parser.add_argument("--scenario", default="params/scenarios/baseline.yaml")
    args = parser.parse_args()
    scenario = ms.load_scenario(args.scenario)
    for _ in simulate_paths(scenario, paths=500, chunk_paths=500):
        pass  # warm-up: compile or load the kernels
    start, cpu_start = time.perf_counter(), time.process_time()
    events = 0
    for chunk in simulate_paths(scenario, paths=args.paths, chunk_paths=args.chunk):
        events += chunk.events.path.size
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n_assets = len(scenario.asset_names)
    print(
        f"{args.scenario}: {args.paths:,} paths x {scenario.n_steps} steps x {n_assets} assets,"
        f" {events:,} events: wall {elapsed:.2f} s, CPU {cpu:.2f} s"
        f" ({cpu / args.paths * 1e6:.2f} CPU us per path)"
    )
    buffer = np.empty((n_assets, 500, scenario.n_steps))
    blocks = max(args.paths // 500, 1)
    draws = blocks * buffer.size
    rng = np.random.Generator(np.random.SFC64(0))
    cpu_start = time.process_time()
    for _ in range(blocks):
        rng.standard_normal(out=buffer)
    numpy_ns = (time.process_time() - cpu_start) / draws * 1e9
    line = f"  the diffusion normals alone: numpy SFC64 {numpy_ns:.2f} ns per draw"
    if _normals.HAVE_NUMBA:
        state = _normals.seed_state(np.random.SeedSequence(0))
        _normals.fill_standard_normal(state, buffer)  # warm-up
        cpu_start = time.process_time()
        for _ in range(blocks):
            _normals.fill_standard_normal(state, buffer)
        compiled_ns = (time.process_time() - cpu_start) / draws * 1e9
        line += (
            f", compiled xoshiro256++ ziggurat {compiled_ns:.2f} ns per draw"
            f" ({numpy_ns / compiled_ns:.1f}x faster)"
        )
    print(line)


if __name__ == "__main__":
    main()
