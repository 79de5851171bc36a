"""The Configure form: widgets generated from the config schema, validated on every change.

Sections (left) switch the page (right); a page's widgets are built the first time it is shown,
which keeps the screen quick to open. Every :class:`FieldRow` is a label, a control and a line
for the validator's message about its key. Tagged unions (model ``name``, schedule ``kind``) and
monitor switches show only the sub-form that applies. The form posts :class:`ConfigForm.Changed`
with the validated spec (or None) and the problems no field claimed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import (
    ContentSwitcher,
    Input,
    Label,
    OptionList,
    Select,
    Static,
    Switch,
)
from textual.widgets.option_list import Option

from tfminima import config as config_lib
from tui import formspec as fs
from tui.formmodel import FormModel
from tui.formspec import MISSING, FieldDef, Section, UnionDef


def _dom_id(key: str, member: Any = None) -> str:
    base = "f-" + key.replace(".", "-").replace("_", "-")
    return base if member is None else f"{base}--{str(member).replace('_', '-').replace('.', '-')}"


def _hint(fd: FieldDef) -> str:
    if fd.default is MISSING:
        return "" if fd.optional else "required"
    if fd.default is None:
        return "default"
    if fd.default == "":
        return ""
    return f"default {fs.format_value(fd, fd.default)}"


class FieldRow(Vertical):
    """Label, control, and the validator's message for one config key."""

    def __init__(self, fd: FieldDef, value: Any, problems: list[str], **kwargs):
        super().__init__(classes="field-row", **kwargs)
        self.fd, self._value, self._problems = fd, value, list(problems)
        self.set_class(bool(problems), "-invalid")
        self.set_class(fd.union is not None, "-sub")  # a union member's or a monitor's option

    def compose(self) -> ComposeResult:
        fd, value = self.fd, self._value
        shown = fd.default if value is MISSING else value
        with Horizontal(classes="field-line"):
            yield Label(fd.label, classes="field-label")
            if fd.kind == "select":
                yield Select([(str(o), o) for o in fd.options], allow_blank=True, compact=True,
                             value=shown if shown in fd.options else Select.NULL, classes="control")
            elif fd.kind == "switch":
                yield Switch(value=shown if isinstance(shown, bool) else False, classes="control")
            else:
                yield Input(fs.format_value(fd, value), placeholder=_hint(fd), compact=True, classes="control")
        error = Static(self._message_text(), classes="field-error")
        error.display = bool(self._problems)
        yield error

    def _message_text(self) -> str:
        return "\n".join(f"✗ {m}" for m in self._problems)

    @property
    def control(self) -> Widget:
        return self.query_one(".control")

    def read(self) -> Any:
        c = self.control
        if isinstance(c, Select):
            return MISSING if c.value is Select.NULL else c.value
        if isinstance(c, Switch):
            return c.value
        return fs.parse_text(self.fd, c.value)

    def show(self, value: Any) -> None:
        """Put a config value into the control (the default when absent)."""
        if not self.query(".control"):  # not composed yet: compose will use the value
            self._value = value
            return
        fd, c = self.fd, self.control
        shown = fd.default if value is MISSING else value
        if isinstance(c, Select):
            target = shown if shown in fd.options else Select.NULL
            if c.value != target:
                c.value = target
        elif isinstance(c, Switch):
            target = shown if isinstance(shown, bool) else False
            if c.value != target:
                c.value = target
        elif fs.parse_text(fd, c.value) != value:
            c.value = fs.format_value(fd, value)

    def set_problems(self, messages: list[str]) -> None:
        if messages == self._problems:
            return  # restyling rows is the expensive part of a keystroke
        self._problems = list(messages)
        self.set_class(bool(messages), "-invalid")
        for error in self.query(".field-error").results(Static):  # none yet if not composed
            error.update(self._message_text())
            error.display = bool(messages)


class Page(VerticalScroll, can_focus=False):
    """A section's page: tab goes straight from the section list into its fields."""


class ConfigForm(Widget):
    """Sections of field rows over a :class:`FormModel`; ``extras`` add widgets to a section."""

    class Changed(Message):
        """The config changed: the spec if valid, and problems not shown at a field."""

        def __init__(self, spec: config_lib.ExperimentSpec | None, problems: list, general: list):
            super().__init__()
            self.spec, self.problems, self.general = spec, problems, general

    class FocusedField(Message):
        """A field got focus (the screen shows its description)."""

        def __init__(self, fd: FieldDef):
            super().__init__()
            self.fd = fd

    def __init__(self, model: FormModel | None = None,
                 extras: dict[str, Callable[[], list[Widget]]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model = model or FormModel()
        self.sections: list[Section] = fs.sections()
        self.fields = fs.all_fields(self.sections)
        self.extras = extras or {}
        self.rows: dict[tuple[str, Any], FieldRow] = {}
        self.unions: dict[str, UnionDef] = {}  # tag key (model.name) -> union
        self.union_by_key: dict[str, UnionDef] = {}  # union key (model) -> union
        for sec in self.sections:
            for item in sec.items:
                if isinstance(item, UnionDef):
                    self.unions[item.tag_field.key] = item
                    self.union_by_key[item.key] = item
        self.built: set[str] = set()
        self.built_members: set[tuple[str, Any]] = set()
        self.spec: config_lib.ExperimentSpec | None = None
        self.problems: list = []
        self.by_key: dict[str, list[str]] = {}

    def compose(self) -> ComposeResult:
        yield OptionList(*[Option(s.title, id=s.id) for s in self.sections], id="sections")
        with ContentSwitcher(initial=f"sec-{self.sections[0].id}", id="pages"):
            for sec in self.sections:
                with Page(id=f"sec-{sec.id}", classes="page"):
                    yield Static(sec.title, classes="page-title")

    def on_mount(self) -> None:
        sections = self.query_one("#sections", OptionList)
        sections.highlighted = 0
        sections.focus()  # ↑/↓ switch pages at once; tab goes into the fields
        self.validate()
        self.build(self.sections[0].id)

    # building pages ------------------------------------------------------------------------
    def build(self, section_id: str) -> None:
        """Mount a page's widgets the first time it is shown (with current values and problems)."""
        if section_id in self.built:
            return
        self.built.add(section_id)
        section = next(s for s in self.sections if s.id == section_id)
        widgets: list[Widget] = []
        for item in section.items:
            if isinstance(item, UnionDef):
                widgets.append(self._row(item.tag_field, None))
                active = self.model.tag(item)
                for member, fields in item.members.items():
                    # only the chosen member's rows are built now; the others when chosen
                    rows = [self._row(fd, member) for fd in fields] if member == active else []
                    if member == active:
                        self.built_members.add((item.key, member))
                    box = Vertical(*rows, classes="member", id=_dom_id(item.key, member))
                    box.display = member == active
                    widgets.append(box)
            elif isinstance(item, FieldDef):
                row = self._row(item, item.member)
                row.display = self.is_active(item)
                widgets.append(row)
        factory = self.extras.get(section_id)
        widgets += factory() if factory else []
        mounted = self.query_one(f"#sec-{section_id}").mount_all(widgets)

        async def announce() -> None:
            await mounted
            self.post_message(self.Changed(self.spec, self.problems, self._general()))

        self.call_later(announce)

    def _row(self, fd: FieldDef, member: Any) -> FieldRow:
        value = self.model.tag(self.unions[fd.key]) if fd.key in self.unions else self.model.get(fd.key)
        row = FieldRow(fd, value, self.by_key.get(fd.key, []) if self.is_active(fd) else [],
                       id=_dom_id(fd.key, member))
        self.rows[(fd.key, member)] = row
        return row

    # model <-> widgets -------------------------------------------------------------------
    def _ensure_member(self, union: UnionDef, member: Any) -> bool:
        """Build a union member's rows on its page (if that page is built); True if it built now."""
        if (union.key, member) in self.built_members or member not in union.members:
            return False
        boxes = self.query(f"#{_dom_id(union.key, member)}")
        if not boxes:
            return False
        self.built_members.add((union.key, member))
        boxes.first().mount_all([self._row(fd, member) for fd in union.members[member]])
        return True

    def load(self, model: FormModel) -> None:
        """Show another config (a loaded file) in every built control, then validate it."""
        self.model = model
        for union in self.unions.values():
            self._ensure_member(union, self.model.tag(union))
        for row in list(self.rows.values()):
            fd = row.fd
            row.show(self.model.tag(self.unions[fd.key]) if fd.key in self.unions else self.model.get(fd.key))
        self._refresh_visibility()
        self.validate()

    def is_active(self, fd: FieldDef) -> bool:
        if fd.union is None:
            return True
        if fd.union.startswith("monitors."):
            return self.model.get(fd.union) is True
        return self.model.tag(self.union_by_key[fd.union]) == fd.member

    def _refresh_visibility(self) -> None:
        for union in self.unions.values():
            active = self.model.tag(union)
            for member in union.members:
                for box in self.query(f"#{_dom_id(union.key, member)}"):
                    box.display = member == active
        for row in self.rows.values():
            if row.fd.union and row.fd.union.startswith("monitors."):
                row.display = self.is_active(row.fd)

    def active_keys(self) -> set[str]:
        return {fd.key for fd in self.fields if self.is_active(fd)}

    def active_rows(self) -> dict[str, FieldRow]:
        return {key: row for (key, member), row in self.rows.items() if self.is_active(row.fd)}

    def _general(self) -> list:
        return self.model.route(self.problems, self.active_keys())[1]

    def validate(self) -> None:
        self.spec, self.problems = self.model.validate()
        self.by_key, general = self.model.route(self.problems, self.active_keys())
        active = self.active_rows()
        for row in self.rows.values():
            row.set_problems(self.by_key.get(row.fd.key, []) if active.get(row.fd.key) is row else [])
        self.post_message(self.Changed(self.spec, self.problems, general))

    # events --------------------------------------------------------------------------------
    @staticmethod
    def _row_of(widget: Widget | None) -> FieldRow | None:
        while widget is not None and not isinstance(widget, FieldRow):
            widget = widget.parent
        return widget

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _control_changed(self, event: Message) -> None:
        row = self._row_of(event.control)
        if row is None:
            return
        event.stop()
        if not self.is_active(row.fd):
            return
        fd, value = row.fd, row.read()
        if fd.key in self.unions:
            union = self.unions[fd.key]
            if value is MISSING or not self.model.set_tag(union, value):
                return
            if not self._ensure_member(union, value):
                for member_fd in union.members[value]:
                    self.rows[(member_fd.key, value)].show(self.model.get(member_fd.key))
            self._refresh_visibility()
        elif not self.model.update(fd, value):
            return
        elif fd.key.startswith("monitors.") and fd.key.count(".") == 1:
            for (key, _), other in self.rows.items():
                if other.fd.union == fd.key:
                    other.show(self.model.get(key))
            self._refresh_visibility()
        self.validate()

    @on(OptionList.OptionHighlighted, "#sections")
    def _section_chosen(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        section_id = event.option.id
        self.query_one("#pages", ContentSwitcher).current = f"sec-{section_id}"
        # Build once the user settles: running down the list does not build every page.
        self.set_timer(0.15, lambda: self._build_if_current(section_id))

    def _build_if_current(self, section_id: str) -> None:
        if self.query_one("#pages", ContentSwitcher).current == f"sec-{section_id}":
            self.build(section_id)

    def show_section(self, section_id: str) -> None:
        ids = [s.id for s in self.sections]
        self.build(section_id)
        self.query_one("#sections", OptionList).highlighted = ids.index(section_id)
        self.query_one("#pages", ContentSwitcher).current = f"sec-{section_id}"

    def on_descendant_focus(self, event) -> None:
        row = self._row_of(event.widget)
        if row is not None:
            self.post_message(self.FocusedField(row.fd))

    def row(self, key: str) -> FieldRow:
        """The visible row for a config key (tests and the screen use it)."""
        return self.active_rows()[key]
