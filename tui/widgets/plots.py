"""Plot panels on textual-plotext: overlaid runs in stable colours, downsampled to the panel width.

A panel rebuilds its plotext figure only when its traces or its size changed (the built text is
cached), and at most once per ``min_interval`` seconds while runs stream in. Builds are costly (a
Monitor panel of 50 runs of 1,000 epochs takes 35–140 ms on a loaded 2-core machine, all eight
0.6–0.9 s; benchmarks/bench_tui.py), so panels that change together do not all build in one
frame: once a frame has spent ``FRAME_BUDGET`` building, the other panels keep showing their
previous picture (or, on a first display or after a resize, their title and "drawing…") and
build in the next frames, and keys are handled in between. A panel with no picture of its size
never builds in the frame that mounts or resizes it: that frame has the layout to do. plotext's per-point helpers run in
numpy (:mod:`tui.widgets.plotext_fast`, identical figures). Limits and ticks come from
:mod:`tui.widgets.axes` (values drawn on the row their label names, whole epochs, one x range for
panels that share it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from tui.series import downsample
from tui.widgets import axes, plotext_fast

plotext_fast.install()

FRAME_BUDGET = 0.05  # seconds of plot building in one frame; further panels build in the next frames
DEFER = 0.01  # a panel over the budget asks to be drawn again this much later


@dataclasses.dataclass
class Trace:
    """One line (or point cloud) of one run."""

    key: str
    x: np.ndarray
    y: np.ndarray
    colour: tuple[int, int, int]
    marker: str = "braille"
    scatter: bool = False
    label: str | None = None

    def signature(self) -> tuple:
        n = len(self.y)
        return (self.key, self.marker, self.colour, self.label, n, float(self.y[-1]) if n else None,
                float(self.x[-1]) if n else None, float(self.x[0]) if n else None)


class MetricPlot(PlotextPlot):
    """A titled panel of traces; ``set_traces`` replaces them and redraws if anything changed."""

    DEFAULT_CSS = """
    MetricPlot { width: 1fr; height: 1fr; min-height: 8; }
    """

    def __init__(self, title: str, *, xlabel: str | None = None, epochs: bool = True, logx: bool = False,
                 logy: bool = False, empty: str = "no data yet", min_interval: float = 1.0,
                 legend_share: float | None = None, x_format=None, **kwargs):
        super().__init__(**kwargs)
        # plotext draws its legend over the top left of the data; with ``legend_share`` it gets rows of its
        # own above the data, and the labels are left out when they would take more than that share of the
        # canvas rows (the title names the lines)
        self.legend_share = legend_share
        self.min_interval = min_interval
        self._last_build = 0.0
        self._build_seconds = 0.0
        self._pending = False
        self.title_text, self.xlabel, self.logx, self.logy, self.empty = title, xlabel, logx, logy, empty
        self.epochs = epochs  # x is the epoch count: whole-number ticks
        self.x_format = x_format  # a log x axis ticked at the data's values, labelled by it (η/S: fmt.sci)
        self.x_range: tuple[float, float] | None = None  # shared with other panels, else the data's
        self.traces: list[Trace] = []
        self._signature: tuple = ()
        self._cache: tuple | None = None
        self._put_off_at: tuple | None = None  # (size, theme) its first build was put off at

    def set_traces(self, traces: list[Trace], title: str | None = None,
                   x_range: tuple[float, float] | None = None) -> bool:
        """Replace the traces (and the x range, if given); returns False (and skips the redraw)
        when nothing changed."""
        if title is not None:
            self.title_text = title
        self.x_range = x_range
        signature = (self.title_text, x_range) + tuple(t.signature() for t in traces)
        if signature == self._signature:
            return False
        self.traces, self._signature = traces, signature
        wait = self._last_build + self.min_interval - time.monotonic()
        if wait <= 0:
            self.refresh()
        elif not self._pending:
            self._pending = True
            self.set_timer(wait, self._deferred_refresh)
        return True

    def _deferred_refresh(self) -> None:
        self._pending = False
        self.refresh()

    # (event loop, seconds built, seconds of builds put off) in the frame being drawn: a frame is
    # drawn in one go, without returning to the event loop, so a callback queued on the loop ends it
    _frame: ClassVar[tuple[object, float, float]] = (None, 0.0, 0.0)

    def render(self) -> RenderResult:
        key = (self._signature, self.size, self.app.theme)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        owner, spent, put_off = MetricPlot._frame
        if owner is not loop or loop is None:
            spent = put_off = 0.0
        same_size = self._cache is not None and self._cache[0][1:] == key[1:]
        first_at_size = not same_size and self._put_off_at != key[1:]
        if first_at_size or (spent and spent + self._build_seconds > FRAME_BUDGET):
            # this frame has built enough (or it is the one that mounted or resized the panel, busy
            # enough with layout): keep the previous picture (same size and theme) or show the title
            # alone for now, and come back after the panels put off before this one (about one
            # frame each)
            self._put_off_at = key[1:]
            if not self._pending and loop is not None:
                self._pending = True
                self.set_timer(DEFER + put_off, self._deferred_refresh)
                if owner is not loop:
                    loop.call_soon(MetricPlot._frame_drawn)
                MetricPlot._frame = (loop, spent, put_off + (self._build_seconds or FRAME_BUDGET))
            if same_size:
                return self._cache[1]
            return Text.assemble((self.title_text, "bold"), "\n", ("drawing…", "dim"))
        start = time.monotonic()
        result = self._build()
        self._cache = (key, result)
        self._last_build = end = time.monotonic()
        self._build_seconds = end - start
        if loop is not None:
            if owner is not loop:
                loop.call_soon(MetricPlot._frame_drawn)
            MetricPlot._frame = (loop, spent + self._build_seconds, put_off)
        return result

    @staticmethod
    def _frame_drawn() -> None:
        MetricPlot._frame = (None, 0.0, 0.0)

    def _build(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        width = max(self.size.width - 10, 10)
        drawn = []
        for t in self.traces:
            mask = np.isfinite(t.x) & np.isfinite(t.y)
            if self.logx:
                mask &= t.x > 0
            if self.logy:
                mask &= t.y > 0
            x, y = downsample(t.x[mask], t.y[mask], 2 * width)
            if len(x):
                drawn.append((t, x, y))
        if not drawn:
            return Text.assemble((self.title_text, "bold"), "\n", (self.empty, "dim"))
        labelled = sum(1 for t, _, _ in drawn if t.label)
        legend = self.legend_share is None or labelled <= self.legend_share * axes.canvas_rows(
            self.size.height, bool(self.xlabel))
        # with ``legend_share`` the legend also gets rows of its own above the data
        xaxis, yaxis = self._axes(drawn, labelled if legend and self.legend_share is not None else 0)
        for t, x, y in drawn:
            if t.marker != "braille":  # a plain marker sits in the cell its value's braille dots use
                x = xaxis.plain(x) if xaxis else x
                y = yaxis.plain(y) if yaxis else y
            kwargs = {"color": t.colour, "marker": t.marker}
            if t.label and legend:
                kwargs["label"] = t.label
            if t.scatter or len(x) == 1:
                plt.scatter(x.tolist(), y.tolist(), **kwargs)
            else:
                plt.plot(x.tolist(), y.tolist(), **kwargs)
        plt.title(self.title_text)
        if self.xlabel:
            plt.xlabel(self.xlabel)
        if self.logx:
            plt.xscale("log")
            if self.x_format is not None:
                columns = axes.canvas_columns(self.size.width, yaxis.labels if yaxis else ["0.000"])
                plt.xticks(*axes.log_ticks(np.concatenate([x for _, x, _ in drawn]), columns, self.x_format))
        if self.logy:
            plt.yscale("log")
        if yaxis:
            plt.ylim(*yaxis.lim)
            plt.yticks(yaxis.ticks, yaxis.labels)
        if xaxis:
            plt.xlim(*xaxis.lim)
            plt.xticks(xaxis.ticks, xaxis.labels)
        # PlotextPlot.render's set-up, then the figure straight to a Text (no ANSI round trip)
        self._plot.plotsize(self.size.width, self.size.height)
        self._plot._set_size(self.size.width, self.size.height)
        self._plot.theme(self._get_plotext_theme_name(self.app.theme))
        return plotext_fast.figure_text(self._plot)

    def _axes(self, drawn, headroom: int = 0) -> tuple[axes.Axis | None, axes.Axis | None]:
        """Our limits and ticks for the linear axes (plotext keeps its own for a log axis); ``headroom``
        rows above the data for the legend."""
        yaxis = xaxis = None
        if not self.logy:
            ys = np.concatenate([y for _, _, y in drawn])
            yaxis = axes.y_axis(float(ys.min()), float(ys.max()), axes.canvas_rows(self.size.height, bool(self.xlabel)),
                                headroom)
        if not self.logx:
            if self.x_range is not None:
                lo, hi = self.x_range
            else:
                xs = np.concatenate([x for _, x, _ in drawn])
                lo, hi = float(xs.min()), float(xs.max())
            columns = axes.canvas_columns(self.size.width, yaxis.labels if yaxis else ["0.000"])
            xaxis = axes.x_axis(lo, hi, columns, integer=self.epochs)
        return xaxis, yaxis
