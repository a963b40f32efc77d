"""Explorer speed: time from a slider change to updated figures, on the callback itself.

Target (issue 6): median under 250 ms for the default explorer settings (baseline scenario,
1,000 paths, 7-day horizon, FigureWidgets). ``python -m bench.explorer`` prints the numbers;
``bench/__main__.py`` calls :func:`bench_explorer_slider`.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

__all__ = ["TARGET_SLIDER_SECONDS", "bench_explorer_slider"]

#: Median time from a leverage-slider change to the redrawn figures, seconds (issue 6).
TARGET_SLIDER_SECONDS = 0.25


def _median_seconds(set_value: Any, values: list[Any]) -> tuple[float, list[float]]:
    times = []
    for value in values:
        start = time.perf_counter()
        set_value(value)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_explorer_slider(repeats: int = 20, market_repeats: int = 5) -> dict[str, Any]:
    """Time the explorer's slider callbacks with the default settings.

    The leverage slider is moved through ``repeats`` distinct values (the callback of a
    drag: one engine evaluation on the cached paths and in-place ``batch_update`` of the three
    FigureWidgets). A market slider (volatility) is moved ``market_repeats`` times: that
    regenerates the paths and the probability-against-leverage curve (8 leverages), and
    applies on release rather than while dragging.

    Parameters
    ----------
    repeats : int
        Leverage-slider moves timed.
    market_repeats : int
        Volatility-slider moves timed.

    Returns
    -------
    dict
        ``leverage_median_s``, ``leverage_max_s``, ``volatility_median_s``, ``startup_s``,
        ``target_s``, ``meets_target`` (leverage median below the target), ``settings``.
    """
    from margin_sim.widgets import Explorer

    start = time.perf_counter()
    explorer = Explorer()  # the defaults of notebooks/explore.ipynb
    startup = time.perf_counter() - start
    slider = explorer.controls["leverage"]
    explorer.controls["leverage"].value = 11.0  # warm-up: first-call costs out of the timing
    leverages = [float(x) for x in range(2, 2 + repeats)]
    median, times = _median_seconds(lambda v: setattr(slider, "value", v), leverages)
    vols = [0.5 + 0.05 * k for k in range(market_repeats)]
    vol_slider = explorer.controls["vol"]
    vol_median, _ = _median_seconds(lambda v: setattr(vol_slider, "value", v), vols)
    return {
        "leverage_median_s": median,
        "leverage_max_s": max(times),
        "volatility_median_s": vol_median,
        "startup_s": startup,
        "target_s": TARGET_SLIDER_SECONDS,
        "meets_target": median < TARGET_SLIDER_SECONDS,
        "settings": {
            "paths": explorer.paths,
            "horizon": explorer.settings.horizon,
            "leverages_in_curve": len(explorer.leverages),
        },
    }


if __name__ == "__main__":  # pragma: no cover
    result = bench_explorer_slider()
    print(
        f"explorer, {result['settings']['paths']:,} paths over {result['settings']['horizon']}: "
        f"leverage slider median {1000 * result['leverage_median_s']:.0f} ms "
        f"(max {1000 * result['leverage_max_s']:.0f} ms, target "
        f"{1000 * result['target_s']:.0f} ms: {'met' if result['meets_target'] else 'MISSED'}); "
        f"volatility slider median {1000 * result['volatility_median_s']:.0f} ms; "
        f"startup {result['startup_s']:.1f} s"
    )
