"""Durations as text: parsing, refusals, and the exact round trip of format_duration."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from margin_sim.durations import SECONDS_PER_YEAR, format_duration, parse_duration

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("1sec", 1.0),
        ("15min", 15 * MINUTE),
        ("15m", 15 * MINUTE),
        ("1h", HOUR),
        ("1.5h", 1.5 * HOUR),
        ("7d", 7 * DAY),
        ("2w", 14 * DAY),
        ("30D", 30 * DAY),
        (" 8h ", 8 * HOUR),
        ("8 h", 8 * HOUR),
        (".5d", 0.5 * DAY),
        ("1e3s", 1000.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-15)


@pytest.mark.parametrize(
    "value",
    ["", "h", "1", "10 parsecs", "1y", "-5min", "1h30min", "one hour", "nan s", "1e999s"],
)
def test_unreadable_text_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [3600, 3600.0, True, None, [1, "h"]])
def test_non_text_is_refused_with_a_hint(value: object) -> None:
    with pytest.raises(ValueError, match="needs a unit"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["0s", "0min", "0.0h"])
def test_zero_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90.0, "90s"),
        (60.0, "1min"),
        (5400.0, "90min"),
        (HOUR, "1h"),
        (36 * HOUR, "36h"),
        (7 * DAY, "7d"),
        (0.25, "0.25s"),
        (3601.0, "3601s"),
    ],
)
def test_format_uses_the_largest_exact_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_format_then_parse_is_exact(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(
    st.integers(min_value=1, max_value=10_000),
    st.sampled_from(["s", "min", "h", "d", "w"]),
)
def test_parse_format_parse_is_stable(count: int, unit: str) -> None:
    seconds = parse_duration(f"{count}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds


def test_values_a_float_cannot_hold_exactly_still_round_trip() -> None:
    # 0.1h is not exactly 360 s in binary; the text must not silently round it to "6min"
    seconds = parse_duration("0.1h")
    assert parse_duration(format_duration(seconds)) == seconds
    nearly_an_hour = math.nextafter(HOUR, 0.0)
    assert format_duration(nearly_an_hour) != "1h"
    assert parse_duration(format_duration(nearly_an_hour)) == nearly_an_hour


def test_year_is_365_days() -> None:
    assert parse_duration("365d") == SECONDS_PER_YEAR
