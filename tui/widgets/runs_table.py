"""The table of every run: state, η, S, η/S, epoch progress, the latest accuracies and sharpness.

``λ/edge`` is the monitor's ``stability`` λ_max·η/(2(1+β)): 1 when λ_max sits at the edge of stability
2(1+β)/η, the most a step of size η with momentum β can stay at (Cohen et al. 2021).

Updates touch only the cells that changed, so a table of fifty runs redrawn four times a second
stays cheap; the cursor stays on its run when rows are added.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui import fmt
from tui.colours import STATE_STYLES
from tui.store import RunRow

COLUMNS = [
    ("sel", " "),
    ("run", "run"),
    ("state", "state"),
    ("lr", "η"),
    ("bs", "S"),
    ("ratio", "η/S"),
    ("epoch", "epoch"),
    ("train", "train%"),
    ("val", "val%"),
    ("lmax", "λ_max"),
    ("stab", "λ/edge"),
    ("group", "group"),
]


def cells(row: RunRow, selected: bool, colour: str | None) -> tuple:
    """The displayed cells of one run, in :data:`COLUMNS` order."""
    mark = Text("●", style=colour or "bold") if selected else Text(" ")
    epochs = f"{row.epochs_done}/{row.epochs}" if row.epochs else str(row.epochs_done or "–")
    return (
        mark,
        Text(row.run_id, style=colour or ""),
        Text(row.state, style=STATE_STYLES.get(row.state, "")),
        fmt.num(row.lr),
        fmt.num(row.batch_size),
        fmt.sci(row.eta_over_s),
        epochs,
        fmt.pct(row.train_accuracy),
        fmt.pct(row.val_accuracy),
        fmt.num(row.lambda_max),
        fmt.num(row.stability, 2),
        Text(row.group),  # a folder name, not markup
    )


def _sig(cell) -> object:
    """Rich Text compares equal whatever its style; a colour change must still redraw."""
    return (cell.plain, str(cell.style)) if isinstance(cell, Text) else cell


class RunsTable(DataTable):
    """A DataTable keyed by run key (``group/run_id``)."""

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: dict[str, tuple] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def cursor_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def show_rows(self, rows: list[RunRow], selected: set[str], colours: dict[str, str]) -> None:
        """Bring the table in line with ``rows`` (same order), touching only what changed."""
        order = [r.key for r in rows]
        new = {r.key: cells(r, r.key in selected, colours.get(r.key)) for r in rows}
        if order[: len(self._order)] != self._order:
            cursor = self.cursor_key
            self.clear()
            self._shown, self._order = {}, []
            for key in order:
                self.add_row(*new[key], key=key)
            self._shown, self._order = new, order
            if cursor in order:
                self.move_cursor(row=order.index(cursor), animate=False)
            return
        for key in order[len(self._order):]:
            self.add_row(*new[key], key=key)
        for key in self._order:
            old, cur = self._shown[key], new[key]
            if old is not cur:
                for (col, _), a, b in zip(COLUMNS, old, cur):
                    if _sig(a) != _sig(b):
                        self.update_cell(key, col, b, update_width=True)
        self._shown, self._order = new, order
