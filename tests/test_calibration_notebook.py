"""The calibration notebook executes headless under papermill in its tiny mode."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKET = ROOT.parent / "shared" / "data" / "market"


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.requires_market_data
@pytest.mark.skipif(not MARKET.is_dir(), reason=f"market data not at {MARKET}")
def test_calibration_notebook_runs_tiny(tmp_path: Path) -> None:
    import nbformat
    import papermill

    out = tmp_path / "calibration.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "calibration.ipynb"),
        str(out),
        parameters={"tiny": True, "data_dir": str(MARKET), "leverages": [20], "sides": ["long"]},
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    notebook = nbformat.read(out, as_version=4)
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )
    assert "Brier" in text and "BTC" in text
