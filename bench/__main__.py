"""``python -m bench [--quick]``: time the engine against the baseline and sdepy, write RESULTS.md.

Every measurement runs in its own process (:mod:`bench.measure`) so that its peak memory is its
own. The baseline and sdepy run on fewer paths and are scaled per path; all tools run in the
same invocation, on the same machine, so the speed ratios compare like with like.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers import sdepy_available
from bench.workloads import WORKLOADS, load_workload
from margin_sim.reference import discrete_monitoring_probability, liquidation_barrier

__all__ = ["main", "render"]

HERE = Path(__file__).resolve().parent

#: Targets of issue 5 ("Speed and memory").
TARGET_SPEEDUP = 50.0
TARGET_SECONDS = 20.0
TARGET_MEMORY_MIB = 2048.0


def _run(tool: str, workload: str, paths: int, seed: int, workers: int = 1) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.measure",
        tool,
        workload,
        str(paths),
        str(seed),
        str(workers),
    ]
    print(f"  {workload:<3} {tool:<8} {paths:>9,} paths ...", end="", flush=True, file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f" failed: {last}", file=sys.stderr)
        return {"tool": tool, "workload": workload, "paths": paths, "error": last}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f" {row['seconds']:.1f} s", file=sys.stderr)
    return row


def _fmt_p(summary: dict[str, Any], mode: str) -> str:
    if mode not in summary:
        return "-"
    p = summary[mode]["liquidation_probability"]
    se = summary[mode]["liquidation_probability_se"]
    return f"{p:.4f} ± {se:.4f}"


def render(rows: list[dict[str, Any]], *, command: str, quick: bool) -> str:
    """The results as Markdown (the content of bench/RESULTS.md)."""
    lines = [
        "# Benchmark results",
        "",
        f"Reproduce with `{command}` (from the repository root). Generated "
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"
        + (" — QUICK run (scaled-down path counts)." if quick else "."),
        "",
        "Tools: **engine** = `margin_sim.simulate` (hourly grid, Brownian-bridge crossings, "
        "per-path probabilities); **baseline** = `bench/baseline.py`, a hand-written numpy Euler "
        "simulation on 1-minute steps that checks closes; **sdepy** = sdepy 1.2 "
        "`merton_jumpdiff_process` minute paths, checked at closes the same way (single asset, "
        "no wicks: J1 and D1 only). Baseline and sdepy run fewer paths; their time for 1M paths "
        "is scaled per path. The engine runs on `workers` processes (wall time is what a user "
        "waits); the speed-up compares CPU time per path (all processes), so more cores do not "
        "inflate it. Peak memory is the peak resident set of the measuring process or of its "
        "largest worker.",
        "",
        "| workload | tool | workers | paths run | wall (s) | CPU (s) | wall for 1M paths (s) "
        "| speed-up (CPU per path) | P(liq) isolated | P(liq) cross | error vs closed form "
        "| peak memory (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["workload"], r["tool"]): r for r in rows}
    notes: list[str] = []
    for row in rows:
        name, tool = row["workload"], row["tool"]
        if "error" in row:
            lines.append(f"| {name} | {tool} | {row['paths']:,} | failed: {row['error']} |||||||")
            continue
        rate = row["paths"] / row["seconds"]
        cpu = row.get("cpu_seconds", row["seconds"])
        base = by_key.get((name, "baseline"))
        speedup = "-"
        if tool == "engine" and base and "error" not in base:
            base_cpu = base.get("cpu_seconds", base["seconds"]) / base["paths"]
            speedup = f"{base_cpu / (cpu / row['paths']):,.0f}x"
        summary = row["summary"]
        error = "-"
        reference = load_workload(name).reference
        if reference is not None and "isolated" in summary:
            p = summary["isolated"]["liquidation_probability"]
            se = summary["isolated"]["liquidation_probability_se"]
            error = f"{p - reference:+.4f} ({(p - reference) / se:+.1f} SE)" if se > 0 else "-"
        lines.append(
            f"| {name} | {tool} | {row.get('workers', 1)} | {row['paths']:,} "
            f"| {row['seconds']:.2f} | {cpu:.2f} "
            f"| {1e6 / rate:,.1f} | {speedup} | {_fmt_p(summary, 'isolated')} "
            f"| {_fmt_p(summary, 'cross')} | {error} | {row['peak_rss_mib']:,.0f} |"
        )
    # D1: closed form, what minute closes converge to, and efficiency at equal compute time
    d1 = load_workload("D1")
    if d1.reference is not None:
        pos = d1.scenario.account.positions[0]
        asset = d1.scenario.market.assets[pos.asset]
        closes = float(
            discrete_monitoring_probability(
                liquidation_barrier(pos.leverage, 0.005, pos.side),
                asset.vol,
                d1.scenario.horizon_years,
                60.0 / (365 * 24 * 3600),
            )
        )
        notes.append(
            f"D1 closed form (GBM first passage, reflection principle): {d1.reference:.6f}; "
            f"checking 1-minute closes converges to {closes:.6f} (Broadie-Glasserman-Kou), a "
            f"bias of {closes - d1.reference:+.6f} no number of paths removes."
        )
        engine, base = by_key.get(("D1", "engine")), by_key.get(("D1", "baseline"))
        if engine and base and "error" not in engine and "error" not in base:
            var_time = []
            for r in (engine, base):
                se = r["summary"]["isolated"]["liquidation_probability_se"]
                var_time.append(se**2 * r["seconds"])  # (variance per path) x (time per path)
            if var_time[0] > 0:
                notes.append(
                    f"D1 efficiency: at equal compute time the engine's standard error is "
                    f"{np.sqrt(var_time[1] / var_time[0]):,.0f}x smaller than the baseline's "
                    "(standard error squared times run time, measured)."
                )
    checks = []
    for name in ("W1", "W2"):
        engine = by_key.get((name, "engine"))
        if engine and "error" not in engine:
            seconds_1m = engine["seconds"] * 1e6 / engine["paths"]
            checks.append(
                f"{name}: engine {seconds_1m:.1f} s per 1M paths (target < {TARGET_SECONDS:.0f} s"
                f": {'met' if seconds_1m < TARGET_SECONDS else 'NOT met'}), peak "
                f"{engine['peak_rss_mib']:,.0f} MiB (target < {TARGET_MEMORY_MIB:,.0f} MiB: "
                f"{'met' if engine['peak_rss_mib'] < TARGET_MEMORY_MIB else 'NOT met'})"
            )
    engine, base = by_key.get(("W1", "engine")), by_key.get(("W1", "baseline"))
    if engine and base and "error" not in engine and "error" not in base:
        engine_cpu = engine.get("cpu_seconds", engine["seconds"]) / engine["paths"]
        base_cpu = base.get("cpu_seconds", base["seconds"]) / base["paths"]
        ratio = base_cpu / engine_cpu
        checks.append(
            f"W1: engine {ratio:,.0f}x less CPU per path than the minute-step baseline "
            f"(target >= {TARGET_SPEEDUP:.0f}x: {'met' if ratio >= TARGET_SPEEDUP else 'NOT met'})"
        )
    if notes or checks:
        lines += ["", "Notes:", ""] + [f"- {text}" for text in notes + checks]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="scaled-down path counts (~1 min)")
    parser.add_argument("--paths", type=int, help="engine paths (default 1,000,000)")
    parser.add_argument("--baseline-paths", type=int, help="baseline paths (default 2,000)")
    parser.add_argument("--peer-paths", type=int, help="sdepy paths (default 400)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--no-sdepy", action="store_true", help="skip the sdepy peer")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="engine worker processes"
    )
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    engine_paths = args.paths or (20_000 if args.quick else 1_000_000)
    baseline_paths = args.baseline_paths or (200 if args.quick else 2_000)
    peer_paths = args.peer_paths or (100 if args.quick else 400)
    use_sdepy = not args.no_sdepy and sdepy_available()
    if not args.no_sdepy and not use_sdepy:
        print("sdepy is not installed (pip install -e '.[bench]'); skipping it", file=sys.stderr)
    rows = []
    for name in args.workloads.split(","):
        case = load_workload(name.strip())
        rows.append(_run("engine", case.name, engine_paths, args.seed, args.workers))
        rows.append(_run("baseline", case.name, baseline_paths, args.seed))
        if use_sdepy and case.single_asset_jump_diffusion:
            rows.append(_run("sdepy", case.name, peer_paths, args.seed))
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m bench", *given])
    text = render(rows, command=command, quick=args.quick)
    print(text)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
