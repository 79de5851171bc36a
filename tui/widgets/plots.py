"""Plot panels on textual-plotext: overlaid runs in stable colours, downsampled to the panel width.

A panel rebuilds its plotext figure only when its traces or its size changed (the built text is
cached), and at most once per ``min_interval`` seconds while runs stream in. Builds are costly (a
Monitor panel of 50 runs of 1,000 epochs takes 35–140 ms on a loaded 2-core machine, all eight
0.6–0.9 s; benchmarks/bench_tui.py), so panels that change together do not all build in one
frame: once a frame has spent ``FRAME_BUDGET`` building, the other panels keep showing their
previous picture and build in the next frames, and keys are handled in between. A panel with no
previous picture of its size (first display, resize) builds at once. plotext's per-point helpers
run in numpy (:mod:`tui.widgets.plotext_fast`, identical figures).
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
from tui.widgets import plotext_fast

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
        return (self.key, self.marker, self.colour, n, float(self.y[-1]) if n else None,
                float(self.x[-1]) if n else None)


class MetricPlot(PlotextPlot):
    """A titled panel of traces; ``set_traces`` replaces them and redraws if anything changed."""

    DEFAULT_CSS = """
    MetricPlot { width: 1fr; height: 1fr; min-height: 8; }
    """

    def __init__(self, title: str, *, xlabel: str = "epoch", logx: bool = False, logy: bool = False,
                 empty: str = "no data yet", min_interval: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.min_interval = min_interval
        self._last_build = 0.0
        self._build_seconds = 0.0
        self._pending = False
        self.title_text, self.xlabel, self.logx, self.logy, self.empty = title, xlabel, logx, logy, empty
        self.traces: list[Trace] = []
        self._signature: tuple = ()
        self._cache: tuple | None = None

    def set_traces(self, traces: list[Trace], title: str | None = None) -> bool:
        """Replace the traces; returns False (and skips the redraw) when nothing changed."""
        if title is not None:
            self.title_text = title
        signature = (self.title_text,) + tuple(t.signature() for t in traces)
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
        if spent and spent + self._build_seconds > FRAME_BUDGET and self._cache is not None \
                and self._cache[0][1:] == key[1:]:
            # this frame has built enough: keep the previous picture (same size and theme) for now,
            # and come back after the panels put off before this one (about one frame each)
            if not self._pending:
                self._pending = True
                self.set_timer(DEFER + put_off, self._deferred_refresh)
                MetricPlot._frame = (loop, spent, put_off + self._build_seconds)
            return self._cache[1]
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
        drawn = 0
        for t in self.traces:
            mask = np.isfinite(t.x) & np.isfinite(t.y)
            if self.logx:
                mask &= t.x > 0
            if self.logy:
                mask &= t.y > 0
            x, y = downsample(t.x[mask], t.y[mask], 2 * width)
            if not len(x):
                continue
            kwargs = {"color": t.colour, "marker": t.marker}
            if t.label:
                kwargs["label"] = t.label
            if t.scatter or len(x) == 1:
                plt.scatter(x.tolist(), y.tolist(), **kwargs)
            else:
                plt.plot(x.tolist(), y.tolist(), **kwargs)
            drawn += 1
        if not drawn:
            return Text.assemble((self.title_text, "bold"), "\n", (self.empty, "dim"))
        plt.title(self.title_text)
        if self.xlabel:
            plt.xlabel(self.xlabel)
        if self.logx:
            plt.xscale("log")
        if self.logy:
            plt.yscale("log")
        return super().render()
