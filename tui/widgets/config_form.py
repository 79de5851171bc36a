"""The Configure form: widgets generated from the config schema, validated on every change.

Sections (left) switch the page (right). Every :class:`FieldRow` is a label, a control and a
line for the validator's message about its key. Tagged unions (model ``name``, schedule ``kind``)
and monitor switches show only the sub-form that applies. The form posts :class:`ConfigForm.Changed`
with the validated spec (or None) and the problems no field claimed.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, Label, OptionList, Select, Static, Switch
from textual.widgets.option_list import Option

from tfminima import config as config_lib
from tui import formspec as fs
from tui.formspec import MISSING, FieldDef, FormModel, Section, UnionDef


def _dom_id(key: str, member: Any = None) -> str:
    base = "f-" + key.replace(".", "-").replace("_", "-")
    return base if member is None else f"{base}--{str(member).replace('_', '-')}"


class FieldRow(Vertical):
    """Label, control, and the validator's message for one config key."""

    def __init__(self, fd: FieldDef, **kwargs):
        super().__init__(classes="field-row", **kwargs)
        self.fd = fd

    def compose(self) -> ComposeResult:
        fd = self.fd
        with Horizontal(classes="field-line"):
            yield Label(fd.label, classes="field-label")
            if fd.kind == "select":
                yield Select([(str(o), o) for o in fd.options], allow_blank=True, compact=True,
                             value=fd.default if fd.default in fd.options else Select.NULL, classes="control")
            elif fd.kind == "switch":
                yield Switch(value=bool(fd.default) if fd.default is not MISSING else False, classes="control")
            else:
                if fd.default is MISSING:
                    hint = "required" if not fd.optional else ""
                elif fd.default is None or fd.default == "":
                    hint = "default" if fd.default is None else ""
                else:
                    hint = f"default {fs.format_value(fd, fd.default) or repr(fd.default)}"
                yield Input(placeholder=hint, compact=True, classes="control")
        yield Static("", classes="field-error")

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
        fd, c = self.fd, self.control
        if isinstance(c, Select):
            shown = fd.default if value is MISSING else value
            target = shown if shown in fd.options else Select.NULL
            if c.value != target:
                c.value = target
        elif isinstance(c, Switch):
            shown = fd.default if value is MISSING else value
            target = shown if isinstance(shown, bool) else False
            if c.value != target:
                c.value = target
        elif fs.parse_text(fd, c.value) != value:
            c.value = fs.format_value(fd, value)

    def set_problems(self, messages: list[str]) -> None:
        error = self.query_one(".field-error", Static)
        error.update("\n".join(f"✗ {m}" for m in messages))
        error.display = bool(messages)
        self.set_class(bool(messages), "-invalid")


class ConfigForm(Widget):
    """Sections of field rows over a :class:`FormModel`; ``extras`` add widgets to a section."""

    class Changed(Message):
        """The config changed: the spec if valid, and problems not shown at a field."""

        def __init__(self, spec: config_lib.ExperimentSpec | None, problems: list, general: list):
            super().__init__()
            self.spec, self.problems, self.general = spec, problems, general

    class FocusedField(Message):
        def __init__(self, fd: FieldDef):
            super().__init__()
            self.fd = fd

    def __init__(self, model: FormModel | None = None, extras: dict[str, list[Widget]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model = model or FormModel()
        self.sections: list[Section] = fs.sections()
        self.extras = extras or {}
        self.rows: dict[tuple[str, Any], FieldRow] = {}
        self.unions: dict[str, UnionDef] = {}  # tag key (model.name) -> union
        self.union_by_key: dict[str, UnionDef] = {}  # union key (model) -> union
        self.spec: config_lib.ExperimentSpec | None = None
        self.problems: list = []

    def compose(self) -> ComposeResult:
        yield OptionList(*[Option(s.title, id=s.id) for s in self.sections], id="sections")
        with ContentSwitcher(initial=f"sec-{self.sections[0].id}", id="pages"):
            for sec in self.sections:
                with VerticalScroll(id=f"sec-{sec.id}", classes="page"):
                    yield Static(sec.title, classes="page-title")
                    for item in sec.items:
                        yield from self._compose_item(item)
                    yield from self.extras.get(sec.id, [])

    def _compose_item(self, item) -> ComposeResult:
        if isinstance(item, UnionDef):
            tag = item.tag_field
            self.unions[tag.key] = item
            self.union_by_key[item.key] = item
            yield self._row(tag, None)
            for member, fields in item.members.items():
                with Vertical(classes="member", id=_dom_id(item.key, member)):
                    for fd in fields:
                        yield self._row(fd, member)
        elif isinstance(item, FieldDef):
            yield self._row(item, item.member)

    def _row(self, fd: FieldDef, member: Any) -> FieldRow:
        row = FieldRow(fd, id=_dom_id(fd.key, member))
        self.rows[(fd.key, member)] = row
        return row

    def on_mount(self) -> None:
        self.query_one("#sections", OptionList).highlighted = 0
        self.load(self.model)

    # model <-> widgets -------------------------------------------------------------------
    def load(self, model: FormModel) -> None:
        """Show another config (a loaded file) in every control, then validate it."""
        self.model = model
        for row in self.rows.values():
            row.show(self.model.get(row.fd.key) if row.fd.key not in self.unions else
                     self.model.tag(self.unions[row.fd.key]))
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
                self.query_one(f"#{_dom_id(union.key, member)}").display = member == active
        for (key, member), row in self.rows.items():
            if row.fd.union and row.fd.union.startswith("monitors."):
                row.display = self.is_active(row.fd)

    def active_rows(self) -> dict[str, FieldRow]:
        return {key: row for (key, member), row in self.rows.items() if self.is_active(row.fd)}

    def validate(self) -> None:
        self.spec, self.problems = self.model.validate()
        active = self.active_rows()
        by_key, general = self.model.route(self.problems, set(active))
        for key, row in active.items():
            row.set_problems(by_key.get(key, []))
        for row in self.rows.values():
            if row.fd.key not in active or active[row.fd.key] is not row:
                row.set_problems([])
        self.post_message(self.Changed(self.spec, self.problems, general))

    # events --------------------------------------------------------------------------------
    def _row_of(self, widget: Widget) -> FieldRow | None:
        node = widget
        while node is not None and not isinstance(node, FieldRow):
            node = node.parent
        return node

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
            for member_fd in union.members[value]:
                self.rows[(member_fd.key, value)].show(self.model.get(member_fd.key))
            self._refresh_visibility()
        elif not self.model.update(fd, value):
            return
        elif fd.key.startswith("monitors.") and fd.key.count(".") == 1:
            for (key, member), other in self.rows.items():
                if other.fd.union == fd.key:
                    other.show(self.model.get(key))
            self._refresh_visibility()
        self.validate()

    @on(OptionList.OptionHighlighted, "#sections")
    def _section_chosen(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self.query_one("#pages", ContentSwitcher).current = f"sec-{event.option.id}"

    def show_section(self, section_id: str) -> None:
        ids = [s.id for s in self.sections]
        self.query_one("#sections", OptionList).highlighted = ids.index(section_id)
        self.query_one("#pages", ContentSwitcher).current = f"sec-{section_id}"

    def on_descendant_focus(self, event) -> None:
        row = self._row_of(event.widget)
        if row is not None:
            self.post_message(self.FocusedField(row.fd))

    def row(self, key: str) -> FieldRow:
        """The visible row for a config key (tests and the screen use it)."""
        return self.active_rows()[key]
