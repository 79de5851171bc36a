"""The help screen: every key binding, the command palette, and the TensorBoard command."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Everywhere", [
        ("1 2 3 4", "Configure · Runs · Monitor · Compare"),
        ("? / f1", "this help"),
        ("ctrl+p", "command palette (every action by name)"),
        ("q / ctrl+q", "quit (asks whether to cancel live runs)"),
    ]),
    ("Configure", [
        ("↑ ↓ in the section list", "switch section; tab moves through fields"),
        ("ctrl+o", "open an experiment YAML"),
        ("ctrl+s", "save the config as YAML"),
        ("ctrl+l", "launch every run of the sweep"),
    ]),
    ("Runs", [
        ("space / a", "select the run for Monitor / select all or none"),
        ("enter", "details: status, error, traceback, log tail"),
        ("c", "cancel at the next step (checkpoint kept)"),
        ("r", "resume from the last checkpoint"),
        ("R", "rerun with the same config, in a new folder"),
        ("+ / -", "more / fewer runs at once (the rest queue)"),
        ("m", "monitor the selected runs"),
    ]),
    ("Monitor", [
        ("space (in Runs)", "choose the runs drawn (none chosen: the live ones); each keeps its colour"),
        ("↑ ↓ PgUp PgDn", "scroll to the schedule, sharpness and memorisation panels"),
    ]),
    ("Compare", [
        ("n / p", "next / previous metric"),
        ("x", "export the comparison as CSV"),
    ]),
]


class HelpScreen(ModalScreen[None]):
    """Key bindings per screen."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark,f1", "dismiss", "close")]

    def __init__(self, runs_dir: str):
        super().__init__(classes="modal")
        self.runs_dir = runs_dir

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for heading, keys in KEYS:
            table.add_row(Text(heading, style="bold underline"), "")
            for key, what in keys:
                table.add_row(key, what)
        with Vertical(classes="dialog help-dialog"):
            yield Static(Text("tfminima-tui: η, S and η/S experiments", style="bold"), classes="dialog-title")
            with VerticalScroll(classes="dialog-detail"):
                yield Static(table)
                yield Static(Text.assemble(
                    "\nTensorBoard (scalars and the HParams dashboard of a sweep):\n  ",
                    (f"tensorboard --logdir {self.runs_dir}", "bold green"),
                ))
