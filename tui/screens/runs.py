"""Runs: every run under RUNS_DIR (the app's and the CLI's), with cancel, resume and rerun."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from tui import fmt
from tui.colours import STATE_STYLES, hex_colour
from tui.launcher import log_tail
from tui.messages import RunAction, SelectionChanged
from tui.screens.base import AppScreen
from tui.screens.modals import RunDetailModal
from tui.store import RunRow
from tui.widgets.runs_table import RunsTable


class RunsScreen(AppScreen):
    """The runs table and a detail line about the highlighted run."""

    TITLE = "Runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_select", "Select"),
        Binding("a", "select_all", "All/none"),
        Binding("enter", "details", "Details"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "resume", "Resume"),
        Binding("R", "rerun", "Rerun"),
        Binding("m", "monitor", "Monitor"),
        Binding("plus,equals_sign", "parallel(1)", "+jobs", show=False),
        Binding("minus", "parallel(-1)", "-jobs", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: dict[str, RunRow] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        yield RunsTable(id="runs-table")
        yield Static("", id="run-detail")
        yield from self.compose_footer()

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def refresh_data(self) -> None:
        app = self.app
        rows = app.rows()
        self.rows = {r.key: r for r in rows}
        colours = {k: hex_colour(c) for k, c in app.colours.colours(sorted(app.selected)).items()}
        self.table.show_rows(rows, app.selected, colours)
        states: dict[str, int] = {}
        for r in rows:
            states[r.state] = states.get(r.state, 0) + 1
        title = Text(f"{app.runs_dir_label}: {len(rows)} run{'s' if len(rows) != 1 else ''}")
        for state in ("running", "starting", "queued", "completed", "failed", "crashed", "cancelled", "diverged",
                      "corrupt"):
            if states.get(state):
                title.append(f"  {states[state]} {state}", style=STATE_STYLES.get(state, ""))
        title.append(f"  ·  {app.launcher.max_parallel} at once", style="dim")
        self.set_title(title)
        self._show_detail()

    # the highlighted run --------------------------------------------------------------------
    def _cursor_row(self) -> RunRow | None:
        key = self.table.cursor_key
        return self.rows.get(key) if key else None

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        # The table takes enter for itself: it means "details" here.
        event.stop()
        self.action_details()

    def _show_detail(self) -> None:
        row = self._cursor_row()
        detail = self.query_one("#run-detail", Static)
        if row is None:
            detail.update(Text("No runs yet: launch from Configure (1, then ctrl+l), or start one with "
                               "tfminima run EXP.yaml --out " + self.app.runs_dir_label, style="dim"))
            return
        text = Text.assemble((row.key, "bold"), "  ", (row.state, STATE_STYLES.get(row.state, "")))
        if row.seconds is not None:
            text.append(f" in {fmt.duration(row.seconds)}")
        text.append(f"  ·  η/(S(1−β)) {fmt.sci(row.eta_over_s_momentum)}  ·  η/S·(1−S/N) {fmt.sci(row.eta_over_s_finite)}"
                    f"  ·  seed {fmt.num(row.seed)}")
        if row.test_accuracy is not None:
            text.append(f"  ·  test {fmt.pct(row.test_accuracy)}%")
        if row.best_val_accuracy is not None:
            text.append(f"  ·  best val {fmt.pct(row.best_val_accuracy)}%")
        if row.trace is not None:
            text.append(f"  ·  Tr(H) {fmt.num(row.trace)}")
        if row.error:
            text.append("\n✗ " + row.error.splitlines()[0], style="bold red")
            text.append("   (enter: details)", style="dim")
        detail.update(text)

    def _targets(self) -> list[str]:
        """The runs the user selected if the cursor is on one of them, else the run under the cursor (the
        runs a launch selected for the Monitor are not a choice to cancel them all)."""
        key = self.table.cursor_key
        selected = self.app.selected
        if key in selected and self.app.selected_by_user:
            return sorted(k for k in selected if k in self.rows)
        return [key] if key else []

    # actions -----------------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        key = self.table.cursor_key
        if key is None:
            return
        selected = set(self.app.selected)
        selected ^= {key}
        self.post_message(SelectionChanged(sorted(selected)))
        if self.table.cursor_row < self.table.row_count - 1:
            self.table.move_cursor(row=self.table.cursor_row + 1)

    def action_select_all(self) -> None:
        keys = [k for k in self.rows]
        self.post_message(SelectionChanged([] if set(keys) <= self.app.selected else keys))

    def action_details(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        record = self.app.store.get(row.key)
        status = dict(record.status) if record else {}
        log = self.app.runs_dir / row.group / f"{row.run_id}.log"
        sections = [
            ("Where", str(self.app.runs_dir / row.key)),
            ("Status", fmt.status_lines(status, row.state) if status else row.state),
            ("Error", row.error),
            ("Traceback", status.get("traceback") or ""),
            (f"Log tail ({log.name})", log_tail(log, 30)),
            ("Commands", self._commands(row)),
        ]
        self.app.push_screen(RunDetailModal(f"{row.key}: {row.state}", sections))

    def _commands(self, row) -> str:
        """What a user would type next: a finished run is analysed (resuming it changes nothing), any
        other one resumed; its group is reported and viewed in TensorBoard."""
        run, group = self.app.runs_dir / row.key, self.app.runs_dir / row.group
        first = f"tfminima analyze {run}" if row.state == "completed" else f"tfminima run --resume {run}"
        return f"{first}\ntfminima report {group}\ntensorboard --logdir {group}"

    def action_cancel(self) -> None:
        self.post_message(RunAction("cancel", self._targets()))

    def action_resume(self) -> None:
        self.post_message(RunAction("resume", self._targets()))

    def action_rerun(self) -> None:
        self.post_message(RunAction("rerun", self._targets()))

    def action_monitor(self) -> None:
        if not self.app.selected and self.table.cursor_key:
            self.post_message(SelectionChanged([self.table.cursor_key]))
        self.app.switch_mode("monitor")

    def action_parallel(self, delta: int) -> None:
        n = self.app.launcher.set_max_parallel(self.app.launcher.max_parallel + delta)
        self.notify(f"at most {n} run{'s' if n != 1 else ''} at once")
        self.refresh_data()
