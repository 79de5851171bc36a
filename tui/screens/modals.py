"""Modal dialogs: an error with its traceback, a run's details, quitting with runs alive, a file path."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option


class ErrorModal(ModalScreen[None]):
    """Something went wrong in a worker; the app stays up and says what (harlequin style)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter", "dismiss", "close")]

    def __init__(self, title: str, message: str, detail: str = ""):
        super().__init__(classes="modal")
        self.title_text, self.message, self.detail = title, message, detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error-dialog"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            yield Static(Text(self.message), classes="dialog-message")
            if self.detail:
                with VerticalScroll(classes="dialog-detail"):
                    yield Static(Text(self.detail))
            yield Button("Close", variant="error", id="close", compact=True)

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss()


class RunDetailModal(ModalScreen[None]):
    """Everything about one run: where it is, its status, its error and traceback, its log tail."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "dismiss", "close")]

    def __init__(self, title: str, sections: list[tuple[str, str]]):
        super().__init__(classes="modal")
        self.title_text, self.sections = title, sections

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog detail-dialog"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            with VerticalScroll(classes="dialog-detail"):
                for heading, body in self.sections:
                    if body:
                        yield Static(Text(heading, style="bold underline"))
                        yield Static(Text(body), classes="detail-body")
            yield Button("Close", id="close", compact=True)

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss()


class QuitModal(ModalScreen[str | None]):
    """Runs are alive: leave them running (the default), cancel them, or stay."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "stay"),
        Binding("l", "dismiss('leave')", "quit, leave runs"),
        Binding("c", "dismiss('cancel')", "quit and cancel runs"),
    ]

    def __init__(self, running: int, queued: int):
        super().__init__(classes="modal")
        self.running, self.queued = running, queued

    def compose(self) -> ComposeResult:
        lines = [f"{self.running} run{'s' if self.running != 1 else ''} still running."]
        if self.queued:
            lines.append(f"{self.queued} queued run{'s' if self.queued != 1 else ''} will not start: recorded "
                         "cancelled, resume with r.")
        lines.append("Running runs go on without the app; restart it to re-attach.")
        with Vertical(classes="dialog quit-dialog"):
            yield Static(Text("Quit tfminima-tui?", style="bold"), classes="dialog-title")
            yield Static("\n".join(lines), classes="dialog-message")
            with Horizontal(classes="dialog-buttons"):
                yield Button("l  Quit, leave runs", variant="primary", id="leave", compact=True)
                yield Button("c  Quit and cancel runs", variant="error", id="cancel", compact=True)
                yield Button("esc  Stay", id="stay", compact=True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)


class PathPrompt(ModalScreen[str | None]):
    """Ask for a YAML path; offers the experiment files found near the working directory."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, title: str, default: str = "", search: list[Path] = ()):
        super().__init__(classes="modal")
        self.title_text, self.default = title, default
        self.files = sorted({p for d in search if d.is_dir() for p in d.glob("*.y*ml")})

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog path-dialog"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            yield Input(value=self.default, placeholder="path/to/experiment.yaml", id="path")
            if self.files:
                yield OptionList(*[Option(str(p), id=str(p)) for p in self.files], id="files")
            yield Static("enter: ok · escape: cancel", classes="dialog-hint")

    @on(Input.Submitted, "#path")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    @on(OptionList.OptionSelected, "#files")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
