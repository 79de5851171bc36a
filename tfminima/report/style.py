"""One look for every figure: η/S colours on a log scale, line styles for runs sharing an η/S.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so the report leaves no global plotting state behind and needs no display.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator, NullLocator

from tfminima.report.loading import Run
from tfminima.report.numbers import iso_ratio_groups

CMAP = matplotlib.colormaps["viridis"]
SVAG_CMAP = matplotlib.colormaps["plasma"]  # l is not a noise scale: a different map
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
PAIR_COLOURS = ("tab:blue", "tab:red")  # the two runs of a pair share η/S, so η/S cannot tell them apart
DPI = 110
ETA_S_LABEL = "η/S (learning rate / batch size)"


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


def run_styles(runs: list[Run], norm: LogNorm) -> dict[str, RunStyle]:
    """Colour from η/S; runs with the same η/S get different line styles and markers."""
    styles = {}
    for members in iso_ratio_groups(runs).values():
        for i, run in enumerate(members):
            styles[run.run_id] = RunStyle(
                CMAP(norm(run.eta_over_s)), LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)]
            )
    return styles


def new_figure(nrows: int, ncols: int, *, width: float = 5.0, height: float = 3.6, **kwargs):
    """A constrained-layout figure and its axes grid (always 2-D)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def colourbar(fig: Figure, axes, norm: LogNorm, label: str = ETA_S_LABEL, location: str = "right") -> None:
    """The η/S colour bar shared by ``axes``, ticks in plain numbers."""
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=CMAP), ax=axes, label=label, shrink=0.9, location=location,
                       aspect=40 if location == "bottom" else 20)
    axis = bar.ax.xaxis if location == "bottom" else bar.ax.yaxis
    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def legend(ax, *, max_entries: int = 14, **kwargs) -> None:
    """A legend when it stays readable; beyond ``max_entries`` the colour bar has to do."""
    handles, labels = ax.get_legend_handles_labels()
    if 0 < len(handles) <= max_entries:
        ax.legend(handles, labels, fontsize=7, **kwargs)


class PlainLogFormatter(LogFormatter):
    """Matplotlib's choice of which log ticks to label, printed as plain numbers (0.004, not 4e-03)."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:.3g}"


def log_axis(ax, which: str = "y", values: list[float] | None = None) -> None:
    """A log axis labelled in plain numbers; with a few known ``values`` (η/S of the runs), ticks at them."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    distinct = sorted({float(f"{v:.6g}") for v in values or []})
    if 0 < len(distinct) <= 6:
        axis.set_ticks(distinct, [f"{v:.3g}" for v in distinct])
        axis.set_minor_locator(NullLocator())
    else:
        axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
        axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))


def epoch_axis(ax) -> None:
    """Epochs are counts: integer ticks only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def schedule_xy(series) -> tuple:
    """A per-epoch schedule as a step line: the value logged after epoch k held during (k−1, k].

    Draw with ``where="pre"``; the first value is extended back to epoch 0.
    """
    import numpy as np

    if not len(series):
        return series.epochs, series.values
    return np.concatenate([[series.epochs[0] - 1], series.epochs]), np.concatenate([[series.values[0]], series.values])
