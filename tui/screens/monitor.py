"""Monitor: live curves of the selected runs, each run in its own colour on every panel.

Loss and accuracy (train as a thin line, validation dotted); η, S and η/S per epoch; λ_max and
Tr(H) when a sharpness monitor logs them; validation accuracy against memorisation (accuracy
on the noisy-label subset) when a memorisation monitor does.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from tui.colours import hex_colour
from tui.screens.base import AppScreen
from tui.widgets.plots import MetricPlot, Trace

TRAIN, VAL = "braille", "dot"

# panel id -> (title, [(channel, marker)])
PANELS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "loss": ("loss (train ⠤ val •)", [("train/loss", TRAIN), ("val/loss", VAL)]),
    "accuracy": ("accuracy (train ⠤ val •)", [("train/accuracy", TRAIN), ("val/accuracy", VAL)]),
    "lr": ("learning rate η", [("schedule/lr", TRAIN)]),
    "bs": ("batch size S", [("schedule/batch_size", TRAIN)]),
    "ratio": ("η/S", [("schedule/eta_over_s", TRAIN)]),
    "lmax": ("λ_max (sharpness)", [("sharpness/lambda_max", TRAIN)]),
    "trace": ("Tr(H)", [("sharpness/trace", TRAIN)]),
}
ROWS = [("curves", ["loss", "accuracy"]), ("schedule", ["lr", "bs", "ratio"]),
        ("sharpness", ["lmax", "trace"]), ("memorization", ["memo"])]
MAX_AUTO = 10  # with nothing selected, show at most this many live runs


class MonitorScreen(AppScreen):
    """Panels of curves for the selected runs (or the live ones when none is selected)."""

    TITLE = "Monitor"

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        yield Static("", id="legend")
        with VerticalScroll(id="plots"):
            for row_id, panels in ROWS:
                with Horizontal(id=f"row-{row_id}", classes="plot-row"):
                    for pid in panels:
                        if pid == "memo":
                            yield MetricPlot("val accuracy vs memorisation (noisy-subset train accuracy)",
                                             xlabel="noisy-subset accuracy", id="plot-memo")
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
        states = {row.key: row.state for row in app.rows()}  # queued launches have no record yet
        with store.lock:
            for key in keys:
                record = store.records.get(key)
                if record is None:
                    continue
                data[key] = {ch: (s.x.copy(), s.y.copy()) for ch, s in record.series.items()}
        for pid, (title, channels) in PANELS.items():
            traces = [Trace(f"{key}|{ch}", *data[key][ch], colours[key], marker)
                      for key in keys if key in data for ch, marker in channels if ch in data[key]]
            self.query_one(f"#plot-{pid}", MetricPlot).set_traces(traces)
        self.query_one("#plot-memo", MetricPlot).set_traces(self._memorization(keys, data, colours))
        has = lambda ch: any(ch in d for d in data.values())
        self.query_one("#row-sharpness").display = has("sharpness/lambda_max") or has("sharpness/trace")
        self.query_one("#row-memorization").display = has("memorization/noisy_accuracy")
        self._legend(keys, chosen, colours, states)

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
                        + ("" if chosen else " running (select in Runs to choose)"), style="dim")
        self.set_title(text)
        legend = Text()
        for key in keys:
            legend.append("● ", style=hex_colour(colours[key]))
            legend.append(key.rsplit("/", 1)[-1])
            legend.append(f" {states.get(key, '?')}   ", style="dim")
        self.query_one("#legend", Static).update(legend)
