"""What the four main screens share: a title bar, a footer, and redraw-on-demand."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static


class AppScreen(Screen):
    """A main screen; :meth:`refresh_data` is called at most a few times a second, when visible."""

    TITLE = ""
    TABS = (("1", "Configure"), ("2", "Runs"), ("3", "Monitor"), ("4", "Compare"))

    def compose_title(self) -> ComposeResult:
        yield Static(self.TITLE, id="title-bar", classes="title-bar")

    def compose_footer(self) -> ComposeResult:
        yield Footer(compact=True)

    def set_title(self, text: Text | str) -> None:
        """The screen tabs (keys 1–4, this one highlighted), then what this screen shows."""
        bar = Text()
        for key, name in self.TABS:
            style = "bold reverse" if name == self.TITLE else "dim"
            bar.append(f" {key} {name} ", style=style)
        bar.append("  ")
        bar.append_text(Text(text) if isinstance(text, str) else text)
        self.query_one("#title-bar", Static).update(bar)

    ready = False  # composed and mounted: refresh_data may query its widgets

    def refresh_data(self) -> None:
        """Redraw from the run store (subclasses)."""

    def on_mount(self) -> None:
        # Textual also calls the subclasses' own on_mount (handlers run along the MRO).
        self.ready = True
        self.refresh_data()

    def on_screen_resume(self) -> None:
        if self.ready:
            self.refresh_data()

    def on_resize(self, event) -> None:
        # Side-by-side panels need room; below 100 columns they stack (see app.tcss).
        self.set_class(event.size.width < 100, "-narrow")
