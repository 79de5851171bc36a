"""Short number formats for narrow columns."""

from __future__ import annotations

import math


def num(value, digits: int = 3) -> str:
    """``0.01``, ``128``, ``1.2e+03``; an en dash when unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}g}"


def sci(value, digits: int = 3) -> str:
    """Compact scientific notation for η/S: ``3.12e-4``."""
    if value is None or not math.isfinite(value) or value == 0:
        return "–" if value is None else str(value)
    exp = math.floor(math.log10(abs(value)))
    mant = value / 10**exp
    if round(mant, digits - 1) >= 10:
        mant, exp = mant / 10, exp + 1
    return f"{mant:.{digits - 1}f}e{exp}"


def pct(value) -> str:
    """Accuracy as a percentage: ``91.2``."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100 * value:.1f}"


def duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
