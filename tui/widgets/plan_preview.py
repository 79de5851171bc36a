"""Previews of what a config will run: every run of its sweep, and each epoch's η, S and η/S.

Both read only ``sweep.expand`` and ``schedules.plan``, the same functions the runner uses, so
the preview cannot disagree with what ``tfminima run`` will do.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tfminima import config as config_lib
from tfminima import schedules
from tfminima import sweep as sweep_lib
from tui.fmt import sci


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


class SchedulePreview(Vertical):
    """Per-epoch learning rate, batch size and η/S of one run."""

    DEFAULT_CSS = """
    SchedulePreview { height: auto; }
    SchedulePreview DataTable { height: auto; max-height: 14; }
    """

    def __init__(self, title: str = "Schedule", **kwargs):
        super().__init__(**kwargs)
        self.title = title

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="preview-title")
        table = DataTable(cursor_type="row", zebra_stripes=True)
        table.add_columns("epoch", "lr η", "batch S", "η/S")
        yield table

    def show(self, spec: config_lib.ExperimentSpec | None, label: str = "") -> None:
        title = self.query_one(".preview-title", Static)
        table = self.query_one(DataTable)
        table.clear()
        if spec is None:
            title.update(f"{self.title}: fix the config to see it")
            return
        rows = schedules.plan(spec, spec.replicas_known() or 1)
        title.update(f"{self.title}{' of ' + label if label else ''}: {len(rows)} epochs")
        for s in rows:
            # 1-based, as everywhere a user sees an epoch: row N is the epoch that ends with N completed
            table.add_row(str(s.epoch + 1), fmt(s.lr), str(s.batch_size), sci(s.eta_over_s))


class PlanPreview(Vertical):
    """Every run a sweep expands to, with its noise scales; the highlighted run's schedule below."""

    DEFAULT_CSS = """
    PlanPreview { height: auto; }
    PlanPreview #plan-runs { height: auto; max-height: 12; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.plans: list[sweep_lib.RunPlan] = []

    def compose(self) -> ComposeResult:
        yield Static("Runs", id="plan-summary", classes="preview-title")
        table = DataTable(id="plan-runs", cursor_type="row", zebra_stripes=True)
        table.add_columns("run id", "η", "S", "β", "η/S", "η/(S(1−β))")
        yield table
        yield SchedulePreview(id="plan-schedule")

    def show(self, spec: config_lib.ExperimentSpec | None) -> None:
        summary = self.query_one("#plan-summary", Static)
        table = self.query_one("#plan-runs", DataTable)
        table.clear()
        self.plans = []
        if spec is None:
            summary.update("Runs: fix the config to see them")
            self.query_one(SchedulePreview).show(None)
            return
        try:
            self.plans = sweep_lib.expand(spec)
        except (sweep_lib.SweepError, ValueError) as err:
            summary.update(f"Runs: {err}")
            self.query_one(SchedulePreview).show(None)
            return
        ratios = sorted({p.eta_over_s for p in self.plans})
        distinct = len({f"{r:.6g}" for r in ratios})
        summary.update(f"Runs: {len(self.plans)} · {distinct} distinct η/S "
                       f"from {sci(ratios[0])} to {sci(ratios[-1])}")
        for p in self.plans:
            table.add_row(p.run_id, fmt(p.lr), str(p.batch_size), fmt(p.momentum, 3),
                          sci(p.eta_over_s), sci(p.eta_over_s_momentum), key=p.run_id)
        self._show_schedule(0)

    def _show_schedule(self, index: int) -> None:
        if 0 <= index < len(self.plans):
            plan = self.plans[index]
            self.query_one(SchedulePreview).show(plan.spec, plan.run_id)

    @on(DataTable.RowHighlighted, "#plan-runs")
    def _run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_schedule(event.cursor_row)
