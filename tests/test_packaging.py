"""Packaging: pyproject.toml and environment.yml agree, the public API and the console script
exist, ruff is clean, doctests pass, and RuntimeWarnings from margin_sim fail the tests."""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml

import margin_sim as ms

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
ENVIRONMENT = yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))

#: conda-forge packages that are one pip requirement with extras
_PIP_EXTRAS_AS_CONDA = {"dask[distributed]": ("dask", "distributed")}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+(?:\[[A-Za-z0-9_,\-]+\])?)\s*(.*)$")


def _normalise(name: str) -> str:
    """PEP 503 normalised name (``PyYAML`` -> ``pyyaml``, ``foo_bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(requirement: str) -> tuple[str, str]:
    match = _REQUIREMENT.match(requirement)
    assert match is not None, f"cannot read requirement {requirement!r}"
    return match.group(1), match.group(2).strip()


def _lower_bound(spec: str) -> str | None:
    match = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", spec)
    return match.group(1) if match else None


def _pip_requirements() -> dict[str, str]:
    """Runtime and extra requirements of pyproject.toml: conda-style name -> version spec."""
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    out: dict[str, str] = {}
    for requirement in requirements:
        name, spec = _split(requirement)
        for conda_name in _PIP_EXTRAS_AS_CONDA.get(_normalise(name), (name,)):
            out[_normalise(re.sub(r"\[.*\]", "", conda_name))] = spec
    return out


def _conda_requirements() -> tuple[dict[str, str], list[str]]:
    """(conda name -> version spec, the pip sub-list) of environment.yml, without python/pip."""
    out: dict[str, str] = {}
    pip: list[str] = []
    for item in ENVIRONMENT["dependencies"]:
        if isinstance(item, dict):
            pip += item.get("pip", [])
            continue
        name, spec = _split(item)
        if _normalise(name) not in {"python", "pip"}:
            out[_normalise(name)] = spec
    return out, pip


# ------------------------------------------------------------------ dependencies


def test_environment_and_pyproject_list_the_same_packages() -> None:
    pip_names = set(_pip_requirements())
    conda_names = set(_conda_requirements()[0])
    assert conda_names == pip_names, (
        f"only in environment.yml: {sorted(conda_names - pip_names)}; "
        f"only in pyproject.toml: {sorted(pip_names - conda_names)}"
    )


def test_environment_and_pyproject_agree_on_lower_bounds() -> None:
    pip = _pip_requirements()
    conda, _ = _conda_requirements()
    for name, spec in pip.items():
        assert _lower_bound(spec) == _lower_bound(conda[name]), name


def test_every_dependency_has_a_lower_bound() -> None:
    conda, _ = _conda_requirements()
    for name, spec in {**_pip_requirements(), **conda}.items():
        assert _lower_bound(spec), f"{name} has no lower bound (>=)"
    python = [d for d in ENVIRONMENT["dependencies"] if isinstance(d, str) and "python" in d]
    assert python and _lower_bound(python[0]) == "3.11"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_environment_installs_the_package_itself_with_pip() -> None:
    _, pip = _conda_requirements()
    assert "-e ." in [line.strip() for line in pip]
    assert ENVIRONMENT["channels"] == ["conda-forge"]


def test_the_required_dependencies_are_declared() -> None:
    required = {
        "numpy", "scipy", "pandas", "plotly", "ipywidgets", "jupyterlab", "papermill",
        "nbconvert", "pydantic", "pyyaml", "pyarrow", "tqdm", "pytest", "hypothesis",
        "dask", "distributed",
    }  # fmt: skip
    assert required <= set(_pip_requirements())
    pydantic = _lower_bound(_pip_requirements()["pydantic"])
    assert pydantic is not None and int(pydantic.split(".")[0]) >= 2
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"test", "dask"} <= set(extras)


# ------------------------------------------------------------------ public API


def _public_names() -> list[str]:
    return [name for name in ms.__all__ if name != "__version__"]


#: Modules whose import costs seconds (papermill, nbconvert); checked from their source here,
#: imported by their own tests.
_HEAVY_MODULES = {"margin_sim.notebooks", "margin_sim.widgets", "margin_sim.plots"}


def _defines_at_top_level(path: str, name: str) -> bool:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        elif isinstance(node, ast.ImportFrom) and any(
            (alias.asname or alias.name) == name for alias in node.names
        ):
            return True
    return False


@pytest.mark.parametrize("name", _public_names())
def test_public_name_is_exposed(name: str) -> None:
    module = ms._ENTRY_POINTS[name]
    spec = importlib.util.find_spec(module)
    if spec is None:
        pytest.skip(f"{module} is not built yet")
    assert name in dir(ms)
    if module in _HEAVY_MODULES:
        assert spec.origin is not None and _defines_at_top_level(spec.origin, name)
        return
    value = getattr(ms, name)
    assert value is getattr(importlib.import_module(module), name)
    assert name in importlib.import_module(module).__all__


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = ms.no_such_thing  # type: ignore[attr-defined]


def test_version_matches_the_metadata() -> None:
    assert ms.__version__ == PYPROJECT["project"]["version"]
    assert importlib.metadata.version("margin_sim") == ms.__version__


def test_console_script_entry_point() -> None:
    assert PYPROJECT["project"]["scripts"]["margin-sim"] == "margin_sim.cli:main"
    points = importlib.metadata.entry_points(group="console_scripts", name="margin-sim")
    assert [point.value for point in points] == ["margin_sim.cli:main"]
    assert callable(next(iter(points)).load())
    assert (Path(sys.executable).parent / "margin-sim").is_file()


def test_numerics_do_not_import_ui_or_notebook_libraries() -> None:
    numerics = [
        m
        for m in ("scenario", "market", "exchange", "engine", "metrics")
        if importlib.util.find_spec(f"margin_sim.{m}") is not None
    ]
    code = (
        "import sys\n"
        + "".join(f"import margin_sim.{m}\n" for m in numerics)
        + "bad = sorted({n.split('.')[0] for n in sys.modules} & "
        "{'plotly', 'ipywidgets', 'papermill', 'nbconvert', 'anywidget'})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"{numerics} import {done.stdout.strip()}"


# ------------------------------------------------------------------ tooling


def test_ruff_is_clean() -> None:
    if importlib.util.find_spec("ruff") is not None:
        command = [sys.executable, "-m", "ruff"]
    elif shutil.which("ruff"):
        command = [str(shutil.which("ruff"))]
    else:
        pytest.skip("ruff is not installed")
    done = subprocess.run(
        [*command, "check", "--no-cache", "margin_sim", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("module", ["margin_sim.durations", "margin_sim.scenario"])
def test_doctests_pass(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the examples name files relative to the repository
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_runtime_warnings_from_margin_sim_are_errors() -> None:
    # pyproject.toml: filterwarnings = ["error::RuntimeWarning:margin_sim.*"]
    assert any(
        f.startswith("error::RuntimeWarning:margin_sim")
        for f in PYPROJECT["tool"]["pytest"]["ini_options"]["filterwarnings"]
    )
    with pytest.raises(RuntimeWarning):
        warnings.warn_explicit(
            "overflow encountered", RuntimeWarning, "market.py", 1, module="margin_sim.market"
        )


def test_makefile_has_the_two_commands_and_ci_runs_make_test() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target in ("demo:", "test:", "lab:"):
        assert re.search(rf"^{target}", makefile, re.MULTILINE), target
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci


def test_readme_starts_with_the_two_commands() -> None:
    readme = REPO / "README.md"
    if not readme.is_file():
        pytest.skip("README.md not written yet")
    head = "\n".join(readme.read_text(encoding="utf-8").splitlines()[:12])
    assert "make demo" in head and "make test" in head
