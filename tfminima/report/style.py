"""One look for every figure: η/S colours on a log scale, line styles for runs sharing an η/S, legends
outside the data.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so the report leaves no global plotting state behind and needs no display. Legends go outside the
axes (a legend inside hides whichever curve happens to run under it); a few η/S values get a
discrete key, many a colour bar.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator, NullLocator

from tfminima.formats import eta_over_s
from tfminima.report import seeds
from tfminima.report.numbers import ratio_key
from tfminima.rundir import atomic_savefig

CMAP = matplotlib.colormaps["viridis"]
SVAG_CMAP = matplotlib.colormaps["plasma"]  # l is not a noise scale: a different map
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
PAIR_COLOURS = ("tab:blue", "tab:red")  # the two runs of a pair share η/S, so η/S cannot tell them apart
DPI = 110
ETA_S_LABEL = "η/S (learning rate / batch size)"
FORMATS = ("png", "pdf", "svg")
DISCRETE_RATIOS = 5  # up to this many η/S values: a discrete key; more: a continuous colour bar
BAND_ALPHA = 0.18


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,pdf"`` → ("png", "pdf"); raises ValueError naming the nearest valid format."""
    items = [t.strip().lower().lstrip(".") for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if not items:
        raise ValueError(f"no figure format given (choose from {', '.join(FORMATS)})")
    for item in items:
        if item not in FORMATS:
            near = difflib.get_close_matches(item, FORMATS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"unknown figure format {item!r} (choose from {', '.join(FORMATS)}){hint}")
    return tuple(dict.fromkeys(items))


def ratio_norm(values: list[float]) -> LogNorm:
    """A log norm over the η/S values present; a single value gets a factor-2 margin each side."""
    finite = [v for v in values if v and v > 0]
    lo, hi = (min(finite), max(finite)) if finite else (1e-3, 1e-3)
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    return LogNorm(vmin=lo, vmax=hi)


@dataclasses.dataclass
class RunStyle:
    colour: tuple
    linestyle: str
    marker: str


def run_styles(conds: list[seeds.Condition], norm: LogNorm) -> dict[str, RunStyle]:
    """By run id: colour from η/S; conditions with the same η/S get different line styles and markers,
    and the seeds of one condition share its style."""
    families: dict[float, list[seeds.Condition]] = {}
    for c in conds:
        if c.eta_over_s is not None:
            families.setdefault(ratio_key(c.eta_over_s), []).append(c)
    styles = {}
    for members in families.values():
        for i, cond in enumerate(members):
            style = RunStyle(CMAP(norm(cond.eta_over_s)), LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)])
            styles.update({r.run_id: style for r in cond.runs})
    return styles


def new_figure(nrows: int, ncols: int, *, width: float = 5.0, height: float = 3.6, **kwargs):
    """A constrained-layout figure and its axes grid (always 2-D)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def colourbar(fig: Figure, axes, norm: LogNorm, label: str = ETA_S_LABEL, location: str = "right") -> None:
    """The η/S colour bar shared by ``axes``, ticks as η/S is written everywhere (3.12e-4)."""
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=CMAP), ax=axes, label=label, shrink=0.9, location=location,
                       aspect=40 if location == "bottom" else 20)
    label_log_ticks(bar.ax.xaxis if location == "bottom" else bar.ax.yaxis, eta_over_s)


def save(fig: Figure, stem: Path, formats: Sequence[str] = ("png",)) -> Path:
    """Write ``stem.<format>`` for every format; returns the first (the one REPORT.md links)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(f".{fmt}") for fmt in formats]
    with warnings.catch_warnings():
        # A run's or group's name may hold a character no font has (a tab, a control character) or be
        # long enough to squeeze the axes: the figure is written all the same, and matplotlib's warnings
        # would print Python warning lines among the report's own messages.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        for path in paths:
            atomic_savefig(fig, path, dpi=DPI)
    return paths[0]


MAX_ENTRIES = 14  # beyond this many runs a legend is unreadable: colour (η/S) has to do


def heading(text: str) -> Line2D:
    """A legend entry with no symbol, drawn bold: the title of the entries below it."""
    return Line2D([], [], linestyle="", marker="", label=text)


def ratio_handles(norm: LogNorm, ratios: Iterable[float]) -> list[Line2D]:
    return [Line2D([], [], color=CMAP(norm(r)), lw=4, label=eta_over_s(r)) for r in distinct(ratios)]


def distinct(values: Iterable[float | None]) -> list[float]:
    return sorted({ratio_key(v) for v in values if v})


def figure_legend(fig: Figure, axes, sections: list[tuple[str | None, list]], *, norm: LogNorm | None = None,
                  ratios: Iterable[float] = (), ratio_label: str = ETA_S_LABEL, where: str = "right") -> None:
    """One legend outside the axes, in titled sections, and the η/S key.

    ``sections`` are (title, handles); a handle's ``get_label()`` is its text. With ``norm``, η/S
    gets a section of its own when there are at most :data:`DISCRETE_RATIOS` values, a colour bar
    otherwise.
    """
    sections = [(t, list(h)) for t, h in sections if h]
    if norm is not None:
        values = distinct(ratios)
        if 0 < len(values) <= DISCRETE_RATIOS:
            sections.append((ratio_label, ratio_handles(norm, values)))
        elif values:
            colourbar(fig, axes, norm, label=ratio_label)
    if not sections:
        return
    handles, titles = [], set()
    for title, items in sections:
        if title and (len(sections) > 1 or where != "right"):
            handles.append(heading(title))
            titles.add(len(handles) - 1)
        handles.extend(items)
    single_title = sections[0][0] if len(sections) == 1 and where == "right" else None
    # "right center", not "upper": an upper legend would run into the figure's title
    loc = "outside right center" if where == "right" else "outside lower center"
    ncol = 1 if where == "right" else min(4, max(1, len(handles) // 3))
    leg = fig.legend(handles, [h.get_label() for h in handles], loc=loc, fontsize=7, ncol=ncol,
                     title=single_title, title_fontsize=8, frameon=False)
    for i, text in enumerate(leg.get_texts()):
        if i in titles:
            text.set_fontweight("bold")


def plain(value: float) -> str:
    """A plain number on a log axis: 0.004, not 4e-03."""
    return f"{value:.3g}"


class TextLogFormatter(LogFormatter):
    """Matplotlib's choice of which log ticks to label, each written by ``text`` (plain numbers, or η/S
    as the tables, legends, CLI and TUI write it: 3.12e-4)."""

    def __init__(self, text: Callable[[float], str] = plain, **kwargs):
        super().__init__(**kwargs)
        self.text = text

    def _num_to_string(self, x, vmin, vmax):
        return self.text(x)

    @staticmethod
    def fix_minus(s):
        return s  # the legends beside the axes write 3.12e-4 with a plain hyphen


def label_log_ticks(axis, text: Callable[[float], str] = plain) -> None:
    """Major and minor ticks of a log ``axis`` (of an Axes or a colour bar) written by ``text``."""
    axis.set_major_formatter(TextLogFormatter(text, labelOnlyBase=False))
    axis.set_minor_formatter(TextLogFormatter(text, labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))


def log_axis(ax, which: str = "y", values: list[float] | None = None, *, ratio: bool = False) -> None:
    """A log axis labelled in plain numbers (``ratio``: η/S, in its one format); with a few known
    ``values`` (η/S of the runs), ticks at them."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    text = eta_over_s if ratio else plain
    distinct = sorted({float(f"{v:.6g}") for v in values or []})
    if 0 < len(distinct) <= 6:
        axis.set_ticks(distinct, [text(v) for v in distinct])
        axis.set_minor_locator(NullLocator())
    else:
        label_log_ticks(axis, text)


def epoch_axis(ax) -> None:
    """Epochs are counts: integer ticks only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def epoch_limits(ax, last: float) -> None:
    """Every epoch axis starts at 0 (the initial weights), so figures side by side share an origin."""
    ax.set_xlim(0, max(float(last), 1.0))


def schedule_xy(series) -> tuple:
    """A per-epoch schedule as a step line: the value logged after epoch k held during (k−1, k].

    Draw with ``where="pre"``; the first value is extended back to epoch 0.
    """
    import numpy as np

    if not len(series):
        return series.epochs, series.values
    return np.concatenate([[series.epochs[0] - 1], series.epochs]), np.concatenate([[series.values[0]], series.values])
