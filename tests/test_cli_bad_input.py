"""Every malformed scenario of tests/bad_scenarios/ is refused by ``margin-sim run`` with exit
code 2 and one line on stderr naming the field and the reason, never a traceback.

Each corpus file starts with ``# expect: <field path> | <substring of the reason>``; for
errors about the file itself (not YAML, not a mapping, empty) the field is the file name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from margin_sim.cli import main

CORPUS = Path(__file__).resolve().parent / "bad_scenarios"
FILES = sorted(CORPUS.glob("*.yaml"))
PREFIX = "margin-sim: error: "


def _expectation(path: Path) -> tuple[str, str]:
    """(field path, reason substring) from the file's first line."""
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    tag = "# expect:"
    assert first.startswith(tag), f"{path.name}: first line must be '{tag} FIELD | REASON'"
    field, sep, reason = first.removeprefix(tag).partition("|")
    assert sep and field.strip() and reason.strip(), f"{path.name}: malformed expect line"
    return field.strip(), reason.strip()


def _check_one_line(err: str, field: str, reason: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert "Traceback" not in err
    line = lines[0]
    assert line.startswith(PREFIX), line
    where, sep, why = line.removeprefix(PREFIX).partition(": ")
    assert sep, f"no 'field: reason' in {line!r}"
    # a scenario field exactly, or a file-level error naming the file
    assert where == field or Path(where).name == field, f"field {where!r}, expected {field!r}"
    assert reason in why, f"reason {why!r} lacks {reason!r}"
    # one failure per file: nothing else was wrong with it
    assert "more problem" not in why, line


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_scenario_is_refused_in_one_line(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    field, reason = _expectation(path)
    code = main(["run", str(path), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    _check_one_line(err, field, reason)


def test_missing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_scenario.yaml"
    code = main(["run", str(missing)])
    _, err = capsys.readouterr()
    assert code == 2
    _check_one_line(err, missing.name, "does not exist")


@pytest.mark.parametrize(
    ("override", "field", "reason"),
    [
        ("account.positions.3.leverage=20", "account.positions.3", "no item 3 in a list of 1"),
        ("account.positions.first.leverage=20", "account.positions.first", "no item first"),
        ("seed.value=3", "seed.value", "cannot set a key inside a plain value"),
        ("account..balance=5", "account..balance", "empty part"),
        ("account.balance", "account.balance", "key.path=value"),
        ("account.positions.0.leverage=500", "account.positions.0.leverage", "above the maximum"),
        ("market.assets.BTC.vol=fast", "market.assets.BTC.vol", "valid number"),
        ("market.assets.BTC.colour=red", "market.assets.BTC.colour", "unknown key"),
    ],
)
def test_bad_override_is_refused_in_one_line(
    repo_root: Path, capsys: pytest.CaptureFixture[str], override: str, field: str, reason: str
) -> None:
    baseline = repo_root / "params" / "scenarios" / "baseline.yaml"
    code = main(["run", str(baseline), "--set", override])
    _, err = capsys.readouterr()
    assert code == 2
    _check_one_line(err, field, reason)


@pytest.mark.parametrize(
    ("option", "field"), [(["--paths", "0"], "--paths"), (["--seed", "-1"], "--seed")]
)
def test_bad_paths_or_seed_option(
    repo_root: Path, capsys: pytest.CaptureFixture[str], option: list[str], field: str
) -> None:
    baseline = repo_root / "params" / "scenarios" / "baseline.yaml"
    code = main(["run", str(baseline), *option])
    _, err = capsys.readouterr()
    assert code == 2
    _check_one_line(err, field, "must be")


@pytest.mark.parametrize("which", ["bad file", "missing file"])
def test_console_script_exits_2_without_traceback(
    repo_root: Path, tmp_path: Path, which: str
) -> None:
    script = Path(sys.executable).parent / "margin-sim"
    if not script.is_file():
        pytest.skip(f"console script {script} is not installed (pip install -e .)")
    if which == "bad file":
        target = CORPUS / "leverage_above_tier_of_notional.yaml"
        field, reason = _expectation(target)
    else:
        target = tmp_path / "absent.yaml"
        field, reason = target.name, "does not exist"
    done = subprocess.run(
        [str(script), "run", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo_root,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    _check_one_line(done.stderr, field, reason)


@pytest.mark.parametrize("command", ["report", "grid", "calibrate"])
def test_unwritable_out_is_refused_before_any_work(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    target = {
        "report": [str(repo_root / "params" / "scenarios" / "baseline.yaml")],
        "grid": [str(repo_root / "params" / "grids" / "leverage-by-mode.yaml")],
        "calibrate": [str(tmp_path / "candles.csv")],  # never read: --out is checked first
    }[command]
    out = a_file / ("market.yaml" if command == "calibrate" else "out")
    code = main([command, *target, "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2
    _check_one_line(err, "--out", "not a folder" if command == "calibrate" else "Not a directory")


def test_calibrate_out_naming_a_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["calibrate", str(tmp_path / "candles.csv"), "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2
    _check_one_line(err, "--out", "is a folder")


@pytest.mark.parametrize(
    ("argv", "prog", "reason"),
    [
        (["run", "s.yaml", "--paths", "abc"], "margin-sim run", "invalid int value: 'abc'"),
        (["calibrate", "x.csv", "--jumps", "levy"], "margin-sim calibrate", "invalid choice"),
        (["liq-price", "--side", "long"], "margin-sim liq-price", "required: --entry"),
        (["bogus"], "margin-sim", "invalid choice: 'bogus'"),
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], prog: str, reason: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{prog}: error: ") and reason in err, err
    assert f"see {prog} --help" in err


def test_closed_stdout_pipe_is_not_a_traceback(repo_root: Path) -> None:
    script = Path(sys.executable).parent / "margin-sim"
    if not script.is_file():
        pytest.skip(f"console script {script} is not installed (pip install -e .)")
    argv = [str(script), "liq-price", "--side", "long", "--entry", "20000", "--qty", "1"]
    process = subprocess.Popen(
        [*argv, "--wallet", "400", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=repo_root,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader goes away before anything is written
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, err
    assert err == ""
