"""``margin-sim run``: the JSON contract of DESIGN.md section 7, the table, seeds, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import margin_sim as ms
from margin_sim.cli import main

BASELINE = Path(__file__).resolve().parent.parent / "params" / "scenarios" / "baseline.yaml"
ARGS = ["run", str(BASELINE), "--paths", "500", "--set", "horizon=1d"]
SECTION_6_SUMMARY = (
    "ruin_probability",
    "ruin_probability_se",
    "liquidation_probability",
    "liquidation_probability_se",
    "expected_final_equity",
    "expected_loss",
    "var_95",
    "cvar_95",
    "median_hours_to_liquidation",
)


def _run_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code = main([*ARGS, *extra, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # ONE JSON object on one line
    payload = json.loads(lines[0])
    assert isinstance(payload, dict)
    return payload


def _same(a: float | None, b: float) -> bool:
    """JSON numbers against the Python summary (None stands for NaN/inf)."""
    if a is None:
        return not math.isfinite(b)
    return a == b  # float repr round-trips exactly


def test_json_is_one_object_with_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    payload = _run_json(capsys)
    assert set(payload) >= {"scenario", "paths", "seed", "modes"}
    assert payload["scenario"] == "baseline"
    assert payload["paths"] == 500
    assert payload["seed"] == 7  # the scenario file's seed
    assert set(payload["modes"]) == {"isolated", "cross"}
    for mode in ("isolated", "cross"):
        fields = payload["modes"][mode]
        assert set(SECTION_6_SUMMARY) <= set(fields), mode
        for key in ("ruin_probability", "liquidation_probability"):
            assert 0.0 <= fields[key] <= 1.0


def test_json_numbers_equal_the_python_api(capsys: pytest.CaptureFixture[str]) -> None:
    payload = _run_json(capsys)
    scenario = ms.load_scenario(BASELINE, ["horizon=1d", "paths=500"])
    summary = ms.simulate(scenario, progress=False).summary()
    for mode, fields in payload["modes"].items():
        for key, value in fields.items():
            assert _same(value, float(summary.loc[mode, key])), (mode, key, value)
    assert len(payload["modes"]["isolated"]) == len(summary.columns)


def test_seed_changes_the_numbers_and_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    first = _run_json(capsys, "--seed", "123")
    second = _run_json(capsys, "--seed", "124")
    again = _run_json(capsys, "--seed", "123")
    assert first["seed"] == 123 and second["seed"] == 124
    assert first == again
    assert first["modes"]["isolated"] != second["modes"]["isolated"]
    assert (
        first["modes"]["isolated"]["expected_final_equity"]
        != second["modes"]["isolated"]["expected_final_equity"]
    )


def test_table_form_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*ARGS, "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    for label in ("baseline", "500 paths", "P(ruin)", "P(liquidated)", "isolated", "cross"):
        assert label in out, label
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    # the table shows the same probability as the JSON (in percent)
    payload = _run_json(capsys)
    p = payload["modes"]["isolated"]["liquidation_probability"]
    assert f"{100 * p:9.3f}%" in out


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("account.positions.3.leverage=5", "account.positions.3"),
        ("horizon.days=3", "horizon"),
        ("market.assets.BTC.volatility=0.5", "volatility"),
        ("account.positions.0.leverage=-2", "leverage"),
        ("no-equals-sign", "no-equals-sign"),
    ],
)
def test_bad_set_path_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], override: str, field: str
) -> None:
    code = main([*ARGS, "--set", override, "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("margin-sim: error:")
    assert field in lines[0]
    assert "Traceback" not in err


def test_bad_paths_and_seed_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for option in (["--paths", "0"], ["--seed", "-1"]):
        code = main(["run", str(BASELINE), *option, "--json"])
        out, err = capsys.readouterr()
        assert code == 2, option
        assert out == "" and len(err.strip().splitlines()) == 1
        assert option[0] in err


def test_real_subprocess_prints_the_same_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_process = _run_json(capsys)
    completed = subprocess.run(
        [sys.executable, "-m", "margin_sim.cli", *ARGS, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # the scenario path is absolute; nothing depends on the folder
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("\n") == 1
    assert json.loads(completed.stdout) == in_process
    bad = subprocess.run(
        [sys.executable, "-m", "margin_sim.cli", *ARGS, "--set", "horizon=-1d"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert bad.stdout == ""
