"""Axis limits and ticks for plotext panels, so that every value is drawn where its label says.

plotext maps a value to the canvas with ``floor(0.5 + (cells - 1) * t)`` (``t`` its fraction of the
axis range), where a braille line has 4 dots a row and 2 a column and a plain marker (``•``) one,
and puts its own tick labels at evenly spaced fractions of the range. The labels then sit up to
half a row away from the values drawn beside them: a line at 0.16 was drawn on the row labelled
0.11. Here the limits are chosen so that the *rows* are centred on round numbers (0.1, 0.2, ...)
for braille lines: a value is drawn on the row whose label is nearest to it. Each tick is handed
to plotext at the row (or column) where that value's braille dots fall, plain-marker points are
moved to the centre of the cell their value falls in, and epoch axes get integer ticks.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

BRAILLE_ROW, BRAILLE_COL = 4, 2  # dots a character cell holds, vertically and horizontally
OVERHEAD_ROWS = 4  # title, the two x axes lines, x tick labels (no x label)
MAX_Y_LABELS = 8
ROW_STEPS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)  # a row's height: finer than 1-2-5, less room lost


@dataclasses.dataclass(frozen=True)
class Axis:
    """Limits for plotext, ticks (values placed at their cells) and their labels."""

    lim: tuple[float, float]
    ticks: list[float]
    labels: list[str]
    cells: int  # character rows (y) or columns (x) of the canvas
    sub: int  # braille dots a cell

    def cell_of(self, values: np.ndarray) -> np.ndarray:
        """The cell a braille dot of each value falls in (plotext's own arithmetic)."""
        lo, hi = self.lim
        dots = np.floor(np.round(0.5 + (self.cells * self.sub - 1) * (values - lo) / (hi - lo), 8))
        return (dots // self.sub).astype(np.int64)

    def plain(self, values: np.ndarray) -> np.ndarray:
        """Values a plain marker is drawn at, moved to the centre of the cell their braille dots use."""
        lo, hi = self.lim
        return lo + self.cell_of(values) * (hi - lo) / (self.cells - 1)


def nice_steps(smallest: float, mantissas=(1.0, 2.0, 2.5, 5.0)):
    """m × 10^k (m in ``mantissas``) from the first one at or above ``smallest``."""
    k = math.floor(math.log10(smallest)) if smallest > 0 else 0
    while True:
        for m in mantissas:
            step = m * 10.0**k
            if step >= smallest * (1 - 1e-12):
                yield step
        k += 1


def label(value: float, step: float) -> str:
    """``value`` with the decimals ``step`` needs; scientific below 1e-4 steps or from 1e5 on."""
    if abs(value) < step * 1e-6:
        return "0"
    exponent = math.floor(math.log10(step) + 1e-9)
    extra = 0 if abs(step / 10.0**exponent - round(step / 10.0**exponent)) < 1e-9 else 1  # 2.5 × 10^k
    if exponent < -4 or abs(value) >= 1e5:
        digits = max(0, math.floor(math.log10(abs(value)) + 1e-9) - exponent) + extra
        mantissa, power = f"{value:.{digits}e}".split("e")
        return f"{mantissa}e{int(power)}"
    return f"{value:.{max(0, -exponent + extra)}f}"


def y_axis(lo: float, hi: float, rows: int, headroom: int = 0) -> Axis:
    """Rows centred on multiples of a round step; at most ``MAX_Y_LABELS`` of them labelled. The top
    ``headroom`` rows stay above the data, unlabelled: plotext draws a legend there, over no line."""
    total = max(rows, 2)
    rows = max(total - max(headroom, 0), 2)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.1 if lo else 1.0
        lo, hi = lo - pad, hi + pad
    # Row r holds the values in [c0 + (r - 1/2) step, c0 + (r + 1/2) step) when plotext's limits are
    # c0 - 3/8 step and c0 + (rows - 5/8) step (its 0.5 offset on 4·rows - 1 dots); c0 = n0·step.
    for step in nice_steps((hi - lo) / rows, ROW_STEPS):
        n0 = math.floor(lo / step + 0.5)
        if hi < (n0 + rows - 0.5) * step * (1 - 1e-12 if hi > 0 else 1 + 1e-12):
            break
    c0 = n0 * step
    total = max(total, rows)
    lim = (c0 - 0.375 * step, c0 + (total - 0.625) * step)
    every = next(m for m in (1, 2, 5, 10, 20, 50, 100) if rows / m <= MAX_Y_LABELS)
    ticks, labels = [], []
    for r in range(rows):
        n = n0 + r
        if n % every == 0:
            value = n * step
            ticks.append(value)
            labels.append(label(value, step * every))
    axis = Axis(lim, [], [], total, BRAILLE_ROW)
    # plotext places a tick by the plain mapping: hand it the value whose plain cell is the braille cell
    placed = axis.plain(np.array(ticks)).tolist() if ticks else []
    return Axis(lim, placed, labels, total, BRAILLE_ROW)


def x_axis(lo: float, hi: float, columns: int, integer: bool = False) -> Axis:
    """Limits [lo, hi] (``integer``: epochs, ticks on whole numbers), ticks at the braille columns."""
    columns = max(columns, 2)
    if hi <= lo:
        lo, hi = (lo - 1, hi + 1) if integer else (lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0))
    axis = Axis((lo, hi), [], [], columns, BRAILLE_COL)
    most = max(2, columns // (6 if integer else 8))  # labels and the gaps between them
    for step in nice_steps((hi - lo) / most):
        if (not integer or step == int(step)) and (hi - lo) / step <= most:
            break
    first = math.ceil(lo / step - 1e-9)
    values = [n * step for n in range(first, math.floor(hi / step + 1e-9) + 1)]
    labels = [str(int(round(v))) if integer else label(v, step) for v in values]
    placed = axis.plain(np.array(values)).tolist() if values else []
    return Axis((lo, hi), placed, labels, columns, BRAILLE_COL)


def canvas_rows(panel_height: int, has_xlabel: bool) -> int:
    """The data rows plotext leaves in a panel of this height (title, x axes, tick labels, x label)."""
    return panel_height - OVERHEAD_ROWS - int(has_xlabel)


def canvas_columns(panel_width: int, y_labels: list[str]) -> int:
    """The data columns left beside the y labels and the two y axes."""
    return panel_width - 2 - max((len(s) for s in y_labels), default=0)


def log_ticks(values: np.ndarray, columns: int, text) -> tuple[list[float], list[str]]:
    """Ticks of a log axis (plotext places them) at the data's own distinct values, labelled by ``text``
    (η/S as everywhere else), left to right, none nearer the previous one than a label's width."""
    distinct = sorted({float(f"{v:.6g}") for v in np.asarray(values, float) if v > 0 and np.isfinite(v)})
    if len(distinct) < 2:
        return distinct, [text(v) for v in distinct]
    span = math.log(distinct[-1] / distinct[0])
    width = max(len(text(v)) for v in distinct) + 2
    ticks: list[float] = []
    for v in distinct:
        if not ticks or (math.log(v) - math.log(ticks[-1])) / span * columns >= width:
            ticks.append(v)
    return ticks, [text(v) for v in ticks]
