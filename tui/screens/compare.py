"""Compare: final metrics against η/S across runs, and the η × S heatmap with iso-ratio marks."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Select, Static

from tfminima import safe_io
from tui import comparison, fmt
from tui.colours import PALETTE
from tui.screens.base import AppScreen
from tui.screens.modals import PathPrompt
from tui.widgets.heatmap import Heatmap
from tui.widgets.plots import MetricPlot, Trace


class CompareScreen(AppScreen):
    """Scatter of a final metric against η/S (log x, one colour per S) and the η × S heatmap."""

    TITLE = "Compare"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "metric(1)", "Next metric"),
        Binding("p", "metric(-1)", "Prev metric"),
        Binding("x", "export", "Export CSV"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metric = "val_accuracy"
        self.metrics: list[str] = []
        self.rows = []

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        with Horizontal(id="compare-bar"):
            yield Static("metric ", classes="bar-label")
            yield Select([(v, k) for k, v in comparison.METRICS.items()], value=self.metric,
                         allow_blank=False, compact=True, id="metric")
        with Horizontal(id="compare-body"):
            yield MetricPlot("", xlabel="η/S (log)", epochs=False, logx=True, x_format=fmt.sci, id="scatter",
                             empty="no finished runs with this metric yet")
            with Vertical(id="heat-box"):
                yield Heatmap(id="heatmap")
        yield from self.compose_footer()

    def refresh_data(self) -> None:
        app = self.app
        self.rows = comparison.comparable([r for r in app.rows() if r.state != "queued"])
        metrics = comparison.available_metrics(self.rows) or ["val_accuracy"]
        if metrics != self.metrics:
            self.metrics = metrics
            select = self.query_one("#metric", Select)
            with self.prevent(Select.Changed):
                select.set_options([(comparison.METRICS[m], m) for m in metrics])
                if self.metric not in metrics:
                    self.metric = metrics[0]
                select.value = self.metric
        label = comparison.METRICS[self.metric]
        plot = self.query_one("#scatter", MetricPlot)
        if self.metric == "steps_to_target":
            self._show_steps_to_target(plot)
        else:
            plot.xlabel, plot.logy, plot.x_format = "η/S (log)", False, fmt.sci
            by_size = comparison.scatter_series(self.rows, self.metric)
            traces = []
            for i, (size, (xs, ys)) in enumerate(by_size.items()):
                traces.append(Trace(f"S{size}", np.asarray(xs), np.asarray(ys), PALETTE[i % len(PALETTE)],
                                    marker="●", scatter=True, label=f"S={size}"))
            plot.set_traces(traces, title=f"{label} against η/S")
        self.query_one(Heatmap).show(comparison.heat_grid(self.rows, self.metric), self.metric)
        n = len(self.rows)
        self.set_title(f"{app.runs_dir_label}: {n} run{'s' if n != 1 else ''} · {label}, final or latest")

    def _show_steps_to_target(self, plot: MetricPlot) -> None:
        """Steps to the target against S (log-log): the best η per S, the other η, perfect scaling, missed S."""
        points = comparison.steps_to_target(self.rows)
        plot.xlabel, plot.logy, plot.x_format = "batch size S (log)", True, None
        best = [p for p in points if p.steps is not None]
        traces = []
        others = [(p.batch_size, v) for p in points for v in p.others]
        if others:
            xs, ys = zip(*others)
            traces.append(Trace("other", np.asarray(xs, float), np.asarray(ys, float), PALETTE[2], marker="·",
                                scatter=True, label="other η"))
        if best:
            xs = np.asarray([p.batch_size for p in best], float)
            traces.append(Trace("perfect", xs, best[0].steps * best[0].batch_size / xs, PALETTE[1],
                                label="perfect scaling (∝ 1/S)"))
            traces.append(Trace("best", xs, np.asarray([p.steps for p in best]), PALETTE[0], marker="●",
                                scatter=True, label="best η (mean over seeds)"))
        missed = [p.batch_size for p in points if p.steps is None]
        title = "steps to target against S" + (f" · never reached at S = {', '.join(map(str, missed))}" if missed else "")
        plot.set_traces(traces, title=title)

    @on(Select.Changed, "#metric")
    def _metric_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and event.value != self.metric:
            self.metric = event.value
            self.refresh_data()

    def action_metric(self, step: int) -> None:
        if self.metrics:
            i = self.metrics.index(self.metric) if self.metric in self.metrics else 0
            self.metric = self.metrics[(i + step) % len(self.metrics)]
            self.query_one("#metric", Select).value = self.metric
            self.refresh_data()

    def action_export(self) -> None:
        default = str(self.app.runs_dir / "compare.csv")
        self.app.push_screen(PathPrompt("Export the comparison as CSV", default), self._export_path)

    def _export_path(self, path: str | None) -> None:
        if path:
            self.export(path)

    def export(self, path: str | Path) -> Path | None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            safe_io.write_text(path, comparison.to_csv(self.rows))
        except OSError as err:
            self.notify(f"{path}: {err.strerror}", title="Cannot export", severity="error")
            return None
        self.notify(f"{len(self.rows)} runs written to {path}")
        return path
