"""Configure: edit an experiment in a form generated from its schema, preview its runs, launch it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from tfminima import config as config_lib
from tfminima import safe_io
from tui import fmt
from tui.formmodel import FormModel
from tui.messages import LaunchRequested
from tui.screens.base import AppScreen
from tui.screens.modals import PathPrompt
from tui.widgets.config_form import ConfigForm
from tui.widgets.plan_preview import PlanPreview, SchedulePreview


def load_model(path: str | Path, overrides: list[str] = (), profile: str | None = None) -> FormModel:
    """A form model from a YAML file, a profile and ``key=value`` overrides, applied like the CLI does.

    Raises ConfigError on unreadable YAML or an unknown profile; other problems show in the form.
    """
    path = Path(path)
    text = config_lib.read_text(path)  # as the CLI reads it: a FIFO, a directory or a huge file is a ConfigError
    data, lines = config_lib.read_yaml(text, str(path))
    if profile:
        config_lib.apply_profile(data, lines, profile, str(path))
    model = FormModel(data)
    for item in overrides:
        key, value = config_lib.parse_override(item)
        config_lib.set_dotted(model.data, key, value)
    return model


class ConfigureScreen(AppScreen):
    """The experiment form, the problems the validator finds, and what the sweep will run."""

    TITLE = "Configure"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "open", "Open"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+l", "launch", "Launch"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.path: Path | None = None
        self.spec: config_lib.ExperimentSpec | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_title()
        app = self.app
        self.path = getattr(app, "config_path", None)
        model = getattr(app, "initial_model", None) or FormModel()
        yield ConfigForm(model, extras={
            "sweep": lambda: [PlanPreview(id="plan-preview")],
            "schedules": lambda: [SchedulePreview("Schedule", id="schedule-preview")],
        }, id="config-form")
        yield Static("", id="field-hint")
        yield Static("", id="problems")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self._update_title()

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    def _update_title(self) -> None:
        where = str(self.path) if self.path else "new experiment"
        self.set_title(where)

    # form events ---------------------------------------------------------------------
    @on(ConfigForm.Changed)
    def _config_changed(self, event: ConfigForm.Changed) -> None:
        self.spec = event.spec
        problems = self.query_one("#problems", Static)
        if event.spec is not None:
            problems.update(Text("✓ valid", style="bold green") + Text(
                f"  ·  η/S = {fmt.sci(event.spec.noise_scale)}  ·  ctrl+l launches", style="green"))
            problems.remove_class("-invalid")
        else:
            n = len(event.problems)
            text = Text(f"✗ {n} problem{'s' if n != 1 else ''}", style="bold red")
            for p in event.general[:2]:
                text.append(f"  ·  {p.key + ': ' if p.key else ''}{p.message}", style="red")
            if not event.general:
                first = event.problems[0]
                text.append(f"  ·  {first.key}: {first.message}", style="red")
            problems.update(text)
            problems.add_class("-invalid")
        for preview in self.query("#plan-preview"):
            preview.show(event.spec)
        for preview in self.query("#schedule-preview"):
            preview.show(event.spec, "the base config")

    @on(ConfigForm.FocusedField)
    def _field_focused(self, event: ConfigForm.FocusedField) -> None:
        fd = event.fd
        self.query_one("#field-hint", Static).update(
            Text.assemble((fd.key, "bold"), f"  {fd.description}" if fd.description else ""))

    # actions -------------------------------------------------------------------------
    def action_open(self) -> None:
        search = [Path.cwd(), Path.cwd() / "experiments"]
        self.app.push_screen(PathPrompt("Open experiment YAML", str(self.path or ""), search), self._open_path)

    def _open_path(self, path: str | None) -> None:
        if path:
            self.open(path)

    def open(self, path: str | Path, overrides: list[str] = ()) -> bool:
        try:
            model = load_model(path, overrides)
        except config_lib.ConfigError as err:
            self.notify(str(err), title="Cannot open", severity="error")
            return False
        self.path = Path(path)
        self.form.load(model)
        self._update_title()
        return True

    def action_save(self) -> None:
        default = str(self.path) if self.path else "experiment.yaml"
        self.app.push_screen(PathPrompt("Save experiment YAML as", default), self._save_path)

    def _save_path(self, path: str | None) -> None:
        if path:
            self.save(path)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = self.form.model.to_yaml()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            safe_io.write_text(path, text)
        except OSError as err:
            self.notify(f"{path}: {err.strerror}", title="Cannot save", severity="error")
            return
        self.path = path
        self._update_title()
        if self.form.spec is None:
            self.notify(f"saved {path} with {len(self.form.problems)} problems left", severity="warning")
        else:
            self.notify(f"saved {path}")

    def action_launch(self) -> None:
        if self.form.spec is None:
            n = len(self.form.problems)
            self.notify(f"fix {n} problem{'s' if n != 1 else ''} first", title="Cannot launch", severity="error")
            return
        self.post_message(LaunchRequested(self.form.spec))
