"""OHLCV candles from files: a tidy, checked frame with its gaps and halt bars reported.

:func:`load_candles` reads one candle file (CSV, gzip-compressed CSV or Parquet) with the
columns ``timestamp, open, high, low, close, volume``; timestamps are the bar OPEN times,
either epoch milliseconds (integers, UTC) or ISO-8601 text. The result is a :class:`Candles`:

- ``frame``: a DataFrame indexed by the UTC bar-open time with float columns
  ``open, high, low, close, volume``, sorted, unique;
- ``interval``: the bar length, inferred as the most common spacing of the timestamps;
- ``gaps``: the runs of missing bars (``start`` = first missing bar, ``end`` = last missing
  bar, ``missing`` = how many), which are NEVER filled;
- ``halts``: the open times of zero-volume bars (exchange halts: flat placeholder candles at
  the previous close). They are dropped from ``frame`` because they carry no price
  information and would bias volatility estimates down.

Returns are only ever taken between bars that are one interval apart (:meth:`Candles.log_returns`),
so a gap or a dropped halt bar never produces a spurious multi-bar "return".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from margin_sim.durations import SECONDS_PER_YEAR, format_duration, parse_duration
from margin_sim.errors import DataError

__all__ = [
    "COLUMNS",
    "Candles",
    "asset_from_filename",
    "load_candles",
]

#: Columns of a candle frame, in order.
COLUMNS = ("open", "high", "low", "close", "volume")

_TIME_NAMES = ("timestamp", "time", "date", "datetime", "open_time", "opentime")
_QUOTES = ("USDT", "USDC", "BUSD", "USD", "FDUSD")


@dataclass(frozen=True)
class Candles:
    """A checked candle series.

    Attributes
    ----------
    frame : pandas.DataFrame
        Indexed by the UTC bar-open time (``timestamp``), float columns
        ``open, high, low, close, volume`` (prices in quote currency, volume in base units).
        Zero-volume halt bars are not in it; gaps are not filled.
    interval : pandas.Timedelta
        Bar length.
    gaps : pandas.DataFrame
        One row per run of missing bars: ``start``, ``end`` (open times of the first and last
        missing bar) and ``missing`` (number of bars). Halt bars are not counted as gaps.
    halts : pandas.DatetimeIndex
        Open times of the dropped zero-volume bars.
    source : str
        Where the candles came from (file name), for reports.
    """

    frame: pd.DataFrame
    interval: pd.Timedelta
    gaps: pd.DataFrame = field(repr=False)
    halts: pd.DatetimeIndex = field(repr=False)
    source: str = ""

    # -- summaries ---------------------------------------------------------------------

    @property
    def interval_seconds(self) -> float:
        """Bar length, seconds."""
        return self.interval.total_seconds()

    @property
    def missing_bars(self) -> int:
        """Total number of missing bars over all gaps."""
        return int(self.gaps["missing"].sum()) if len(self.gaps) else 0

    @property
    def years(self) -> float:
        """Time covered by the bars present, years (gaps and halts excluded)."""
        return len(self.frame) * self.interval_seconds / SECONDS_PER_YEAR

    @property
    def start(self) -> pd.Timestamp:
        """Open time of the first bar."""
        return self.frame.index[0]

    @property
    def end(self) -> pd.Timestamp:
        """Close time of the last bar (its open time plus one interval)."""
        return self.frame.index[-1] + self.interval

    def describe(self) -> str:
        """One line: source, bar size, range, rows, gaps and halts."""
        return (
            f"{self.source or 'candles'}: {format_duration(self.interval_seconds)} bars, "
            f"{self.start:%Y-%m-%d %H:%M} -> {self.frame.index[-1]:%Y-%m-%d %H:%M} UTC, "
            f"{len(self.frame)} bars, {len(self.gaps)} gap(s) with {self.missing_bars} missing "
            f"bar(s), {len(self.halts)} zero-volume halt bar(s) dropped"
        )

    # -- derived series ----------------------------------------------------------------

    def log_returns(self) -> pd.Series:
        """Close-to-close log returns between bars exactly one interval apart.

        Returns
        -------
        pandas.Series
            Indexed by the open time of the later bar; a bar after a gap or a dropped halt
            bar has no return.
        """
        close = self.frame["close"]
        returns = np.log(close).diff()
        consecutive = self.frame.index.to_series().diff() == self.interval
        return returns[consecutive.to_numpy()].rename("log_return")

    def slice(self, start: object = None, end: object = None) -> Candles:
        """Bars whose open time lies in ``[start, end)``; gaps and halts restricted likewise."""
        index = self.frame.index
        keep = np.ones(len(index), dtype=bool)
        lo = _utc(start) if start is not None else None
        hi = _utc(end) if end is not None else None
        if lo is not None:
            keep &= index >= lo
        if hi is not None:
            keep &= index < hi
        gaps = self.gaps
        if len(gaps):
            inside = np.ones(len(gaps), dtype=bool)
            if lo is not None:
                inside &= (gaps["start"] >= lo).to_numpy()
            if hi is not None:
                inside &= (gaps["end"] < hi).to_numpy()
            gaps = gaps[inside].reset_index(drop=True)
        halts = self.halts
        if lo is not None:
            halts = halts[halts >= lo]
        if hi is not None:
            halts = halts[halts < hi]
        return Candles(self.frame[keep], self.interval, gaps, halts, self.source)

    def resample(self, bar: str | float) -> Candles:
        """Aggregate to a longer bar: first open, max high, min low, last close, summed volume.

        Bars are aligned to multiples of the new length since the Unix epoch. A new bar is
        kept only when every one of its constituent bars is present (no gap or halt inside), so
        its open-to-close move and its range are complete; the dropped new bars become gaps.

        Parameters
        ----------
        bar : str or float
            New bar length, text (``"1h"``) or seconds; a whole multiple of the current one.

        Raises
        ------
        DataError
            If the new length is not a whole multiple of the current bar length.
        """
        seconds = parse_duration(bar) if isinstance(bar, str) else float(bar)
        ratio = seconds / self.interval_seconds
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-9:
            raise DataError(
                f"bar: {format_duration(seconds)} is not a whole multiple of the data's "
                f"{format_duration(self.interval_seconds)} bars"
            )
        factor = round(ratio)
        if factor == 1:
            return self
        new_interval = pd.Timedelta(seconds=seconds)
        frame = self.frame
        groups = frame.index.floor(new_interval)
        grouped = frame.groupby(groups)
        out = pd.DataFrame(
            {
                "open": grouped["open"].first(),
                "high": grouped["high"].max(),
                "low": grouped["low"].min(),
                "close": grouped["close"].last(),
                "volume": grouped["volume"].sum(),
            }
        )
        complete = grouped.size() == factor
        out = out[complete.to_numpy()]
        out.index = pd.DatetimeIndex(out.index, name="timestamp").as_unit("ns")
        return Candles(
            out,
            new_interval,
            _find_gaps(out.index, new_interval),
            pd.DatetimeIndex([], tz="UTC"),
            f"{self.source} resampled to {format_duration(seconds)}",
        )


def _utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def asset_from_filename(path: str | Path) -> str:
    """Asset name from a file name such as ``BTCUSDT_perp_1m_...csv.gz`` -> ``BTC``.

    The first part (up to ``_`` or ``-``) with a trailing quote currency (USDT, USDC, BUSD,
    USD, FDUSD) removed.
    """
    stem = Path(path).name.split(".")[0]
    first = re.split(r"[_\-]", stem)[0].upper()
    for quote in _QUOTES:
        if first.endswith(quote) and len(first) > len(quote):
            return first[: -len(quote)]
    return first


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".gz", ".txt")):
            return pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: cannot read the file ({reason})") from None
    except Exception as error:  # pyarrow and the csv parser raise their own types
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: cannot read the file ({reason})") from None
    raise DataError(f"{path}: unknown file type (use .csv, .csv.gz or .parquet)")


def _parse_times(values: pd.Series, path: Path, column: str) -> pd.DatetimeIndex:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        times = pd.DatetimeIndex(values)
        return times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(numbers)):
            raise DataError(f"{path}: column {column!r} has missing or non-finite values")
        # epoch milliseconds (the documented format); epoch seconds would be < 1e11 until 5138
        big = np.nanmedian(np.abs(numbers))
        unit = "ms" if big >= 1e11 else "s"
        if big >= 1e14:
            unit = "us"
        return pd.DatetimeIndex(pd.to_datetime(values.astype("int64"), unit=unit, utc=True))
    try:
        times = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        raise DataError(
            f"{path}: column {column!r} is neither epoch milliseconds nor ISO-8601 times"
        ) from None
    if times.isna().any():
        raise DataError(f"{path}: column {column!r} has missing times")
    return pd.DatetimeIndex(times)


def _find_gaps(index: pd.DatetimeIndex, interval: pd.Timedelta) -> pd.DataFrame:
    if len(index) < 2:
        return pd.DataFrame({"start": [], "end": [], "missing": []})
    step = np.diff(index.asi8)
    width = interval.value
    where = np.flatnonzero(step > width)
    missing = (step[where] // width - 1).astype(np.int64)
    starts = index[where] + interval
    ends = index[where + 1] - interval
    return pd.DataFrame({"start": starts, "end": ends, "missing": missing})


def load_candles(path: str | Path, *, expected_interval: str | float | None = None) -> Candles:
    """Read a candle file into a checked :class:`Candles`.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz`` or ``.parquet`` with the columns ``timestamp`` (bar open time,
        epoch milliseconds UTC or ISO-8601; ``time``/``date``/``open_time`` are accepted too),
        ``open``, ``high``, ``low``, ``close`` (quote currency) and ``volume`` (base units).
    expected_interval : str or float, optional
        Bar length the file must have (``"1m"`` or seconds); checked against the inferred one.

    Returns
    -------
    Candles
        Halt bars (zero volume) dropped and reported; gaps reported, never filled.

    Raises
    ------
    DataError
        One line naming the file and the problem: unreadable, missing columns, non-numeric or
        non-positive prices, high below low, open/close outside [low, high], duplicate times,
        fewer than 3 bars, or an interval different from ``expected_interval``.

    Examples
    --------
    >>> candles = load_candles("../shared/data/market/BTCUSDT_spot_1m_20210420_20210520.csv.gz")
    >>> len(candles.gaps), candles.missing_bars
    (1, 284)
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    raw = _read_table(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    time_column = next((c for c in _TIME_NAMES if c in raw.columns), None)
    if time_column is None and isinstance(raw.index, pd.DatetimeIndex):
        raw = raw.reset_index(names="timestamp")
        time_column = "timestamp"
    if time_column is None:
        raise DataError(f"{path}: no timestamp column (expected one of {', '.join(_TIME_NAMES)})")
    absent = [c for c in COLUMNS if c not in raw.columns]
    if absent:
        raise DataError(f"{path}: missing column(s) {', '.join(absent)}")
    if len(raw) < 3:
        raise DataError(f"{path}: only {len(raw)} row(s), need at least 3 bars")
    times = _parse_times(raw[time_column], path, time_column)
    values = {}
    for column in COLUMNS:
        numbers = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(numbers)
        if bad.any():
            raise DataError(
                f"{path}: column {column!r} has {int(bad.sum())} missing or non-numeric value(s)"
            )
        values[column] = numbers
    # one time resolution (ns) whatever the source, so integer arithmetic on asi8 is uniform
    index = pd.DatetimeIndex(times, name="timestamp").as_unit("ns")
    frame = pd.DataFrame(values, index=index)
    frame = frame.sort_index(kind="stable")
    duplicated = frame.index.duplicated()
    if duplicated.any():
        first = frame.index[duplicated][0]
        raise DataError(f"{path}: {int(duplicated.sum())} duplicate timestamp(s), first {first}")
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    if (prices <= 0).any():
        raise DataError(f"{path}: {int((prices <= 0).any(axis=1).sum())} bar(s) with a price <= 0")
    if (frame["volume"] < 0).any():
        raise DataError(f"{path}: {int((frame['volume'] < 0).sum())} bar(s) with negative volume")
    high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
    body_hi = np.maximum(frame["open"].to_numpy(), frame["close"].to_numpy())
    body_lo = np.minimum(frame["open"].to_numpy(), frame["close"].to_numpy())
    inconsistent = (high < body_hi) | (low > body_lo)
    if inconsistent.any():
        first = frame.index[inconsistent][0]
        raise DataError(
            f"{path}: {int(inconsistent.sum())} bar(s) with open/close outside [low, high], "
            f"first {first}"
        )
    spacing = np.diff(frame.index.asi8)
    values_, counts = np.unique(spacing, return_counts=True)
    interval = pd.Timedelta(int(values_[np.argmax(counts)]), unit="ns")
    if expected_interval is not None:
        expected = (
            parse_duration(expected_interval)
            if isinstance(expected_interval, str)
            else float(expected_interval)
        )
        if not math.isclose(interval.total_seconds(), expected, rel_tol=1e-9):
            raise DataError(
                f"{path}: bars are {format_duration(interval.total_seconds())} apart, "
                f"expected {format_duration(expected)}"
            )
    off_grid = spacing % interval.value != 0
    if off_grid.any():
        raise DataError(
            f"{path}: {int(off_grid.sum())} timestamp step(s) are not whole multiples of the "
            f"{format_duration(interval.total_seconds())} bar"
        )
    gaps = _find_gaps(frame.index, interval)
    halt = frame["volume"].to_numpy() == 0
    halts = frame.index[halt]
    frame = frame[~halt]
    if len(frame) < 3:
        raise DataError(f"{path}: fewer than 3 bars with volume")
    return Candles(frame, interval, gaps, pd.DatetimeIndex(halts), path.name)
