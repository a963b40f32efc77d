"""Notebooks under papermill, the HTML reports and the explorer's widgets."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import yaml

import margin_sim as ms
from margin_sim.cli import main
from margin_sim.notebooks import (
    NOTEBOOK_DIR,
    PLOTLY_MIME,
    NotebookExecutionError,
    execute_notebook,
    export_html,
)

pytestmark = pytest.mark.notebook

OVERRIDES = ["horizon=1d"]
PATHS = 150
SEED = 3


# ---------------------------------------------------------------------------- helpers


def _decode(value: Any) -> Any:
    """Plotly 6+ writes numeric arrays as base64 typed arrays: turn them into numpy."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            dims = [int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape
            array = array.reshape(dims)
        return array
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def _figures_in_html(text: str) -> dict[str, dict[str, Any]]:
    """Every ``Plotly.newPlot(id, data, layout, config)`` call of a page, by figure name."""
    decoder = json.JSONDecoder()
    figures: dict[str, dict[str, Any]] = {}
    for match in re.finditer(r"Plotly\.newPlot\(\s*", text):
        position = match.end()
        parts = []
        for _ in range(3):  # id, data, layout
            value, position = decoder.raw_decode(text, position)
            parts.append(value)
            position = re.compile(r"\s*,\s*").match(text, position).end()
        _, data, layout = parts
        name = layout.get("meta", {}).get("figure", f"unnamed-{len(figures)}")
        figures.setdefault(name, {"data": _decode(data), "layout": layout, "count": 0})
        figures[name]["count"] += 1
    return figures


def _text(html: str) -> str:
    """Visible text of a page, roughly: tags removed, whitespace collapsed."""
    without_scripts = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", without_scripts))


def _write_scenario(path: Path, leverage: float) -> Path:
    data = {
        "name": path.stem,
        "seed": 1,
        "paths": 200,
        "horizon": "2d",
        "step": "1h",
        "market": {
            "assets": {
                "BTC": {
                    "price": 60000.0,
                    "vol": 0.8,
                    "jumps": {"model": "merton", "per_year": 20.0, "mean": -0.02, "std": 0.05},
                    "wicks": {"per_year": 100.0, "depth_mean": 0.06, "depth_max": 0.5},
                }
            }
        },
        "exchange": "binance-usdm",
        "account": {
            "balance": 10000.0,
            "positions": [{"asset": "BTC", "side": "long", "leverage": leverage, "margin": 1000}],
        },
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------ scenario report


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two reports written by ``margin-sim report`` in parallel processes."""
    folder = tmp_path_factory.mktemp("reports")
    first = _write_scenario(folder / "steady.yaml", 20.0)
    second = _write_scenario(folder / "wild.yaml", 50.0)
    out = folder / "out"
    argv = ["report", str(first), str(second), "--out", str(out), "--jobs", "2"]
    argv += ["--paths", str(PATHS), "--seed", str(SEED)]
    for item in OVERRIDES:
        argv += ["--set", item]
    assert main(argv) == 0
    return {"scenario": first, "html": out / "steady.html", "other": out / "wild.html"}


@pytest.mark.slow
def test_report_html_holds_every_figure_and_the_simulated_numbers(
    reports: dict[str, Path],
) -> None:
    html = reports["html"].read_text(encoding="utf-8")
    figures = _figures_in_html(html)
    assert {"sample_paths", "final_equity", "survival", "summary_table"} <= set(figures)
    for name, figure in figures.items():
        assert figure["data"], name
        assert any(
            len(np.atleast_1d(trace.get("y", trace.get("cells", {}).get("values", [])))) > 0
            for trace in figure["data"]
        ), name

    scenario = ms.load_scenario(reports["scenario"], OVERRIDES)
    result = ms.simulate(scenario, paths=PATHS, seed=SEED, progress=False)
    summary = result.summary()

    from margin_sim.plots import SUMMARY_COLUMNS

    table = figures["summary_table"]["data"][0]
    present = [c for c in SUMMARY_COLUMNS if c[0] in summary.columns]
    assert {"liquidation_probability", "ruin_probability"} <= {c[0] for c in present}
    assert table["header"]["values"] == ["mode", *(header for _, header, _ in present)]
    cells = table["cells"]["values"]
    assert list(cells[0][:2]) == ["isolated", "cross"]
    for (column, _, _), shown in zip(present, cells[1:], strict=True):
        shown = [
            np.nan if v in (None, "none") else float(str(v).replace(",", "")) for v in shown[:2]
        ]
        expected = summary[column].to_numpy(dtype=float)
        # the median hours are shown as text rounded to 0.1 h; every other cell is the number
        rounded = column == "median_hours_to_liquidation"
        np.testing.assert_allclose(
            shown,
            expected,
            rtol=0.0 if rounded else 1e-12,
            atol=0.05 if rounded else 0.0,
            equal_nan=True,
            err_msg=column,
        )

    survival = figures["survival"]["data"]
    curves = [t for t in survival if t.get("mode") == "lines"]
    for trace in curves:
        expected = result.survival(trace["name"])["survival"].to_numpy()
        np.testing.assert_allclose(np.asarray(trace["y"], dtype=float), expected, rtol=1e-12)
    assert {t["name"] for t in curves} == {"isolated", "cross"}

    equity = figures["final_equity"]["data"]
    per_path = result.per_path
    for trace in equity:
        mode = trace["name"].split(" ")[0]
        assert np.isclose(np.sum(trace["y"]), 1.0)
        expected_mean = per_path.loc[per_path["mode"] == mode, "final_equity"].mean()
        assert f"mean {expected_mean:,.0f}" in trace["name"]

    bars = ms.sample_paths(scenario, 5, seed=SEED)
    path0 = bars.loc[(bars["path"] == 0) & (bars["asset"] == "BTC"), "last_close"].to_numpy()
    line = next(t for t in figures["sample_paths"]["data"] if t["name"] == "path 0: last")
    np.testing.assert_allclose(np.asarray(line["y"], dtype=float), path0, rtol=1e-6)

    text = _text(html)
    iso = summary.loc["isolated"]
    assert f"{100 * iso.liquidation_probability:.2f}%" in text  # the conclusion quotes it
    assert "injected by papermill" in text
    assert "± 0.00%" not in text  # an exact zero is said in words, with its 3/N bound
    for mode in ("isolated", "cross"):
        if summary.loc[mode, "ruin_probability"] == 0:
            assert f"zero on all {PATHS:,} paths" in text
    assert f"seed = {SEED}" in text and f"paths = {PATHS}" in text
    assert "ms.simulate(" not in text  # code inputs are hidden


@pytest.mark.slow
def test_report_is_self_contained(reports: dict[str, Path]) -> None:
    from plotly.offline import get_plotlyjs

    html = reports["html"].read_text(encoding="utf-8")
    signature = get_plotlyjs()[:300]
    assert html.count(signature) == 1  # plotly.js inlined once, before the first figure
    assert html.index(signature) < html.index("Plotly.newPlot(")
    external = re.findall(r'<script[^>]+src="(https?://[^"]+)"', html)
    assert external == []  # no TeX in the report, so no MathJax from a CDN either
    assert "require.min.js" not in html
    other = reports["other"].read_text(encoding="utf-8")
    assert len(_figures_in_html(other)) >= 4
    notebook = nbformat.read(reports["html"].with_suffix(".ipynb"), as_version=4)
    tags = [tag for cell in notebook.cells for tag in cell.metadata.get("tags", [])]
    assert "injected-parameters" in tags


def test_export_loads_mathjax_only_for_notebooks_with_math(tmp_path: Path) -> None:
    def external_scripts(markdown: str) -> list[str]:
        node = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)])
        html = export_html(node, tmp_path / "page.html").read_text(encoding="utf-8")
        return re.findall(r'<script[^>]+src="(https?://[^"]+)"', html)

    assert external_scripts("Ruin costs 5,000 USDT; no formulas here.") == []
    with_math = external_scripts(r"The bridge: $p = e^{-2 (x_0 - b)(x_1 - b) / \sigma^2 dt}$")
    assert len(with_math) == 1 and "mathjax" in with_math[0]


def test_report_refuses_bad_input_before_running(tmp_path: Path, capsys: Any) -> None:
    good = _write_scenario(tmp_path / "a.yaml", 10.0)
    assert main(["report", str(good), "--set", "account.positions.0.leverage=500"]) == 2
    assert "account.positions.0.leverage" in capsys.readouterr().err
    twin = tmp_path / "other"
    twin.mkdir()
    _write_scenario(twin / "a.yaml", 5.0)
    assert main(["report", str(good), str(twin / "a.yaml"), "--out", str(tmp_path)]) == 2
    assert "would overwrite" in capsys.readouterr().err
    assert main(["report", str(good), "--paths", "0"]) == 2
    assert not list(tmp_path.glob("*.html"))


def test_failed_notebook_is_kept_and_reported(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("value = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell("assert value == 1, 'boom'")]
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    template = tmp_path / "t.ipynb"
    nbformat.write(notebook, template)
    with pytest.raises(NotebookExecutionError, match="AssertionError: boom"):
        execute_notebook(template, {"value": 2}, tmp_path / "out", "t", timeout=60)
    assert (tmp_path / "out" / "t.failed.ipynb").is_file()
    assert not (tmp_path / "out" / "t.html").exists()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


# ------------------------------------------------------------------------------ explorer


@pytest.mark.slow
def test_explore_notebook_renders_static_figures_under_papermill(tmp_path: Path) -> None:
    parameters = {"interactive": False, "paths": 100, "horizon": "1d"}
    notebook_path, html_path = execute_notebook(
        NOTEBOOK_DIR / "explore.ipynb", parameters, tmp_path, "explore", timeout=300
    )
    notebook = nbformat.read(notebook_path, as_version=4)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    names = [
        o["data"][PLOTLY_MIME]["layout"]["meta"]["figure"]
        for o in outputs
        if PLOTLY_MIME in o.get("data", {})
    ]
    assert sorted(names) == ["final_equity", "probability_vs_leverage", "sample_paths"]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert "widgets" not in notebook.metadata
    assert len(_figures_in_html(html_path.read_text(encoding="utf-8"))) == 3


def test_explorer_slider_updates_figure_widgets_in_place(tiny_scenario: dict) -> None:
    import plotly.graph_objects as go

    from margin_sim.widgets import Explorer

    scenario = ms.load_scenario(tiny_scenario)
    explorer = Explorer(scenario, paths=200, horizon="1d", leverages=(2, 10, 50))
    figures = dict(explorer.figures)
    assert all(isinstance(f, go.FigureWidget) for f in figures.values())
    probability = figures["probability"]
    star = next(t for t in probability.data if t.name == "now: liquidation probability")
    assert list(star.x) == [10.0, 10.0]

    explorer.controls["leverage"].value = 40.0  # what dragging the slider does
    assert explorer.figures == figures  # the same widgets, updated in place
    assert explorer.message == ""
    star = next(t for t in probability.data if t.name == "now: liquidation probability")
    assert list(star.x) == [40.0, 40.0]
    # the explorer evaluates the same paths as ms.simulate would for that setting
    expected = ms.simulate(
        explorer.scenario_for(explorer.settings), paths=200, seed=scenario.seed, progress=False
    ).summary()
    np.testing.assert_allclose(
        star.y, expected["liquidation_probability"].to_numpy(), rtol=1e-12, atol=0
    )
    assert probability.layout.shapes[0].x0 == 40.0

    before = np.asarray(star.y).copy()
    explorer.controls["leverage"].value = 120.0  # above binance's 100x for 120,000 notional
    assert "leverage" in explorer.message
    np.testing.assert_array_equal(star.y, before)

    explorer.controls["mode"].value = "isolated"
    names = [t.name for t in explorer.figures["paths"].data]
    assert any(n.startswith("isolated liquidation") for n in names)
    assert not any(n.startswith("cross liquidation") for n in names)
