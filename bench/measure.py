"""One measurement in a fresh process: ``python -m bench.measure TOOL WORKLOAD PATHS SEED``.

Prints one JSON object: wall seconds of the run (scenario loading and imports excluded),
the peak resident memory of the whole process (``getrusage``, MiB), and the summary by mode
(liquidation and ruin probabilities with standard errors). Running each measurement in its own
process keeps the peak-memory figure of one tool from leaking into another's.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from bench.workloads import load_workload

__all__ = ["TOOLS", "measure"]

TOOLS: tuple[str, ...] = ("engine", "baseline", "sdepy")

_FIELDS = (
    "liquidation_probability",
    "liquidation_probability_se",
    "ruin_probability",
    "ruin_probability_se",
)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process or of its largest worker, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, workers) / 1024.0  # KiB on Linux


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished workers, seconds."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def measure(tool: str, workload: str, paths: int, seed: int, workers: int = 1) -> dict[str, Any]:
    """Run ``tool`` on ``workload`` with ``paths`` paths; see the module docstring.

    ``workers`` worker processes for the engine (the others run in one process).
    """
    case = load_workload(workload)
    scenario = case.scenario
    cpu_start = _cpu_seconds()
    if tool == "engine":
        import margin_sim as ms

        ms.simulate(scenario, paths=min(paths, 200), seed=seed + 1, progress=False)  # warm up
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        result = ms.simulate(scenario, paths=paths, seed=seed, progress=False, workers=workers)
        seconds = time.perf_counter() - start
        table = result.summary()
        summary = {
            str(mode): {f: float(table.loc[mode, f]) for f in _FIELDS} for mode in table.index
        }
    elif tool == "baseline":
        from bench.baseline import simulate_closes

        start = time.perf_counter()
        summary = simulate_closes(scenario, paths=paths, seed=seed).summary()
        seconds = time.perf_counter() - start
    elif tool == "sdepy":
        from bench.peers import simulate_sdepy

        start = time.perf_counter()
        summary = simulate_sdepy(scenario, paths=paths, seed=seed).summary()
        seconds = time.perf_counter() - start
    else:
        raise ValueError(f"unknown tool {tool!r}; use one of {', '.join(TOOLS)}")
    return {
        "tool": tool,
        "workload": workload,
        "paths": paths,
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu_start,
        "workers": workers if tool == "engine" else 1,
        "peak_rss_mib": _peak_rss_mib(),
        "summary": summary,
    }


if __name__ == "__main__":
    tool_, workload_, paths_, seed_ = sys.argv[1:5]
    workers_ = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    print(json.dumps(measure(tool_, workload_, int(paths_), int(seed_), workers_)))
