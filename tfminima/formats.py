"""How a noise scale η/S is written, the same in the CLI, the TUI and the reports. No TensorFlow.

One format everywhere (``1.25e-3``: three significant digits, always in scientific notation, trailing
zeros kept so that a column of them lines up), so that a run found in the report's tables is recognised
in the progress bar, the final table and the TUI.
"""

from __future__ import annotations

import math

__all__ = ["eta_over_s"]

DASH = "–"


def eta_over_s(value, digits: int = 3) -> str:
    """``value`` in compact scientific notation: ``1.25e-3``, ``3.12e-4``, ``1.00e-2``; ``–`` for None."""
    if value is None or isinstance(value, bool):
        return DASH
    value = float(value)
    if not math.isfinite(value) or value == 0:
        return str(value) if value == value else "nan"
    exp = math.floor(math.log10(abs(value)))
    mant = value / 10**exp
    if round(abs(mant), digits - 1) >= 10:
        mant, exp = mant / 10, exp + 1
    return f"{mant:.{digits - 1}f}e{exp}"
