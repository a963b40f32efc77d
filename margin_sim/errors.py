"""The project's error hierarchy.

Every error a user can cause by what they wrote derives from :class:`MarginSimError`;
the command line turns those into one line on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "ExchangeError",
    "GridError",
    "MarginSimError",
    "ScenarioError",
]


class MarginSimError(Exception):
    """Base class of every error caused by user input."""


class ScenarioError(MarginSimError):
    """A scenario file or mapping is malformed.

    Parameters
    ----------
    field : str
        Dotted path of the offending field (``account.positions.0.leverage``), or the file.
    reason : str
        Why it was refused, in words.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class ExchangeError(MarginSimError, ValueError):
    """An exchange rule set or a liquidation-price query is malformed."""


class GridError(MarginSimError, ValueError):
    """A grid file is malformed."""


class DataError(MarginSimError, ValueError):
    """A market-data file cannot be read."""
