"""The Configure form described from the config schema. No Textual.

:func:`sections` walks ``ExperimentSpec.model_fields`` (and nested models, tagged unions and the
monitor specs of :mod:`tfminima.monitor_specs`) into field descriptions: Literal → select, bool →
switch, int / float / str → input, lists and mappings → input in YAML flow syntax. New schema
fields, sections, monitors and monitor options appear in the form without changes here.
:mod:`tui.formmodel` holds the data those fields edit.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tfminima import config as config_lib
from tfminima.monitor_specs import MONITOR_SPECS, MonitorItem


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # the key is absent: the schema default applies

LR_KEY, BS_KEY = "optimizer.lr", "optimizer.batch_size"


@dataclasses.dataclass
class FieldDef:
    """One input of the form."""

    key: str  # form key: a dotted config key, or monitors.<name>[.<option>], sweep.<axis>
    label: str
    kind: str  # select | switch | text | integer | number | yaml
    options: tuple = ()
    default: Any = MISSING  # MISSING: required, no default
    optional: bool = False  # None is a valid value (an empty input)
    description: str = ""
    union: str | None = None  # the tagged union this field belongs to ...
    member: str | None = None  # ... and the tag under which it is shown


@dataclasses.dataclass
class UnionDef:
    """A tagged union (model by ``name``, schedules by ``kind``): a select that swaps sub-forms."""

    key: str
    tag: str
    options: tuple
    default: str
    members: dict[str, list[FieldDef]]
    label: str
    description: str = ""

    @property
    def tag_field(self) -> FieldDef:
        return FieldDef(f"{self.key}.{self.tag}", f"{self.label}", "select", self.options, self.default,
                        description=self.description)


@dataclasses.dataclass
class Section:
    id: str
    title: str
    items: list  # FieldDef | UnionDef | str (a sub-heading)


# --------------------------------------------------------------------------- schema walk


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return args[0], True
    return tp, False


def _union_members(tp: Any) -> list[type[BaseModel]] | None:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = typing.get_args(tp)
        if members and all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
            return list(members)
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_monitor_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list and typing.get_args(tp)[0] is MonitorItem


def _default(finfo) -> Any:
    if finfo.default is not PydanticUndefined:
        return finfo.default
    if finfo.default_factory is not None:
        return finfo.default_factory()
    return MISSING


def field_def(key: str, name: str, finfo, **extra) -> FieldDef:
    """Describe one scalar / list / mapping field of a pydantic model."""
    tp, optional = _strip_optional(finfo.annotation)
    origin = typing.get_origin(tp)
    if origin is Literal:
        kind, options = "select", typing.get_args(tp)
    elif tp is bool:
        kind, options = "switch", ()
    elif tp is int:
        kind, options = "integer", ()
    elif tp is float:
        kind, options = "number", ()
    elif tp is str:
        kind, options = "text", ()
    else:  # lists, mappings, Any: YAML flow syntax
        kind, options = "yaml", ()
    default = _default(finfo)
    optional = optional or default is None
    return FieldDef(key, name, kind, options, default, optional, finfo.description or "", **extra)


def model_fields(model: type[BaseModel], prefix: str, skip: tuple = (), **extra) -> list[FieldDef]:
    return [field_def(f"{prefix}.{name}" if prefix else name, name, f, **extra)
            for name, f in model.model_fields.items() if name not in skip]


def union_def(key: str, finfo, label: str) -> UnionDef:
    members = _union_members(finfo.annotation)
    tag = next(t for t in ("name", "kind") if all(t in m.model_fields for m in members))
    options, subforms = [], {}
    for m in members:
        value = typing.get_args(m.model_fields[tag].annotation)[0]
        options.append(value)
        subforms[value] = model_fields(m, key, skip=(tag,), union=key, member=value)
    default = getattr(_default(finfo), tag, options[0])
    return UnionDef(key, tag, tuple(options), default, subforms, label, finfo.description or "")


NOISE_FIELDS = ("label_noise", "noise_seed")
SCHEDULE_KEYS = ("lr_schedule", "batch_size_schedule", "schedule_conversion")


def sections() -> list[Section]:
    """Every section of the form, in the order the schema declares its fields."""
    spec_fields = config_lib.ExperimentSpec.model_fields
    experiment = Section("experiment", "Experiment", [])
    out = [experiment]
    schedules = Section("schedules", "Schedules", [])
    for name, finfo in spec_fields.items():
        tp, _ = _strip_optional(finfo.annotation)
        if name == "sweep":
            out.append(Section("sweep", "Sweep", sweep_fields()))
        elif _is_monitor_list(tp):
            out.append(Section(name, name.capitalize(), monitor_fields(name)))
        elif name in SCHEDULE_KEYS:
            if not schedules.items:
                out.append(schedules)
            if _union_members(tp):
                schedules.items.append(union_def(name, finfo, name))
            else:
                schedules.items.append(field_def(name, name, finfo))
        elif _union_members(tp):
            out.append(Section(name, name.capitalize(), [union_def(name, finfo, name)]))
        elif _is_model(tp) and name == "dataset":
            out.append(Section(name, "Dataset", model_fields(tp, name, skip=NOISE_FIELDS)))
            out.append(Section("noise", "Label noise",
                               [f for f in model_fields(tp, name) if f.label in NOISE_FIELDS]))
        elif _is_model(tp):
            out.append(Section(name, name.capitalize(), model_fields(tp, name)))
        else:
            experiment.items.append(field_def(name, name, finfo))
    return out


def monitor_fields(key: str = "monitors") -> list:
    """A switch per monitor (``<key>.<name>``), then its spec's options, shown while it is on."""
    items: list = []
    for name, model in MONITOR_SPECS.items():
        items.append(FieldDef(f"{key}.{name}", name, "switch", (), False,
                              description=(model.__doc__ or "").strip().splitlines()[0]))
        items += [dataclasses.replace(f, union=f"{key}.{name}", member="on")
                  for f in model_fields(model, f"{key}.{name}")]
    return items


def sweep_fields() -> list[FieldDef]:
    sweep = config_lib.SweepSpec.model_fields
    return [
        FieldDef("sweep.lr", "η values", "yaml", (), MISSING, True, "learning rates crossed with the grid, e.g. [0.01, 0.04]"),
        FieldDef("sweep.batch_size", "S values", "yaml", (), MISSING, True, "batch sizes crossed with the grid, e.g. [32, 128]"),
        field_def("sweep.ratio", "η/S ratios", sweep["ratio"]),
        field_def("sweep.derive", "derive", sweep["derive"]),
        field_def("sweep.seeds", "seeds", sweep["seeds"]),
        FieldDef("sweep.grid", "other grid axes", "yaml", (), MISSING, True,
                 "other dotted keys crossed, e.g. {optimizer.momentum: [0.0, 0.9]}"),
        field_def("sweep.zip", "zipped axes", sweep["zip"]),
    ]


@functools.lru_cache(maxsize=1)
def union_tags() -> dict[str, set[str]]:
    """Union key -> its tag values as strings (model -> {mlp, cnn, ...})."""
    return {item.key: {str(o) for o in item.options}
            for sec in sections() for item in sec.items if isinstance(item, UnionDef)}


def all_fields(secs: list[Section]) -> list[FieldDef]:
    out = []
    for sec in secs:
        for item in sec.items:
            if isinstance(item, UnionDef):
                out.append(item.tag_field)
                for fields in item.members.values():
                    out += fields
            elif isinstance(item, FieldDef):
                out.append(item)
    return out


# --------------------------------------------------------------------------- values <-> text


def format_value(fd: FieldDef, value: Any) -> str:
    """The text an input shows for ``value`` (empty for absent / None)."""
    if value is MISSING or value is None:
        return ""
    if fd.kind == "text":
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads '1e-3' as a string; researchers type it as a number."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def parse_text(fd: FieldDef, text: str) -> Any:
    """The config value typed into an input; MISSING when empty (the default applies)."""
    if not text.strip():
        return MISSING
    if fd.kind == "text":
        return text
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):  # not YAML, nested past the stack, unbuildable
        return text  # the validator says what is wrong with it
    return _numbers(value)
