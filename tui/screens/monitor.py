"""Monitor: live curves of the selected runs, each run in its own colour on every panel.

Loss and accuracy (train as a thin line, validation dotted); η, S and η/S per epoch when a
schedule changes them (constant ones are in the run ids), η/S·(1−S/N) beside η/S; λ_max with each
run's edge of stability 2(1+β)/η at its scheduled η (:mod:`tui.edge`), and Tr(H), each when a sharpness
monitor logs it; validation accuracy against memorisation (accuracy on the noisy-label subset)
when a memorisation monitor does. The panels shown share the screen in a grid sized to fit it
(scrolling only when a panel would be too short to read), and every epoch panel the same x range.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui import edge
from tui.colours import hex_colour
from tui.screens.base import AppScreen
from tui.widgets.plots import MetricPlot, Trace

TRAIN, VAL = "braille", "dot"
EDGE = "·"  # a run's edge of stability: a reference line, lighter than its curves
EDGE_LEGEND_SHARE = 1 / 3  # the λ_max panel names its edge lines while that takes at most a third of its rows

# panel id -> (title, [(channel, marker)])
PANELS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "loss": ("loss (train ⠤ val •)", [("train/loss", TRAIN), ("val/loss", VAL)]),
    "accuracy": ("accuracy (train ⠤ val •)", [("train/accuracy", TRAIN), ("val/accuracy", VAL)]),
    "lr": ("learning rate η", [("schedule/lr", TRAIN)]),
    "bs": ("batch size S", [("schedule/batch_size", TRAIN)]),
    "ratio": ("η/S ⠤  η/S·(1−S/N) •", [("schedule/eta_over_s", TRAIN), ("schedule/eta_over_s_finite", VAL)]),
    "lmax": ("λ_max ⠤  edge 2(1+β)/η ·", [("sharpness/lambda_max", TRAIN)]),
    "trace": ("Tr(H)", [("sharpness/trace", TRAIN)]),
}
GROUPS = {"curves": ["loss", "accuracy"], "schedule": ["lr", "bs", "ratio"], "sharpness": ["lmax", "trace"],
          "memorization": ["memo"]}
MAX_AUTO = 10  # with nothing selected, show at most this many live runs
MIN_PANEL_HEIGHT = 8  # a title, the axes, tick labels and four rows of data
PANEL_WIDTH = 40  # columns a panel needs beside another; narrower screens stack the panels
LEGEND_LINES = 3


EPOCH_CHANNELS = {ch for _, channels in PANELS.values() for ch, _ in channels}
SCHEDULE_CHANNELS = [ch for pid in GROUPS["schedule"] for ch, _ in PANELS[pid][1]]


class PanelGrid(VerticalScroll):
    """The panels' grid; arranged again whenever its own size changes (the legend above it takes its
    height only once laid out, so an arrangement made before that would leave the panels a line too tall)."""

    def on_resize(self, event) -> None:
        screen = self.screen
        if isinstance(screen, MonitorScreen):
            screen._arrange()


class MonitorScreen(AppScreen):
    """Panels of curves for the selected runs (or the live ones when none is selected)."""

    TITLE = "Monitor"

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        yield Static("", id="legend")
        with PanelGrid(id="plots"):
            for pid in [pid for panels in GROUPS.values() for pid in panels]:
                if pid == "memo":
                    yield MetricPlot("val accuracy vs memorisation", epochs=False,
                                     xlabel="noisy-subset accuracy", id="plot-memo")
                elif pid == "lmax":  # the edge lines' labels only where they leave the curves in sight
                    yield MetricPlot(PANELS[pid][0], legend_share=EDGE_LEGEND_SHARE, id=f"plot-{pid}")
                else:
                    yield MetricPlot(PANELS[pid][0], id=f"plot-{pid}")
        yield from self.compose_footer()

    def shown_keys(self) -> tuple[list[str], bool]:
        """(runs to draw, whether they were chosen by the user)."""
        app = self.app
        if app.selected:
            return sorted(app.selected), True
        live = [r.key for r in app.rows() if r.state in ("running", "starting")]
        return live[:MAX_AUTO], False

    def refresh_data(self) -> None:
        app = self.app
        keys, chosen = self.shown_keys()
        colours = app.colours.colours(keys)
        store = app.store
        data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        optimizers: dict[str, dict] = {}  # what sets each run's edge of stability
        states = {row.key: row.state for row in app.rows()}  # queued launches have no record yet
        with store.lock:
            for key in keys:
                record = store.records.get(key)
                if record is None:
                    continue
                data[key] = {ch: (s.x.copy(), s.y.copy()) for ch, s in record.series.items()}
                optimizers[key] = record.optimizer
        epochs = [x[-1] for d in data.values() for ch, (x, _) in d.items() if len(x) and ch in EPOCH_CHANNELS]
        x_range = (1.0, float(max(epochs))) if epochs else None  # every epoch panel: one x range
        for pid, (title, channels) in PANELS.items():
            traces = [Trace(f"{key}|{ch}", *data[key][ch], colours[key], marker)
                      for key in keys if key in data for ch, marker in channels if ch in data[key]]
            if pid == "lmax":
                traces += edge_traces(keys, data, optimizers, colours)
            self.query_one(f"#plot-{pid}", MetricPlot).set_traces(traces, x_range=x_range)
        self.query_one("#plot-memo", MetricPlot).set_traces(self._memorization(keys, data, colours))
        has = lambda ch: any(ch in d for d in data.values())
        varies = lambda ch: any(ch in d and len(d[ch][1]) and np.ptp(d[ch][1]) > 0 for d in data.values())
        shown = {"curves": True, "schedule": any(varies(ch) for ch in SCHEDULE_CHANNELS),
                 "memorization": has("memorization/noisy_accuracy")}
        for group, panels in GROUPS.items():
            for pid in panels:  # a sharpness panel when its own value is logged (trace: false logs no Tr(H))
                show = has(PANELS[pid][1][0][0]) if group == "sharpness" else shown[group]
                self.query_one(f"#plot-{pid}").display = show
        self._legend(keys, chosen, colours, states)
        self._arrange()
        self.call_after_refresh(self._arrange)  # again once the legend's new height is laid out

    def on_resize(self, event) -> None:
        super().on_resize(event)
        if self.ready:
            self.call_after_refresh(self.refresh_data)  # the grid and the legend's lines follow the size

    def _arrange(self) -> None:
        """As many columns as the width allows (at most 3), rows sharing the height: every panel on
        one screen unless that would make them shorter than ``MIN_PANEL_HEIGHT``."""
        plots = self.query_one("#plots")
        shown = [p for p in plots.query(MetricPlot) if p.display]
        width = plots.size.width or self.size.width
        columns = max(1, min(3, len(shown), width // PANEL_WIDTH))
        rows = -(-len(shown) // columns) if shown else 1
        height = plots.size.height or max(self.size.height - 3 - LEGEND_LINES, MIN_PANEL_HEIGHT)
        rows_height = str(max(MIN_PANEL_HEIGHT, height // rows))
        if plots.styles.grid_size_columns != columns:
            plots.styles.grid_size_columns = columns
        if [str(r) for r in plots.styles.grid_rows] != [rows_height]:
            plots.styles.grid_rows = rows_height

    @staticmethod
    def _memorization(keys, data, colours) -> list[Trace]:
        """Val accuracy against noisy-subset accuracy, joined on the epoch (one path per run)."""
        traces = []
        for key in keys:
            d = data.get(key, {})
            if "memorization/noisy_accuracy" not in d or "val/accuracy" not in d:
                continue
            (mx, my), (vx, vy) = d["memorization/noisy_accuracy"], d["val/accuracy"]
            _, i, j = np.intersect1d(mx, vx, return_indices=True)
            if len(i):
                traces.append(Trace(f"{key}|memo", my[i], vy[j], colours[key], "dot"))
        return traces

    def _legend(self, keys, chosen, colours, states) -> None:
        app = self.app
        text = Text(f"{app.runs_dir_label}: ")
        if not keys:
            text.append("no run selected and none running: select runs in Runs (2, then space)", style="dim")
        else:
            text.append(f"{len(keys)} run{'s' if len(keys) != 1 else ''}"
                        + ("" if chosen else " running (select in Runs to choose)") + "  ·  x: epochs",
                        style="dim")
        self.set_title(text)
        entries = []
        for key in keys:
            entry = Text("● ", style=hex_colour(colours[key]))
            entry.append(key.rsplit("/", 1)[-1])
            entry.append(f" {states.get(key, '?')}", style="dim")
            entries.append(entry)
        legend = self.query_one("#legend", Static)
        width = legend.size.width or self.size.width - 2  # the content width (padding excluded)
        legend.update(legend_lines(entries, width, LEGEND_LINES))


def edge_traces(keys, data, optimizers, colours) -> list[Trace]:
    """Each run's edge of stability 2(1+β)/η in its colour, dotted (:data:`EDGE`), where it is within
    reach of the panel's λ_max curves (:mod:`tui.edge`), labelled "2(1+β)/η run-id" on its first part
    (the panel shows the labels while they cover at most :data:`EDGE_LEGEND_SHARE` of it)."""
    lam = [data[k]["sharpness/lambda_max"][1] for k in keys if "sharpness/lambda_max" in data.get(k, {})]
    values = np.concatenate(lam) if lam else np.zeros(0)
    values = values[np.isfinite(values)]
    if not len(values):
        return []
    top = float(values.max())
    traces = []
    for key in keys:
        if "sharpness/lambda_max" not in data.get(key, {}):
            continue
        opt = optimizers[key]
        x, y = edge.edge_series(data[key], opt["lr"], opt["momentum"], nesterov=opt["nesterov"], svag=opt["svag"])
        label = f"{edge.edge_label(opt['nesterov'])} {key.rsplit('/', 1)[-1]}"
        for i, (px, py) in enumerate(edge.drawn_parts(x, y, top)):
            traces.append(Trace(f"{key}|edge|{i}", px, py, colours[key], EDGE, label=label if i == 0 else None))
    return traces


def legend_lines(entries: list[Text], width: int, max_lines: int) -> Text:
    """Entries three spaces apart, lines broken only between entries; those that do not fit in
    ``max_lines`` lines are counted at the end ("+12 more")."""
    gap = Text("   ")
    lines: list[list[Text]] = [[]]
    for entry in entries:
        if lines[-1] and _width(lines[-1] + [entry]) > width:
            lines.append([])
        lines[-1].append(entry)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        shown = sum(len(line) for line in lines)
        while True:
            more = Text(f"+{len(entries) - shown} more", style="dim")
            if not lines[-1] or _width(lines[-1] + [more]) <= width:
                break
            lines[-1].pop()
            shown -= 1
        lines[-1].append(more)
    return Text("\n").join(gap.join(line) for line in lines)


def _width(entries: list[Text]) -> int:
    return sum(e.cell_len for e in entries) + 3 * (len(entries) - 1)
