"""notebooks/validation.ipynb executes headless under papermill with tiny settings."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "paths": 600,
    "leverages": [10],
    "vols": [0.8],
    "horizons": ["1d"],
    "sides": ["long", "short"],
    "steps": ["1min", "1h", "1d"],
    "closes_paths": 2000,
    "kou_paths": 600,
    "convergence_engine_paths": [300, 1200],
    "convergence_baseline_paths": [30, 90],
}


@pytest.mark.notebook
def test_validation_notebook_runs_and_reports(tmp_path: Path) -> None:
    from margin_sim.notebooks import execute_notebook

    notebook, html = execute_notebook(
        REPO / "notebooks" / "validation.ipynb", TINY, tmp_path, "validation", cwd=REPO
    )
    assert html.stat().st_size > 10_000
    executed = nbformat.read(notebook, as_version=4)
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    # 2 sides x 3 steps rows against the closed form, the published examples, convergence
    assert "6 rows:" in text
    assert "Bybit isolated, 1 BTC short @ 8,000, 40x" in text
    assert "minute-step baseline (closes)" in text
