"""Plot panels on textual-plotext: overlaid runs in stable colours, downsampled to the panel width.

A panel rebuilds its plotext figure only when its traces or its size changed (the built text is
cached), and at most once per ``min_interval`` seconds while runs stream in (a build of twenty
runs costs ~0.1 s), so a screen full of panels stays responsive.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from tui.series import downsample


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

    def render(self) -> RenderResult:
        key = (self._signature, self.size, self.app.theme)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        result = self._build()
        self._cache = (key, result)
        self._last_build = time.monotonic()
        return result

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
