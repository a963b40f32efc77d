"""The result store of a grid: one Parquet table per grid, written so that a kill loses nothing.

Layout under the output folder ``out``:

``<name>.parquet``
    The table, one row per point (written at the end of a run).
``<name>.parts/<point>-<digest>.parquet``
    One single-row file per point finished by a run that has not completed yet.
``.<name>.lock``
    Held (``flock``) while a run writes, so two runs of one grid cannot interleave.

Every file is first written under a hidden temporary name and then renamed over its final
name with :func:`os.replace`, which is atomic on POSIX and Windows: a reader, or the next run
after a SIGKILL, sees either the whole file or none of it. A restart reads the table and the
part files, keeps the rows whose scenario digest still matches a point, and computes the rest;
the final table is consolidated from those rows and the part files are removed only after it
has been renamed into place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from margin_sim import __version__
from margin_sim.errors import GridError

if TYPE_CHECKING:
    from margin_sim.grid import Grid, GridPoint

__all__ = ["RESULT_PREFIXES", "GridStore", "Row"]

#: A stored row: column name -> value.
Row = dict[str, Any]

#: Result columns are named ``<mode>_<summary column>``.
RESULT_PREFIXES = ("isolated_", "cross_")

_ID_COLUMNS = ("point", "name")
_TRAILING_COLUMNS = ("digest", "seed", "version", "finished_at", "seconds")
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_METADATA_KEY = b"margin_sim.grid"


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a hidden temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _axis_array(values: list[Any]) -> pa.Array:
    """One axis column: numbers stay numbers, anything else is stored as JSON text."""
    if all(isinstance(v, bool) for v in values):
        return pa.array(values, type=pa.bool_())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.array(values, type=pa.int64())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.array([float(v) for v in values], type=pa.float64())
    if all(isinstance(v, str) for v in values):
        return pa.array(values, type=pa.string())
    return pa.array([json.dumps(v, sort_keys=True, default=str) for v in values], type=pa.string())


def _is_result(column: str) -> bool:
    return column.startswith(RESULT_PREFIXES)


def _result_columns(rows: list[Row]) -> list[str]:
    """Result columns of all rows, mode by mode, in order of first appearance."""
    seen: dict[str, None] = {}
    for prefix in RESULT_PREFIXES:
        for row in rows:
            for column in row:
                if column.startswith(prefix):
                    seen.setdefault(column, None)
    return list(seen)


class GridStore:
    """Parts and table of one grid under an output folder.

    Parameters
    ----------
    out : path
        Output folder (created when a run starts).
    name : str
        Grid name; the table is ``<out>/<name>.parquet``.
    """

    def __init__(self, out: str | os.PathLike[str], name: str) -> None:
        self.out = Path(out)
        self.name = name
        self.table_path = self.out / f"{name}.parquet"
        self.parts_dir = self.out / f"{name}.parts"
        self._lock_path = self.out / f".{name}.lock"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's lock for a run.

        Raises
        ------
        GridError
            If another process is running the same grid into the same folder.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no advisory locks
            yield
            return
        with open(self._lock_path, "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GridError(
                    f"out: another run of grid {self.name!r} is writing {self.table_path}"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # -- reading -----------------------------------------------------------------------

    @staticmethod
    def _stored_rows(table: pa.Table) -> list[Row]:
        keep = [
            c
            for c in table.column_names
            if c in _ID_COLUMNS or c in _TRAILING_COLUMNS or _is_result(c)
        ]
        return table.select(keep).to_pylist()

    def load_rows(self) -> dict[int, dict[str, Row]]:
        """Rows already stored: point index -> scenario digest -> row.

        Part files (newer) take precedence over the table for the same point and digest.
        Leftover temporary files of a killed run are removed; the caller holds :meth:`lock`.
        """
        found: dict[int, dict[str, Row]] = {}

        def add(rows: list[Row]) -> None:
            for row in rows:
                found.setdefault(int(row["point"]), {})[str(row["digest"])] = row

        for folder in (self.out, self.parts_dir):
            if folder.is_dir():
                for leftover in folder.glob(".*.tmp"):
                    leftover.unlink(missing_ok=True)
        if self.table_path.is_file():
            add(self._stored_rows(pq.read_table(self.table_path)))
        if self.parts_dir.is_dir():
            for part in sorted(self.parts_dir.glob("*.parquet")):
                try:
                    add(self._stored_rows(pq.read_table(part)))
                except (OSError, pa.ArrowException):
                    # cannot happen through os.replace; a damaged file is recomputed
                    part.unlink(missing_ok=True)
        return found

    # -- writing -----------------------------------------------------------------------

    @staticmethod
    def make_row(point: GridPoint, summary: dict[str, float], seconds: float) -> Row:
        """The stored row of a finished point (without its axis values)."""
        return {
            "point": point.index,
            "name": point.name,
            **summary,
            "digest": point.digest,
            "seed": point.seed,
            "version": __version__,
            "finished_at": _dt.datetime.now(_dt.UTC),
            "seconds": float(seconds),
        }

    @staticmethod
    def _to_table(rows: list[Row], axes: dict[str, list[Any]] | None = None) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "point": pa.array([row["point"] for row in rows], type=pa.int64()),
            "name": pa.array([row["name"] for row in rows], type=pa.string()),
        }
        for key, values in (axes or {}).items():
            columns[key] = _axis_array(values)
        for column in _result_columns(rows):
            columns[column] = pa.array(
                [row.get(column) for row in rows], type=pa.float64(), from_pandas=True
            )
        columns["digest"] = pa.array([row["digest"] for row in rows], type=pa.string())
        columns["seed"] = pa.array([row["seed"] for row in rows], type=pa.int64())
        columns["version"] = pa.array([row["version"] for row in rows], type=pa.string())
        columns["finished_at"] = pa.array([row["finished_at"] for row in rows], type=_TIMESTAMP)
        columns["seconds"] = pa.array([row["seconds"] for row in rows], type=pa.float64())
        return pa.table(columns)

    def write_part(self, row: Row) -> Path:
        """Write one finished point atomically to the parts folder."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        path = self.parts_dir / f"{int(row['point']):07d}-{str(row['digest'])[:16]}.parquet"
        _write_atomic(self._to_table([row]), path)
        return path

    def consolidate(self, grid: Grid, rows: dict[int, Row]) -> Path:
        """Write the table of every point of ``grid`` and remove the part files.

        Parameters
        ----------
        grid : Grid
            The grid; its points give the row order and the axis values.
        rows : dict of int to Row
            The current row of every point.

        Returns
        -------
        Path
            The table, ``<out>/<name>.parquet``.
        """
        points = grid.points
        missing = [p.index for p in points if p.index not in rows]
        if missing:  # pragma: no cover - the runner computes every missing point first
            raise RuntimeError(f"points {missing[:5]} have no result")
        ordered = [rows[p.index] for p in points]
        axes = {key: [p.values[key] for p in points] for key in grid.axes}
        table = self._to_table(ordered, axes)
        metadata = {**grid.metadata(), "version": __version__}
        table = table.replace_schema_metadata(
            {
                **(table.schema.metadata or {}),
                _METADATA_KEY: json.dumps(metadata, default=str).encode(),
            }
        )
        _write_atomic(table, self.table_path)
        if self.parts_dir.is_dir():
            for part in self.parts_dir.iterdir():
                part.unlink(missing_ok=True)
            self.parts_dir.rmdir()
        return self.table_path
