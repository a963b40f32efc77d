"""Candle loading: formats, checks, gap and halt-bar reports (synthetic and shipped data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from margin_sim.data import asset_from_filename, load_candles
from margin_sim.errors import DataError

MARKET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "market"


def _frame(n: int = 10, start: int = 1_700_000_000_000, step_ms: int = 60_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": start + step_ms * np.arange(n),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": np.ones(n),
        }
    )


def test_csv_gz_epoch_ms_gap_and_halt(tmp_path: Path) -> None:
    frame = _frame(20)
    frame = frame.drop(index=[5, 6, 7])  # one gap of 3 bars
    frame.loc[12, "volume"] = 0.0  # a halt bar
    path = tmp_path / "BTCUSDT_x.csv.gz"
    frame.to_csv(path, index=False)
    candles = load_candles(path, expected_interval="1min")
    assert candles.interval == pd.Timedelta(minutes=1)
    assert len(candles.gaps) == 1 and candles.missing_bars == 3
    assert candles.gaps["start"].iloc[0] == pd.Timestamp(
        1_700_000_000_000 + 5 * 60_000, unit="ms", tz="UTC"
    )
    assert len(candles.halts) == 1 and len(candles.frame) == 16
    assert candles.frame.index.tz is not None
    returns = candles.log_returns()
    # no return across the gap or the dropped halt bar
    assert len(returns) == 16 - 1 - 2


def test_iso_timestamps_and_parquet(tmp_path: Path) -> None:
    frame = _frame(8)
    iso = frame.assign(
        timestamp=pd.to_datetime(frame["timestamp"], unit="ms", utc=True).dt.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    )
    iso.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet")
    a = load_candles(tmp_path / "a.csv")
    b = load_candles(tmp_path / "a.parquet")
    assert a.frame.index.equals(b.frame.index)
    np.testing.assert_allclose(a.frame.to_numpy(), b.frame.to_numpy())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="low"), "missing column"),
        (lambda f: f.assign(high=f["low"] * 0.9), "outside"),
        (lambda f: pd.concat([f, f.iloc[[2]]]), "duplicate"),
        (lambda f: f.assign(close=-1.0), "price <= 0"),
        (lambda f: f.assign(open="x"), "non-numeric"),
    ],
)
def test_bad_files_raise_one_line(tmp_path: Path, change: object, message: str) -> None:
    path = tmp_path / "bad.csv"
    change(_frame(10)).to_csv(path, index=False)  # type: ignore[operator]
    with pytest.raises(DataError, match=message) as info:
        load_candles(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_wrong_interval(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_candles(tmp_path / "nope.csv")
    _frame(10).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match="expected 5min"):
        load_candles(tmp_path / "a.csv", expected_interval="5min")


def test_resample_keeps_complete_bars_only(tmp_path: Path) -> None:
    start = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000
    frame = _frame(180, start=start).drop(index=[70])
    frame.to_csv(tmp_path / "a.csv", index=False)
    hourly = load_candles(tmp_path / "a.csv").resample("1h")
    assert len(hourly.frame) == 2  # the second hour lost a minute
    first = frame.iloc[:60]
    row = hourly.frame.iloc[0]
    assert row["high"] == first["high"].max() and row["low"] == first["low"].min()
    assert row["open"] == first["open"].iloc[0] and row["close"] == first["close"].iloc[-1]


def test_asset_from_filename() -> None:
    assert asset_from_filename("BTCUSDT_perp_1m_x.csv.gz") == "BTC"
    assert asset_from_filename("eth-usd.parquet") == "ETH"


needs_market = pytest.mark.skipif(not MARKET.is_dir(), reason=f"market data not at {MARKET}")


@needs_market
@pytest.mark.requires_market_data
@pytest.mark.parametrize(
    ("name", "gaps", "missing", "halts"),
    [
        ("BTCUSDT_spot_1m_20210420_20210520.csv.gz", 1, 284, 0),
        ("BTCUSDT_perp_1m_20250127_20250226.csv.gz", 0, 0, 17),
        ("BTCUSDT_spot_1h_20170817_20240421.csv.gz", 28, 128, 4),
    ],
)
def test_shipped_data_known_gaps(name: str, gaps: int, missing: int, halts: int) -> None:
    candles = load_candles(MARKET / name)
    assert (len(candles.gaps), candles.missing_bars, len(candles.halts)) == (gaps, missing, halts)
    assert (candles.frame["volume"] > 0).all()
