"""Shared type aliases."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["FloatArray", "IntArray", "MarginMode", "Rule", "Side"]

MarginMode = Literal["isolated", "cross"]
Side = Literal["long", "short"]
Rule = Literal["binance", "bybit", "okx", "hyperliquid"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
