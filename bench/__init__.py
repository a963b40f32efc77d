"""Benchmarks of margin_sim (not tests): ``python -m bench`` or ``make bench``.

Times workloads W1 and W2 of issue 5 with the engine, against a hand-written minute-step
numpy baseline (:mod:`bench.baseline`) and the ``sdepy`` jump-diffusion library
(:mod:`bench.peers`), and writes the table to ``bench/RESULTS.md``.
"""

__all__: list[str] = []
