"""Scenario grids: expansion, validation, executors, the resumable store and the grid report.

Every run here uses the real engine with tiny settings (200 paths over one day of hourly
steps), so a point takes milliseconds; the tables are compared column by column except for
``RUN_COLUMNS`` (when and how long), which describe the run, not its result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from margin_sim.cli import main
from margin_sim.errors import GridError
from margin_sim.grid import RUN_COLUMNS, Grid, leverage_frontier, load_grid, run_grid
from margin_sim.grid_store import GridStore

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "params" / "scenarios" / "baseline.yaml"
BAD_GRIDS = sorted((REPO / "tests" / "bad_grids").glob("*.yaml"))

#: Tiny engine settings shared by every grid run here.
TINY = {"paths": 200, "horizon": "1d", "step": "1h", "chunk_paths": 200}


def write_grid(folder: Path, name: str = "tiny", base: Path = BASELINE, **keys: Any) -> Path:
    """Write a grid file into ``folder`` with ``base`` given relative to it."""
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "name": name,
        "base": os.path.relpath(base, folder),
        "seed": 5,
        "set": dict(TINY),
    }
    data.update(keys)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def results(table: pd.DataFrame) -> pd.DataFrame:
    """The reproducible part of a result table."""
    return table.drop(columns=list(RUN_COLUMNS)).reset_index(drop=True)


TINY_PRODUCT = {
    "account.positions.0.leverage": [1, 10, 50, 100],
    "market.assets.BTC.vol": [0.5, 1.2],
}


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid of 8 points: leverage x volatility on the baseline, tiny settings."""
    return write_grid(tmp_path_factory.mktemp("grid"), product=TINY_PRODUCT)


@pytest.fixture(scope="module")
def inline_table(tiny_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The tiny grid run in this process, one point after the other."""
    return run_grid(
        tiny_grid, out=tmp_path_factory.mktemp("inline"), executor="inline", progress=False
    )


# ------------------------------------------------------------------------ expansion


def test_product_and_zip_expand_row_major_with_readable_names(tmp_path: Path) -> None:
    path = write_grid(
        tmp_path,
        base=REPO / "params" / "scenarios" / "hedge.yaml",
        product={"market.market_wicks.per_year": [0, 6], "market.assets.BTC.vol": [0.4, 0.8, 1.2]},
        zip={"account.positions.0.leverage": [2, 5], "account.positions.1.leverage": [3, 7]},
    )
    grid = load_grid(path)
    points = grid.points
    assert grid.n_points == len(points) == 2 * 3 * 2
    assert [p.index for p in points] == list(range(12))
    expected = [
        (rate, vol, lev0, lev1)
        for rate in (0, 6)
        for vol in (0.4, 0.8, 1.2)
        for lev0, lev1 in ((2, 3), (5, 7))
    ]
    for point, (rate, vol, lev0, lev1) in zip(points, expected, strict=True):
        scenario = point.scenario
        assert scenario.market.market_wicks is not None
        assert scenario.market.market_wicks.per_year == rate
        assert scenario.market.assets["BTC"].vol == vol
        assert [p.leverage for p in scenario.account.positions] == [lev0, lev1]
        assert scenario.paths == TINY["paths"]  # `set` reaches every point
        assert point.name == (
            f"per_year={rate}, vol={vol:g}, positions.0.leverage={lev0}, "
            f"positions.1.leverage={lev1}"
        )
        assert point.digest == scenario.digest()
    assert len({p.digest for p in points}) == len(points)


def test_point_seeds_come_from_spawned_seed_sequences(tiny_grid: Path) -> None:
    grid = load_grid(tiny_grid)
    children = np.random.SeedSequence(grid.seed).spawn(grid.n_points)
    for point, child in zip(grid.points, children, strict=True):
        assert point.seed == int(child.generate_state(1)[0])
        assert point.scenario.seed == point.seed
    assert len({p.seed for p in grid.points}) == grid.n_points


def test_growing_the_slowest_axis_keeps_the_earlier_points(tmp_path: Path) -> None:
    small = load_grid(write_grid(tmp_path / "a", product=TINY_PRODUCT))
    grown = dict(TINY_PRODUCT, **{"account.positions.0.leverage": [1, 10, 50, 100, 75]})
    large = load_grid(write_grid(tmp_path / "b", product=grown))
    assert [p.digest for p in large.points[: small.n_points]] == [p.digest for p in small.points]


def test_labels_and_a_grid_without_axes(tmp_path: Path) -> None:
    labelled = load_grid(
        write_grid(
            tmp_path / "a", product=TINY_PRODUCT, labels={"market.assets.BTC.vol": "btc_vol"}
        )
    )
    assert labelled.points[1].name == "leverage=1, btc_vol=1.2"
    single = load_grid(write_grid(tmp_path / "b"))
    assert [p.name for p in single.points] == ["base"]


def test_shipped_grids_load() -> None:
    by_mode = load_grid(REPO / "params" / "grids" / "leverage-by-mode.yaml")
    levels = [p.scenario.account.positions[0].leverage for p in by_mode.points]
    assert levels == sorted(levels) and levels[0] == 1 and levels[-1] == 100
    assert all(p.scenario.modes == ["isolated", "cross"] for p in by_mode.points)
    stress = load_grid(REPO / "params" / "grids" / "wick-stress.yaml")
    assert stress.n_points == 5 * 3 * 4
    for point in stress.points:
        first, second = point.scenario.account.positions
        assert first.leverage == second.leverage  # zipped legs move together


# ------------------------------------------------------------------------ bad files


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ").strip()


@pytest.mark.parametrize("path", BAD_GRIDS, ids=[p.stem for p in BAD_GRIDS])
def test_bad_grid_gives_one_clear_line(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(GridError) as caught:
        load_grid(path)
    message = str(caught.value)
    assert _expected(path).lower() in message.lower()
    assert "\n" not in message
    code = main(["grid", str(path), "--no-report", "--no-progress", "--out", "unused"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [f"margin-sim: error: {message}"]


def test_the_bad_grid_files_cover_every_required_case() -> None:
    stems = {p.stem for p in BAD_GRIDS}
    required = {"unknown-key-path", "empty-axis", "zip-length-mismatch", "missing-base"}
    assert required | {"not-a-mapping"} <= stems


def test_bad_executor_choices_are_refused(tiny_grid: Path, tmp_path: Path) -> None:
    with pytest.raises(GridError, match="executor: unknown executor 'threads'"):
        run_grid(tiny_grid, out=tmp_path, executor="threads", progress=False)
    with pytest.raises(GridError, match="workers: must be a whole number"):
        run_grid(tiny_grid, out=tmp_path, workers=0, progress=False)
    with pytest.raises(GridError, match="workers: give either workers or a scheduler"):
        run_grid(tiny_grid, out=tmp_path, workers=2, scheduler="tcp://127.0.0.1:1", progress=False)


def test_missing_dask_is_a_clear_error(
    tiny_grid: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with pytest.raises(GridError, match=r"dask\.distributed is not installed"):
        run_grid(tiny_grid, out=tmp_path, executor="dask-local", progress=False)


# ------------------------------------------------------------------------ executors


def test_table_has_one_row_per_point_with_both_modes(
    tiny_grid: Path, inline_table: pd.DataFrame
) -> None:
    grid = load_grid(tiny_grid)
    assert list(inline_table["point"]) == list(range(grid.n_points))
    assert list(inline_table["name"]) == [p.name for p in grid.points]
    assert list(inline_table["digest"]) == [p.digest for p in grid.points]
    assert list(inline_table["seed"]) == [p.seed for p in grid.points]
    for key in grid.axes:
        assert list(inline_table[key]) == [p.values[key] for p in grid.points]
    summary_columns = [
        "ruin_probability", "ruin_probability_se", "liquidation_probability",
        "liquidation_probability_se", "expected_final_equity", "expected_loss", "var_95",
        "cvar_95", "median_hours_to_liquidation",
    ]  # fmt: skip
    for mode in ("isolated", "cross"):
        for column in summary_columns:
            assert f"{mode}_{column}" in inline_table.columns
    assert inline_table["version"].eq(__import__("margin_sim").__version__).all()
    assert inline_table["finished_at"].dt.tz is not None
    # the engine's own answer for one point, computed here directly
    from margin_sim.engine import simulate

    point = grid.points[5]
    direct = simulate(point.scenario, progress=False).summary()
    row = inline_table.iloc[5]
    for mode in ("isolated", "cross"):
        assert row[f"{mode}_liquidation_probability"] == direct.loc[mode, "liquidation_probability"]


@pytest.mark.slow
def test_process_pool_gives_the_same_table(
    tiny_grid: Path, inline_table: pd.DataFrame, tmp_path: Path
) -> None:
    pooled = run_grid(tiny_grid, out=tmp_path, workers=2, progress=False)
    assert pooled.attrs["computed"] == len(pooled)
    pd.testing.assert_frame_equal(results(pooled), results(inline_table))


@pytest.mark.requires_dask
def test_dask_cluster_gives_the_same_table(
    tiny_grid: Path, inline_table: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_client = run_grid(tiny_grid, out=tmp_path / "client", executor=client, progress=False)
        pd.testing.assert_frame_equal(results(on_client), results(inline_table))
        # the command line sends the points to the running cluster by its address
        code = main(
            ["grid", str(tiny_grid), "--scheduler", cluster.scheduler_address,
             "--out", str(tmp_path / "cli"), "--no-report", "--no-progress"]
        )  # fmt: skip
        assert code == 0
        assert "8 computed" in capsys.readouterr().out
    on_scheduler = pd.read_parquet(tmp_path / "cli" / "tiny.parquet")
    pd.testing.assert_frame_equal(results(on_scheduler), results(inline_table))


# --------------------------------------------------------------------- the store


def test_changed_axis_value_recomputes_only_its_rows(tmp_path: Path) -> None:
    path = write_grid(tmp_path, product=TINY_PRODUCT)
    out = tmp_path / "out"
    first = run_grid(path, out=out, executor="inline", progress=False)
    assert (first.attrs["computed"], first.attrs["reused"]) == (8, 0)

    changed = dict(TINY_PRODUCT, **{"account.positions.0.leverage": [1, 20, 50, 100]})
    path = write_grid(tmp_path, product=changed)
    second = run_grid(path, out=out, executor="inline", progress=False)
    affected = second["account.positions.0.leverage"].eq(20)
    assert (second.attrs["computed"], second.attrs["reused"]) == (2, 6)
    kept = ~affected
    pd.testing.assert_series_equal(second["finished_at"][kept], first["finished_at"][kept])
    assert (second["finished_at"][affected] > first["finished_at"].max()).all()
    fresh = run_grid(path, out=tmp_path / "fresh", executor="inline", progress=False)
    pd.testing.assert_frame_equal(results(second), results(fresh))

    # the base scenario changed: every digest changes, every row is recomputed
    base = tmp_path / "base.yaml"
    data = yaml.safe_load(BASELINE.read_text(encoding="utf-8"))
    base.write_text(yaml.safe_dump(data), encoding="utf-8")
    path = write_grid(tmp_path, base=base, product=changed)
    assert run_grid(path, out=out, executor="inline", progress=False).attrs["computed"] == 0
    data["account"]["balance"] = 20000
    base.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert run_grid(path, out=out, executor="inline", progress=False).attrs["computed"] == 8
    assert not (out / "tiny.parts").exists()


def test_a_second_run_of_the_same_grid_is_refused(tiny_grid: Path, tmp_path: Path) -> None:
    with GridStore(tmp_path, "tiny").lock(), pytest.raises(GridError, match="another run"):
        run_grid(tiny_grid, out=tmp_path, executor="inline", progress=False)


@pytest.mark.slow
def test_sigkill_in_the_middle_then_restart_gives_the_same_table(tmp_path: Path) -> None:
    levels = [1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 100]
    path = write_grid(
        tmp_path,
        name="killed",
        product={"account.positions.0.leverage": levels, "market.assets.BTC.vol": [0.5, 1.0]},
        set={**TINY, "paths": 1000, "horizon": "2d", "chunk_paths": 1000},
    )
    n_points = 2 * len(levels)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "margin_sim.cli", "grid", str(path), "--out", str(out),
        "--executor", "inline", "--no-report", "--no-progress",
    ]  # fmt: skip
    parts = out / "killed.parts"
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if parts.is_dir() and len(list(parts.glob("*.parquet"))) >= 3:
                break
            time.sleep(0.005)
        assert process.poll() is None, "the grid finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)  # the command's own process group, mid-run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    finished = len(list(parts.glob("*.parquet")))
    assert 3 <= finished < n_points
    assert not (out / "killed.parquet").exists()
    # what a kill during a write leaves behind: a temporary file that is never read
    (parts / f".{n_points - 1:07d}-0123456789abcdef.parquet.99999.tmp").write_bytes(b"PAR1 cut")

    restarted_at = pd.Timestamp.now(tz="UTC")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{n_points - finished} computed, {finished} already stored" in done.stdout
    table = pd.read_parquet(out / "killed.parquet")
    assert list(table["point"]) == list(range(n_points))  # no duplicate, no missing row
    assert table.filter(like="_ruin_probability").notna().all().all()  # no partial row
    assert (table["finished_at"] < restarted_at).sum() == finished
    assert not parts.exists()
    assert not list(out.glob(".*.tmp"))

    uninterrupted = run_grid(path, out=tmp_path / "straight", executor="inline", progress=False)
    pd.testing.assert_frame_equal(results(table), results(uninterrupted))


# ------------------------------------------------------------------------ frontier


def test_leverage_frontier_stops_at_the_first_leverage_over_budget() -> None:
    table = pd.DataFrame(
        {
            "account.positions.0.leverage": [20, 1, 5, 10],
            "isolated_ruin_probability": [0.0, 0.0, 0.0, 0.0],
            "isolated_ruin_probability_se": [0.0, 0.0, 0.0, 0.0],
            "cross_ruin_probability": [0.005, 0.0, 0.008, 0.02],
            "cross_ruin_probability_se": [0.001, 0.0, 0.002, 0.003],
        }
    )
    frontier = leverage_frontier(table, budget=0.01).set_index("mode")
    assert frontier.loc["isolated", "frontier_leverage"] == 20
    assert np.isnan(frontier.loc["isolated", "next_leverage"])
    # 20x is under budget again, but 10x already broke it: the frontier is 5x
    assert frontier.loc["cross", "frontier_leverage"] == 5
    assert frontier.loc["cross", "ruin_probability_se"] == 0.002
    assert frontier.loc["cross", "next_leverage"] == 10
    # 0.008 + 2 * 0.002 >= 0.01: with two standard errors only 1x is safely under budget
    assert frontier.loc["cross", "conservative_leverage"] == 1
    assert np.isnan(leverage_frontier(table, budget=0.0).loc[0, "frontier_leverage"])


def test_frontier_per_combination_of_the_other_axes(inline_table: pd.DataFrame) -> None:
    frontier = leverage_frontier(inline_table, budget=0.05)
    assert sorted(frontier.columns[:2]) == ["market.assets.BTC.vol", "mode"]
    assert len(frontier) == 2 * 2  # two volatilities x two modes
    for row in frontier.itertuples():
        rows = inline_table[inline_table["market.assets.BTC.vol"] == row[1]]
        under = rows.sort_values("account.positions.0.leverage")
        p = under[f"{row.mode}_ruin_probability"].to_numpy()
        k = (np.argmax(p >= 0.05) if (p >= 0.05).any() else len(p)) - 1
        expected = under["account.positions.0.leverage"].iloc[k] if k >= 0 else np.nan
        assert row.frontier_leverage == pytest.approx(expected, nan_ok=True)


def test_grid_model_refuses_an_empty_axis_when_built_in_python() -> None:
    with pytest.raises(ValueError, match="empty axis"):
        Grid(name="x", base=BASELINE, product={"market.assets.BTC.vol": []})


# ------------------------------------------------------------------------ report


@pytest.mark.slow
@pytest.mark.notebook
def test_grid_command_runs_the_grid_and_writes_the_report(
    tiny_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["grid", str(tiny_grid), "--out", str(tmp_path), "--executor", "inline",
                 "--no-progress", "--budget", "0.05"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{tmp_path / 'tiny.parquet'}: 8 points (8 computed, 0 already stored)" in out
    html = tmp_path / "tiny.html"
    notebook = tmp_path / "tiny.ipynb"
    assert html.is_file() and notebook.is_file()
    import nbformat

    executed = nbformat.read(notebook, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 3  # two heatmaps and the frontier chart
    text = html.read_text(encoding="utf-8")
    for heading in ("Heatmaps by leverage and margin mode", "Leverage frontier", "Conclusion"):
        assert heading in text


def test_doctests_of_the_grid_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import doctest

    import margin_sim.grid

    monkeypatch.chdir(REPO)  # the examples name files relative to the repository
    result = doctest.testmod(margin_sim.grid, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
