"""Durations written as text ("90s", "15min", "1h", "7d") and their conversions."""

from __future__ import annotations

import math
import re

__all__ = ["SECONDS_PER_YEAR", "format_duration", "parse_duration"]

#: Seconds in a year of 365 days; annualised volatilities and rates use this year.
SECONDS_PER_YEAR = 365.0 * 24 * 3600

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]+)\s*$")


def parse_duration(text: object) -> float:
    """Parse a duration into seconds.

    Parameters
    ----------
    text : str
        A positive number followed by a unit: ``s``, ``min`` (or ``m``), ``h``, ``d``, ``w``.

    Returns
    -------
    float
        The duration in seconds.

    Raises
    ------
    ValueError
        If the text is not a number with one of those units, or is not positive.

    Examples
    --------
    >>> parse_duration("15min")
    900.0
    >>> parse_duration("7d") / 3600
    168.0
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"duration {text!r} needs a unit, e.g. '90s', '15min', '1h', '7d'")
    match = _PATTERN.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read duration {text!r}: use e.g. '90s', '15min', '1h', '7d'")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive and finite")
    return seconds


def format_duration(seconds: float) -> str:
    """Write seconds back as the shortest exact text (``3600.0 -> "1h"``).

    ``parse_duration(format_duration(x)) == x`` for every positive finite ``x``: a unit is
    used only when it divides the duration exactly, otherwise the seconds are written with
    as many digits as it takes.

    Examples
    --------
    >>> format_duration(5400.0)
    '90min'
    >>> format_duration(0.25)
    '0.25s'
    """
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        count = round(seconds / size)
        if count >= 1 and count * size == seconds:
            return f"{count}{unit}"
    short = f"{seconds:g}"
    return f"{short if float(short) == seconds else repr(float(seconds))}s"
