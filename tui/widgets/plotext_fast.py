"""Exact numpy versions of plotext's per-point helpers, so a panel of fifty runs builds in time.

plotext builds a figure in pure Python: it maps every point to the canvas (``get_matrix_data``),
draws a line between every pair of neighbours with one call per segment (``get_lines``), groups
the dots into braille cells (``hd_group``) and takes the axis limits from every value
(``get_lim``, ``join``). A Monitor panel of 50 runs × 2 channels hands it 14,000 points (already
downsampled to the panel width); the Monitor's eight panels of 50 runs took 1.4–1.9 s to build on
a loaded 2-core machine, 0.57–0.74 s with these helpers (benchmarks/bench_tui.py, BENCHMARKS.md).

The replacements compute the same lists: the same float operations in the same order (numpy's
float64 arithmetic is Python's), the same truncation and rounding, the same output order and
Python types, so the built figure is identical character for character and colour for colour
(tests/test_tui_plotext_fast.py compares them with the originals). Anything they were not written
for (other types, NaN, short lists) goes to plotext's own helper, and they are installed only on
the plotext version they were checked against.
"""

from __future__ import annotations

import math
from itertools import chain

import numpy as np
import plotext
import plotext._utility as ut

CHECKED_VERSION = "5.3.2"
MIN_POINTS = 16  # shorter lists are cheap enough as they are
ORIGINAL = {name: getattr(ut, name) for name in ("get_matrix_data", "get_lines", "hd_group", "get_lim", "join")}
_E8, _EM8 = 10 ** 8, 10 ** (-8)  # as plotext's own round(x, 8) computes them
_CELL_CODES: dict[int, list[tuple[int, ...]]] = {}


def _only(data, *types) -> bool:
    return type(data) is list and len(data) >= MIN_POINTS and set(map(type, data)) <= set(types)


def get_matrix_data(data, lim, bins):
    """Data to canvas coordinates: ``floor(round(0.5 + (bins - 1) * (v - lo) / (hi - lo), 8))``."""
    if not (_only(data, float) and set(map(type, lim)) <= {float, int} and type(bins) is int):
        return ORIGINAL["get_matrix_data"](data, lim, bins)
    v = np.array(data, dtype=np.float64)
    if np.isnan(v).any():
        return ORIGINAL["get_matrix_data"](data, lim, bins)
    n = (0.5 + (bins - 1) * (v - lim[0]) / (lim[1] - lim[0])) * _E8
    f = np.floor(n)
    rounded = np.floor(np.where(n - f < 0.5, f, np.ceil(n)) * _EM8)  # plotext's round: halves go up
    if np.abs(rounded).max() >= 2.0 ** 62:  # far off the canvas: Python ints, not int64
        return ORIGINAL["get_matrix_data"](data, lim, bins)
    return rounded.astype(np.int64).tolist()


def get_lines(x, y, *other):
    """The dots of the lines between neighbouring points, and each dot's marker, colour and style."""
    n = len(x)
    if not (other and _only(x, int) and _only(y, int) and len(y) == n and all(len(o) == n for o in other)):
        return ORIGINAL["get_lines"](x, y, *other)
    xa, ya = np.array(x, dtype=np.int64), np.array(y, dtype=np.int64)
    dx, dy = np.diff(xa), np.diff(ya)
    length = np.maximum(np.abs(dx), np.abs(dy)) + 1  # get_line's points, both ends included
    kept = length - 1  # every segment drops its end point (the next one's start)
    seg = np.repeat(np.arange(n - 1), kept)
    i = np.arange(len(seg)) - np.repeat(np.cumsum(kept) - kept, kept)
    step = np.maximum(length - 1, 1)
    sx = np.where(length > 1, dx / step, 0.0)  # linspace's slope, int / int as in Python
    sy = np.where(length > 1, dy / step, 0.0)
    xl = (xa[seg] + i * sx[seg]).astype(np.int64).tolist() + [x[-1]]  # lower + i * slope, then int()
    yl = (ya[seg] + i * sy[seg]).astype(np.int64).tolist() + [y[-1]]
    index = seg.tolist() + [n - 1]
    return [xl, yl] + [[o[j] for j in index] for o in other]


def hd_group(x, y, xf, yf):
    """Dots to cells: each cell's position and its on/off dots (rows bottom-up, as plotext orders them)."""
    n = len(x)
    if not (_only(x, int) and _only(y, int) and len(y) == len(xf) == len(yf) == n
            and len(set(xf)) == 1 and len(set(yf)) == 1 and type(xf[0]) is int and type(yf[0]) is int):
        return ORIGINAL["hd_group"](x, y, xf, yf)
    fx, fy = xf[0], yf[0]
    xa, ya = np.array(x, dtype=np.int64), np.array(y, dtype=np.int64)
    cx, cy = xa // fx, ya // fy
    bit = (fy - 1 - ya % fy) * fx + xa % fx
    cy0 = cy - cy.min()
    _, first, cell = np.unique((cx - cx.min()) * (int(cy0.max()) + 1) + cy0, return_index=True, return_inverse=True)
    pattern = np.zeros(len(first), dtype=np.int64)
    np.bitwise_or.at(pattern, cell.ravel(), np.left_shift(1, bit))
    order = np.argsort(first, kind="stable")  # cells in order of first appearance, like plotext's dict
    codes = _CELL_CODES.get(fx * fy)
    if codes is None:
        codes = _CELL_CODES[fx * fy] = [tuple((v >> b) & 1 for b in range(fx * fy)) for v in range(2 ** (fx * fy))]
    first = first[order]
    return cx[first].tolist(), cy[first].tolist(), [codes[v] for v in pattern[order].tolist()]


def get_lim(data):
    """Axis limits from the data: Python's own min and max when nothing needs filtering out."""
    if not _only(data, float, int):
        return ORIGINAL["get_lim"](data)
    if _only(data, float):
        if np.isnan(np.array(data, dtype=np.float64)).any():
            return ORIGINAL["get_lim"](data)
    elif any(math.isnan(v) for v in data if type(v) is float):  # a NaN among ints
        return ORIGINAL["get_lim"](data)
    m, M = min(data), max(data)
    return [m, M] if m != M else [0.5 * m, 1.5 * m] if m != 0 else [-1, 1]


def join(data):
    """Flatten one level; lists inside the rows (which plotext flattens further) go to the original."""
    if type(data) is list and data and set(map(type, data)) == {list}:
        flat = list(chain.from_iterable(data))
        if list not in set(map(type, flat)):
            return flat
    return ORIGINAL["join"](data)


FAST = {"get_matrix_data": get_matrix_data, "get_lines": get_lines, "hd_group": hd_group, "get_lim": get_lim,
        "join": join}


def install(force: bool = False) -> bool:
    """Use the fast helpers (only on the plotext version they were checked against, unless forced)."""
    if plotext.__version__ != CHECKED_VERSION and not force:
        return False
    for name, fn in FAST.items():
        setattr(ut, name, fn)
    return True


def uninstall() -> None:
    """Back to plotext's own helpers (for comparisons)."""
    for name, fn in ORIGINAL.items():
        setattr(ut, name, fn)


def installed() -> bool:
    return all(getattr(ut, name) is fn for name, fn in FAST.items())


_STYLES: dict[tuple, object] = {}  # (foreground, style, background) -> the rich Style its ANSI codes mean


def figure_text(figure):
    """A built plotext figure as a rich ``Text``, without the ANSI round trip.

    ``Text.from_ansi(figure.build())`` renders the figure's matrix to ANSI escape codes character
    by character and parses them back, which was a third of a panel's build. This reads the same
    matrix: each run of equal colours becomes one span whose style is plotext's own ANSI codes for
    those colours, parsed once per colour triple (the same ``Text``, tests/test_tui_plotext_fast.py).
    """
    from rich.text import Text

    figure._set_sizes()
    figure._build_matrix()
    m = figure.monitor.matrix
    text = Text(end="")
    for r, row in enumerate(reversed(m.Rows)):
        markers, fg, st, bg = m.marker[row], m.fullground[row], m.style[row], m.background[row]
        start = 0
        for col in range(1, m.cols + 1):
            if col < m.cols and fg[col] == fg[start] and st[col] == st[start] and bg[col] == bg[start]:
                continue
            text.append("".join(markers[start:col]), _style(fg[start], st[start], bg[start]))
            start = col
        text.append("\n")
    return text


def _style(foreground, style, background):
    key = (_hashable(foreground), _hashable(style), _hashable(background))
    found = _STYLES.get(key)
    if found is None:
        from rich.text import Text

        codes = ut.colors_to_ansi(foreground, style, background)
        spans = Text.from_ansi(codes + "x" + ut.ansi_end).spans if codes else []
        found = _STYLES[key] = spans[0].style if spans else None
    return found


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value
