"""Scenario grids: a base scenario, axes over dotted scenario keys, and a resumable batch run.

A grid file (DESIGN.md section 8) names a base scenario (a path relative to the grid file),
a grid ``seed``, overrides applied to every point (``set``), axes varied as a Cartesian
``product`` and axes varied together (``zip``, lists of equal length)::

    name: leverage-by-mode
    base: ../scenarios/baseline.yaml
    seed: 1
    set: {paths: 20000}
    product:
      account.positions.0.leverage: [1, 2, 3, 5, 10, 20, 50, 100]
    zip: {}

:func:`load_grid` reads and validates one: every expanded point is validated as a scenario, so
a misspelt key path is refused before anything runs. :func:`run_grid` evaluates the points
(in-process, on a local process pool or on a Dask cluster, see :mod:`margin_sim.grid_executors`)
and keeps one row per point in a Parquet table (see :mod:`margin_sim.grid_store`).

Point order and seeds
---------------------
Points are numbered row-major over the product axes in file order (the first axis varies
slowest), with the zipped lists as one more, innermost, dimension. Point ``i`` runs with the
seed ``SeedSequence(grid.seed).spawn(n_points)[i]`` reduced to one 32-bit integer; a spawned
child depends only on the grid seed and ``i``, so the table is the same for any worker count or
completion order, and appending values to the last axis keeps the earlier points' seeds.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from margin_sim._typing import MarginMode
from margin_sim.errors import GridError, ScenarioError
from margin_sim.scenario import Scenario, load_exchange, load_scenario, read_yaml_mapping

__all__ = [
    "RUN_COLUMNS",
    "Grid",
    "GridPoint",
    "engine_summary",
    "leverage_frontier",
    "load_grid",
    "read_grid_table",
    "run_grid",
]

#: Columns of the result table that describe the run rather than the result (they differ
#: between two runs of the same grid); every other column is reproducible.
RUN_COLUMNS = ("finished_at", "seconds")

#: Margin modes, in the order result columns are written.
MODES: tuple[MarginMode, ...] = ("isolated", "cross")

#: A point evaluator: scenario -> summary DataFrame indexed by mode (DESIGN.md section 6).
Evaluate = Callable[[Scenario], pd.DataFrame]


# ---------------------------------------------------------------------------- model


def _format_value(value: Any) -> str:
    """Short text of an axis value for point names (``10``, ``0.4``, ``kou``)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _short_labels(keys: list[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that tells the axes apart and starts with a name.

    ``account.positions.0.leverage`` becomes ``leverage``, or ``positions.0.leverage`` when
    another axis also ends in ``leverage``.
    """
    parts = {key: key.split(".") for key in keys}
    labels: dict[str, str] = {}
    for key in keys:
        own = parts[key]
        for length in range(1, len(own) + 1):
            suffix = own[-length:]
            if suffix[0].isdigit() and length < len(own):
                continue
            clash = any(other != key and parts[other][-length:] == suffix for other in keys)
            if not clash:
                labels[key] = ".".join(suffix)
                break
        else:  # pragma: no cover - two distinct keys always differ in some suffix
            labels[key] = key
    return labels


@dataclass(frozen=True)
class GridPoint:
    """One point of a grid: a validated scenario and where it sits in the grid.

    Attributes
    ----------
    index : int
        Point number, 0-based, row-major over the axes (see the module notes).
    name : str
        Readable name, ``"leverage=10, vol=0.4"`` (``"base"`` for a grid without axes).
    values : dict of str to object
        Axis key -> value at this point, product axes first, in file order.
    seed : int
        The point's seed, derived from the grid seed and ``index``.
    scenario : Scenario
        The base scenario with ``set``, the axis values and ``seed`` applied.
    digest : str
        ``scenario.digest()``: identifies the point's inputs in the result store.
    """

    index: int
    name: str
    values: dict[str, Any] = field(repr=False)
    seed: int
    scenario: Scenario = field(repr=False, compare=False)
    digest: str = field(repr=False)


class Grid(BaseModel):
    """A scenario grid (DESIGN.md section 8).

    Attributes
    ----------
    name : str
        Name of the grid; the result table is ``<out>/<name>.parquet``.
    base : Path
        Base scenario file (a grid file gives it relative to itself).
    seed : int
        Grid seed; point ``i`` gets ``SeedSequence(seed).spawn(n)[i]``.
    overrides : dict
        File key ``set``: dotted-key overrides applied to every point.
    product : dict of str to list
        Axes varied as a Cartesian product, first axis slowest.
    zipped : dict of str to list
        File key ``zip``: lists of equal length varied together (one innermost dimension).
    labels : dict of str to str
        Optional short names of axes for point names (default: the shortest distinct suffix
        of the key path).
    description : str
        Free text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base: Path
    seed: int = Field(default=0, ge=0)
    overrides: dict[str, Any] = Field(default_factory=dict, alias="set")
    product: dict[str, list[Any]] = Field(default_factory=dict)
    zipped: dict[str, list[Any]] = Field(default_factory=dict, alias="zip")
    labels: dict[str, str] = Field(default_factory=dict)
    description: str = ""

    _points: list[GridPoint] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # `product:` with nothing under it reads as None in YAML: same as an empty mapping.
        if isinstance(data, dict):
            data = dict(data)
            for key in ("set", "product", "zip", "labels"):
                if key in data and data[key] is None:
                    data[key] = {}
        return data

    @model_validator(mode="after")
    def _check_axes(self) -> Grid:
        seen: dict[str, str] = {}
        for section, axes in (("product", self.product), ("zip", self.zipped)):
            for key, values in axes.items():
                where = f"{section}.{key}"
                if not key or any(not part for part in key.split(".")):
                    raise ValueError(f"{where}: empty part in the key path")
                if key in ("seed", "name"):
                    raise ValueError(
                        f"{where}: '{key}' cannot be an axis (the grid sets each point's {key})"
                    )
                if key in seen:
                    raise ValueError(f"{where}: the key is already an axis in {seen[key]}")
                if key in self.overrides:
                    raise ValueError(f"{where}: the key is also in 'set'")
                seen[key] = section
                if not values:
                    raise ValueError(f"{where}: empty axis (give at least one value)")
                if section == "product":
                    texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
                    for position, text in enumerate(texts):
                        if text in texts[:position]:
                            raise ValueError(f"{where}: value {text} is listed twice")
        lengths = {key: len(values) for key, values in self.zipped.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            raise ValueError(f"zip: the lists must have the same length ({shown})")
        for key in ("seed", "name"):
            if key in self.overrides:
                raise ValueError(f"set.{key}: cannot be set (the grid sets each point's {key})")
        for key, label in self.labels.items():
            if key not in seen:
                raise ValueError(f"labels.{key}: not an axis of this grid")
            if not label:
                raise ValueError(f"labels.{key}: empty label")
        names = list(self.axis_labels.values())
        for label in names:
            if names.count(label) > 1:
                raise ValueError(f"labels: two axes are named {label!r}")
        return self

    # -- axes and points -------------------------------------------------------------

    @property
    def axes(self) -> list[str]:
        """Axis keys: product axes then zipped axes, in file order."""
        return [*self.product, *self.zipped]

    @property
    def axis_labels(self) -> dict[str, str]:
        """Axis key -> short label used in point names."""
        return {**_short_labels(self.axes), **self.labels}

    @property
    def n_points(self) -> int:
        """Number of points: product of the axis lengths (the zip counts once)."""
        n = math.prod(len(values) for values in self.product.values())
        if self.zipped:
            n *= len(next(iter(self.zipped.values())))
        return n

    def point_values(self) -> list[dict[str, Any]]:
        """Axis values of every point, in point order (no validation)."""
        dims: list[list[dict[str, Any]]] = [
            [{key: value} for value in values] for key, values in self.product.items()
        ]
        if self.zipped:
            rows = zip(*self.zipped.values(), strict=True)
            dims.append([dict(zip(self.zipped, row, strict=True)) for row in rows])
        out: list[dict[str, Any]] = []
        for combination in itertools.product(*dims):
            values: dict[str, Any] = {}
            for part in combination:
                values.update(part)
            out.append(values)
        return out

    def point_seeds(self) -> list[int]:
        """Seed of every point: child ``i`` of ``SeedSequence(seed).spawn(n_points)``."""
        children = np.random.SeedSequence(self.seed).spawn(self.n_points)
        return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in children]

    def point_name(self, values: Mapping[str, Any]) -> str:
        """Readable name of a point from its axis values."""
        if not values:
            return "base"
        labels = self.axis_labels
        return ", ".join(f"{labels[key]}={_format_value(v)}" for key, v in values.items())

    @property
    def points(self) -> list[GridPoint]:
        """Every point, each with its validated scenario.

        Raises
        ------
        GridError
            If the base scenario, ``set`` or an axis value makes an invalid scenario; the
            message names the grid key (``product.account.positions.0.leverage``) and the point.
        """
        if self._points is None:
            self._points = self._expand()
        return self._points

    def _base_mapping(self) -> dict[str, Any]:
        """The base scenario's raw mapping, its exchange file resolved next to it."""
        try:
            data = read_yaml_mapping(self.base)
            data.setdefault("name", self.base.stem)
            if isinstance(data.get("exchange"), str):
                data["exchange"] = load_exchange(data["exchange"], base_dir=self.base.parent)
            load_scenario(data)
        except ScenarioError as error:
            raise GridError(f"base: {self.base}: {error}") from None
        return data

    def _axis_of(self, error_field: str) -> str | None:
        """The grid key (``product.<key>``, ``zip.<key>``, ``set.<key>``) an error is about."""
        sections = [
            ("product", self.product),
            ("zip", self.zipped),
            ("set", self.overrides),
        ]
        for section, keys in sections:
            for key in keys:
                if (
                    error_field == key
                    or error_field.startswith(key + ".")
                    or key.startswith(error_field + ".")
                ):
                    return f"{section}.{key}"
        return None

    def _expand(self) -> list[GridPoint]:
        base = self._base_mapping()
        overrides = dict(self.overrides)
        # An exchange given by name in an override is looked up next to the base file too.
        for key, value in list(overrides.items()):
            if key == "exchange" and isinstance(value, str):
                try:
                    overrides[key] = load_exchange(value, base_dir=self.base.parent)
                except ScenarioError as error:
                    raise GridError(f"set.exchange: {error.reason}") from None
        try:
            load_scenario(base, overrides)
        except ScenarioError as error:
            where = self._axis_of(error.field) or "set"
            raise GridError(f"{where}: {error}") from None
        points: list[GridPoint] = []
        for index, (values, seed) in enumerate(
            zip(self.point_values(), self.point_seeds(), strict=True)
        ):
            name = self.point_name(values)
            point_overrides = {**overrides}
            for key, value in values.items():
                if key == "exchange" and isinstance(value, str):
                    try:
                        value = load_exchange(value, base_dir=self.base.parent)
                    except ScenarioError as error:
                        raise GridError(
                            f"{self._axis_of(key)}: {error.reason} (point {index} '{name}')"
                        ) from None
                point_overrides[key] = value
            point_overrides["seed"] = seed
            try:
                scenario = load_scenario(base, point_overrides)
            except ScenarioError as error:
                where = self._axis_of(error.field)
                if where is None or where.startswith("set."):
                    # a combination of values breaks a rule: name the point and the field
                    raise GridError(f"point {index} '{name}': {error}") from None
                raise GridError(f"{where}: {error.reason} (point {index} '{name}')") from None
            points.append(
                GridPoint(
                    index=index,
                    name=name,
                    values=values,
                    seed=seed,
                    scenario=scenario,
                    digest=scenario.digest(),
                )
            )
        return points

    def metadata(self) -> dict[str, Any]:
        """JSON-able description of the grid stored with its result table."""
        return {
            "name": self.name,
            "base": str(self.base),
            "seed": self.seed,
            "set": self.overrides,
            "axes": [
                {"key": key, "label": self.axis_labels[key], "kind": kind}
                for kind, axes in (("product", self.product), ("zip", self.zipped))
                for key in axes
            ],
            "description": self.description,
        }


def _format_grid_validation(error: ValidationError) -> GridError:
    """One-line :class:`GridError` from pydantic's first error."""
    errors = error.errors()
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        reason = "unknown key (grid keys: name, base, seed, set, product, zip, labels, "
        reason += "description)"
    elif kind == "missing":
        reason = "missing key"
    else:
        reason = first["msg"].removeprefix("Value error, ")
        reason = reason[:1].lower() + reason[1:]
        value = first.get("input")
        if loc and not isinstance(value, dict | list):
            reason += f", got {value!r}"
    return GridError(f"{loc}: {reason}" if loc else reason)


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read and validate a grid file.

    Parameters
    ----------
    path : path
        A grid YAML file (DESIGN.md section 8). ``base`` is relative to this file; ``name``
        defaults to the file name without ``.yaml``.

    Returns
    -------
    Grid
        With every point expanded and validated (:attr:`Grid.points`).

    Raises
    ------
    GridError
        One line naming the grid key and the reason: unknown key, missing or unreadable
        base, empty axis, zip lists of different lengths, or an axis value that makes an
        invalid scenario (``product.account.positions.0.levrage: unknown key (point 0 ...)``).

    Examples
    --------
    >>> grid = load_grid("params/grids/leverage-by-mode.yaml")
    >>> grid.n_points, grid.points[0].name, grid.points[-1].name
    (18, 'leverage=1', 'leverage=100')
    """
    path = Path(path)
    try:
        data = read_yaml_mapping(path, what="grid")
    except ScenarioError as error:
        raise GridError(str(error)) from None
    data.setdefault("name", path.stem)
    base = data.get("base")
    if base is None:
        raise GridError("base: missing key (the base scenario file, relative to the grid file)")
    if not isinstance(base, str):
        raise GridError(f"base: must be a file path, got {base!r}")
    base_path = (path.resolve().parent / base).resolve()
    if not base_path.is_file():
        raise GridError(f"base: scenario file {base} does not exist (looked for {base_path})")
    data["base"] = base_path
    try:
        grid = Grid.model_validate(data)
    except ValidationError as error:
        raise _format_grid_validation(error) from None
    grid.points  # noqa: B018 - expand and validate every point now, before anything runs
    return grid


def _as_grid(grid_or_path: Grid | str | os.PathLike[str]) -> Grid:
    return grid_or_path if isinstance(grid_or_path, Grid) else load_grid(grid_or_path)


# --------------------------------------------------------------------------- running


def engine_summary(scenario: Scenario) -> pd.DataFrame:
    """Evaluate one scenario with the engine: ``simulate(scenario).summary()``.

    The default point evaluator of :func:`run_grid`; a module-level function so that process
    pools and Dask workers can pickle it by reference.
    """
    from margin_sim.engine import simulate

    return simulate(scenario, progress=False).summary()


def _flatten_summary(summary: pd.DataFrame) -> dict[str, float]:
    """``{mode}_{column}`` -> value for every mode row of a summary DataFrame."""
    out: dict[str, float] = {}
    for mode, row in summary.iterrows():
        for column, value in row.items():
            out[f"{mode}_{column}"] = float(value)
    return out


def _evaluate_point(
    task: tuple[Evaluate, int, Scenario],
) -> tuple[int, dict[str, float], float]:
    """Worker side: evaluate one point; returns (index, flat summary, seconds)."""
    evaluate, index, scenario = task
    start = time.perf_counter()
    summary = evaluate(scenario)
    return index, _flatten_summary(summary), time.perf_counter() - start


def _progress_bar(total: int, initial: int, name: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=f"grid {name}",
        unit="point",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


def _run(
    grid: Grid,
    *,
    out: str | os.PathLike[str],
    workers: int | None,
    scheduler: str | None,
    executor: Any,
    progress: bool,
    evaluate: Evaluate,
) -> pd.DataFrame:
    """Run a grid with an injectable point evaluator (``run_grid`` passes the engine)."""
    from margin_sim.grid_executors import open_executor
    from margin_sim.grid_store import GridStore

    points = grid.points
    store = GridStore(out, grid.name)
    with store.lock():
        stored = store.load_rows()
        rows = {
            p.index: stored[p.index][p.digest]
            for p in points
            if p.digest in stored.get(p.index, {})
        }
        todo = [p for p in points if p.index not in rows]
        reused = len(rows)
        by_index = {p.index: p for p in todo}
        if todo:
            tasks = [(evaluate, p.index, p.scenario) for p in todo]
            with open_executor(executor, workers=workers, scheduler=scheduler) as runner:
                results = runner.run(_evaluate_point, tasks, n_tasks=len(tasks))
                with _progress_bar(len(points), reused, grid.name, progress) as bar:
                    for index, summary, seconds in results:
                        row = store.make_row(by_index[index], summary, seconds)
                        store.write_part(row)
                        rows[index] = row
                        bar.update(1)
        path = store.consolidate(grid, rows)
    table = read_grid_table(path)
    table.attrs.update(
        {"grid": grid.name, "table": str(path), "computed": len(todo), "reused": reused}
    )
    return table


def run_grid(
    grid_or_path: Grid | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] = "results",
    workers: int | None = None,
    scheduler: str | None = None,
    executor: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every point of a grid and keep one row per point in a Parquet table.

    Parameters
    ----------
    grid_or_path : Grid or path
        A grid, or a grid file for :func:`load_grid`.
    out : path
        Folder of the result store: the table is ``<out>/<grid name>.parquet``; finished
        points wait in ``<out>/<grid name>.parts/`` until the run completes.
    workers : int, optional
        Worker processes (or Dask workers for ``executor="dask-local"``); default: the
        number of cores.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``): send the points there.
    executor : {"process", "inline", "dask-local"}, concurrent.futures.Executor or \
dask.distributed.Client, optional
        ``"process"`` (default): a local process pool; ``"inline"``: this process, one
        point after the other; ``"dask-local"``: a Dask LocalCluster started for this run.
        An executor or Dask client object is used as is and not closed.
    progress : bool
        Show a progress bar (points done, ETA) on stderr.

    Returns
    -------
    pandas.DataFrame
        The table, one row per point in point order: ``point``, ``name``, the axis values
        (one column per axis key), ``<mode>_<summary column>`` for each mode (DESIGN.md
        section 6), ``digest`` (:meth:`Scenario.digest`), ``seed``, ``version``,
        ``finished_at`` (UTC) and ``seconds`` (time to evaluate the point). ``attrs`` holds
        ``table`` (the Parquet path), ``computed`` and ``reused`` (point counts).

    Notes
    -----
    Finished points are written atomically, one file each, as they finish; a run that is
    killed resumes where it stopped. Points whose scenario digest is already in the store
    are not computed again, so editing the grid file or the base scenario recomputes only
    the points whose inputs changed. Apart from :data:`RUN_COLUMNS` the table is the same
    for any executor, worker count and completion order.

    The process pool starts its workers with the ``forkserver`` method (safe in a process
    that runs threads), so a script that calls ``run_grid`` at top level needs the usual
    ``if __name__ == "__main__":`` guard; notebooks and the command line need nothing.
    Dask workers must have ``margin_sim`` installed (the points are pickled by reference).

    Examples
    --------
    >>> table = run_grid("params/grids/leverage-by-mode.yaml", workers=2)  # doctest: +SKIP
    >>> leverage_frontier(table, budget=0.01)  # doctest: +SKIP
    """
    return _run(
        _as_grid(grid_or_path),
        out=out,
        workers=workers,
        scheduler=scheduler,
        executor=executor,
        progress=progress,
        evaluate=engine_summary,
    )


# -------------------------------------------------------------------------- reading


def read_grid_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a grid result table; ``attrs["grid"]`` holds the grid description.

    Parameters
    ----------
    path : path
        ``<out>/<grid name>.parquet`` as written by :func:`run_grid`.

    Returns
    -------
    pandas.DataFrame
        The table, with ``attrs["grid_metadata"]`` the grid's :meth:`Grid.metadata`.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    frame = table.to_pandas()
    raw = (table.schema.metadata or {}).get(b"margin_sim.grid")
    frame.attrs["grid_metadata"] = json.loads(raw) if raw else {}
    return frame


def _result_modes(table: pd.DataFrame) -> list[str]:
    return [mode for mode in MODES if f"{mode}_ruin_probability" in table.columns]


def leverage_frontier(
    table: pd.DataFrame,
    *,
    budget: float = 0.01,
    leverage: str | None = None,
    by: Iterable[str] | None = None,
    z: float = 2.0,
) -> pd.DataFrame:
    """Highest leverage whose ruin probability stays below a budget, per mode.

    "Stays below": every leverage up to and including the frontier has a ruin probability
    under ``budget`` (the first leverage at or above the budget ends the search, even if a
    higher leverage dips back under it by Monte Carlo noise).

    Parameters
    ----------
    table : DataFrame
        A grid result table (:func:`run_grid`, :func:`read_grid_table`).
    budget : float
        Ruin-probability budget, a probability (0.01 = 1%).
    leverage : str, optional
        The leverage axis column; default: the first axis key ending in ``leverage``.
    by : iterable of str, optional
        Other axis columns to compute a frontier for each combination of; default: every
        other axis that varies.
    z : float
        Standard errors added for the conservative frontier (``p + z SE < budget``).

    Returns
    -------
    DataFrame
        One row per (combination of ``by``, mode): ``frontier_leverage`` (NaN when even the
        lowest leverage breaks the budget), its ``ruin_probability`` and
        ``ruin_probability_se``, ``next_leverage`` and its ruin probability (the first
        leverage that breaks the budget; NaN when none does), and
        ``conservative_leverage`` (the same search on ``p + z SE``).

    Raises
    ------
    GridError
        If the table has no leverage axis.
    """
    columns = list(table.columns)
    axes = [a["key"] for a in table.attrs.get("grid_metadata", {}).get("axes", [])]
    if not axes:
        axes = [c for c in columns if "." in c or c in ("paths", "horizon", "step")]
    if leverage is None:
        candidates = [c for c in axes if c.split(".")[-1] == "leverage"]
        if not candidates:
            raise GridError("leverage: the grid has no leverage axis")
        leverage = candidates[0]
    if leverage not in columns:
        raise GridError(f"leverage: no column {leverage!r} in the table")
    if by is None:
        by = [
            c
            for c in axes
            if c != leverage
            and c in columns
            and table[c].nunique(dropna=False) > 1
            # a zipped twin of the leverage axis moves with it: not a separate dimension
            and table.groupby(leverage)[c].nunique(dropna=False).max() > 1
        ]
    by = list(by)
    records: list[dict[str, Any]] = []
    groups = table.groupby(by, sort=True, dropna=False) if by else [((), table)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        ordered = group.sort_values(leverage)
        levels = ordered[leverage].to_numpy(dtype=float)
        for mode in _result_modes(table):
            p = ordered[f"{mode}_ruin_probability"].to_numpy(dtype=float)
            se = ordered[f"{mode}_ruin_probability_se"].to_numpy(dtype=float)
            record: dict[str, Any] = dict(zip(by, key, strict=True))
            record["mode"] = mode
            record.update(_frontier_row(levels, p, se, budget, z))
            records.append(record)
    return pd.DataFrame.from_records(records)


def _frontier_row(
    levels: np.ndarray, p: np.ndarray, se: np.ndarray, budget: float, z: float
) -> dict[str, float]:
    def last_ok(estimate: np.ndarray) -> int:
        above = np.flatnonzero(~(estimate < budget))
        return (int(above[0]) if above.size else len(estimate)) - 1

    k = last_ok(p)
    k_conservative = last_ok(p + z * np.nan_to_num(se))
    nan = float("nan")
    return {
        "frontier_leverage": float(levels[k]) if k >= 0 else nan,
        "ruin_probability": float(p[k]) if k >= 0 else nan,
        "ruin_probability_se": float(se[k]) if k >= 0 else nan,
        "next_leverage": float(levels[k + 1]) if k + 1 < len(levels) else nan,
        "next_ruin_probability": float(p[k + 1]) if k + 1 < len(levels) else nan,
        "conservative_leverage": float(levels[k_conservative]) if k_conservative >= 0 else nan,
    }
