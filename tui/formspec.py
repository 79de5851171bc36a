"""The Configure form, described from the config schema, and the data it edits. No Textual.

:func:`sections` walks ``ExperimentSpec.model_fields`` (and nested models, tagged unions and
``MONITOR_SPECS``) into field descriptions: Literal → select, bool → switch, int / float / str →
input, lists and mappings → input in YAML flow syntax. :class:`FormModel` holds the raw config
dict the user is editing (only the keys they set, like a YAML file), routes each form key to its
place in that dict, validates with ``config.validate_data`` and sends every ``Problem`` to the
form field its dotted key names.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tfminima import config as config_lib


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
        elif name == "monitors":
            out.append(Section("monitors", "Monitors", monitor_fields()))
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


def monitor_fields() -> list:
    items: list = []
    for name, model in config_lib.MONITOR_SPECS.items():
        items.append(FieldDef(f"monitors.{name}", name, "switch", (), False,
                              description=(model.__doc__ or "").strip().splitlines()[0]))
        items += [dataclasses.replace(f, union=f"monitors.{name}", member="on")
                  for f in model_fields(model, f"monitors.{name}")]
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
    except yaml.YAMLError:
        return text  # the validator says what is wrong with it
    return _numbers(value)


# --------------------------------------------------------------------------- the edited data


class FormModel:
    """The raw config dict being edited, addressed by form keys."""

    def __init__(self, data: dict | None = None):
        self.data: dict = copy.deepcopy(data or {})
        self._stash: dict[tuple[str, Any], dict] = {}
        self._monitor_options: dict[str, dict] = {}

    @classmethod
    def from_text(cls, text: str, file: str = "<config>") -> "FormModel":
        data, _ = config_lib.read_yaml(text, file)
        return cls(data)

    # addressing ----------------------------------------------------------------------
    def get(self, key: str) -> Any:
        if key.startswith("monitors."):
            return self._get_monitor(key)
        if key.startswith("sweep."):
            return self._get_sweep(key)
        return config_lib.get_dotted(self.data, key, MISSING)

    def set(self, key: str, value: Any) -> bool:
        """Set (or with MISSING remove) a value; False when nothing changed."""
        if self.get(key) == value:
            return False
        if key.startswith("monitors."):
            self._set_monitor(key, value)
        elif key.startswith("sweep."):
            self._set_sweep(key, value)
        elif value is MISSING:
            _delete_dotted(self.data, key)
        else:
            config_lib.set_dotted(self.data, key, value)
        return True

    def update(self, fd: FieldDef, value: Any) -> bool:
        """Set from a widget: showing the default of an absent key is not a change."""
        current = self.get(fd.key)
        if value == current:
            return False
        if current is MISSING and fd.kind in ("select", "switch") and value == fd.default:
            return False
        return self.set(fd.key, value)

    def tag(self, union: UnionDef) -> Any:
        section = self.data.get(union.key)
        if isinstance(section, dict) and union.tag in section:
            return section[union.tag]
        return union.default

    def set_tag(self, union: UnionDef, tag: Any) -> bool:
        """Switch a union member; the old member's values are kept to come back to."""
        old = self.tag(union)
        if tag == old:
            return False
        section = self.data.get(union.key)
        if isinstance(section, dict):
            self._stash[(union.key, old)] = dict(section)
        self.data[union.key] = dict(self._stash.get((union.key, tag), {}), **{union.tag: tag})
        return True

    # monitors: a list of one-key mappings -------------------------------------------------
    def _monitor_items(self) -> list:
        items = self.data.get("monitors")
        return items if isinstance(items, list) else []

    def _monitor_index(self, name: str) -> int | None:
        for i, item in enumerate(self._monitor_items()):
            if item == name or (isinstance(item, dict) and name in item):
                return i
        return None

    def _get_monitor(self, key: str) -> Any:
        _, name, *opt = key.split(".", 2)
        i = self._monitor_index(name)
        if not opt:
            return i is not None
        if i is None:
            return self._monitor_options.get(name, {}).get(opt[0], MISSING)
        item = self._monitor_items()[i]
        options = item.get(name) if isinstance(item, dict) else None
        return (options or {}).get(opt[0], MISSING)

    def _set_monitor(self, key: str, value: Any) -> None:
        _, name, *opt = key.split(".", 2)
        i = self._monitor_index(name)
        if not opt:  # enable / disable
            if value is True and i is None:
                self.data.setdefault("monitors", [])
                if not isinstance(self.data["monitors"], list):
                    self.data["monitors"] = []
                self.data["monitors"].append({name: dict(self._monitor_options.pop(name, {}))})
            elif value is not True and i is not None:
                item = self.data["monitors"].pop(i)
                if isinstance(item, dict) and isinstance(item.get(name), dict):
                    self._monitor_options[name] = item[name]
                if not self.data["monitors"]:
                    del self.data["monitors"]
            return
        if i is None:
            options = self._monitor_options.setdefault(name, {})
        else:
            items = self.data["monitors"]
            if not isinstance(items[i], dict) or not isinstance(items[i].get(name), dict):
                items[i] = {name: {}}
            options = items[i][name]
        if value is MISSING:
            options.pop(opt[0], None)
        else:
            options[opt[0]] = value

    # sweep: η and S are grid axes with dotted names -------------------------------------
    def _sweep(self) -> dict:
        sweep = self.data.get("sweep")
        return sweep if isinstance(sweep, dict) else {}

    def _get_sweep(self, key: str) -> Any:
        axis = key.split(".", 1)[1]
        sweep = self._sweep()
        grid = sweep.get("grid") if isinstance(sweep.get("grid"), dict) else {}
        if axis in ("lr", "batch_size"):
            return grid.get(LR_KEY if axis == "lr" else BS_KEY, MISSING)
        if axis == "grid":
            other = {k: v for k, v in grid.items() if k not in (LR_KEY, BS_KEY)}
            return other or MISSING
        return sweep.get(axis, MISSING)

    def _set_sweep(self, key: str, value: Any) -> None:
        axis = key.split(".", 1)[1]
        sweep = self.data.setdefault("sweep", {})
        if not isinstance(sweep, dict):
            sweep = self.data["sweep"] = {}
        if axis in ("lr", "batch_size", "grid"):
            grid = sweep.get("grid") if isinstance(sweep.get("grid"), dict) else {}
            if axis == "grid":
                kept = {k: v for k, v in grid.items() if k in (LR_KEY, BS_KEY)}
                grid = dict(value if isinstance(value, dict) else {}, **kept) if value is not MISSING else kept
                if value is not MISSING and not isinstance(value, dict):
                    grid = {"<invalid>": value, **kept}
            else:
                name = LR_KEY if axis == "lr" else BS_KEY
                grid = dict(grid)
                if value is MISSING:
                    grid.pop(name, None)
                else:
                    grid[name] = value
            if grid:
                sweep["grid"] = grid
            else:
                sweep.pop("grid", None)
        elif value is MISSING:
            sweep.pop(axis, None)
        else:
            sweep[axis] = value
        if not sweep:
            del self.data["sweep"]

    # validation ------------------------------------------------------------------------
    def validate(self) -> tuple[config_lib.ExperimentSpec | None, list[config_lib.Problem]]:
        try:
            return config_lib.validate_data(copy.deepcopy(self.data), file="<form>"), []
        except config_lib.ConfigError as err:
            return None, err.problems

    def route(self, problems: list[config_lib.Problem], keys: set[str]) -> tuple[dict[str, list[str]], list]:
        """Map problems to the form key they are about; the rest are general."""
        by_key: dict[str, list[str]] = {}
        general = []
        for p in problems:
            key = self.form_key(p.key, keys)
            if key is None:
                general.append(p)
            else:
                by_key.setdefault(key, []).append(p.message)
        return by_key, general

    def form_key(self, problem_key: str, keys: set[str]) -> str | None:
        parts = problem_key.split(".") if problem_key else []
        tags = union_tags()
        if len(parts) > 1 and parts[0] in tags and parts[1] in tags[parts[0]]:
            # config names a defaulted tag's member in the key (model.mlp.hidden): drop it
            parts = parts[:1] + parts[2:]
        if parts[:1] == ["monitors"] and len(parts) >= 2 and parts[1].isdigit():
            items = self._monitor_items()
            i = int(parts[1])
            if i < len(items):
                item = items[i]
                name = item if isinstance(item, str) else next(iter(item), None) if isinstance(item, dict) else None
                parts = ["monitors", str(name)] + parts[3:4]
        if parts[:2] == ["sweep", "grid"]:
            rest = ".".join(parts[2:])
            for name, axis in ((LR_KEY, "sweep.lr"), (BS_KEY, "sweep.batch_size")):
                if rest == name or rest.startswith(name + "."):
                    return axis if axis in keys else None
            return "sweep.grid" if "sweep.grid" in keys else None
        while parts:
            candidate = ".".join(parts)
            if candidate in keys:
                return candidate
            parts = parts[:-1]
        return None

    # files -----------------------------------------------------------------------------
    def to_yaml(self) -> str:
        """The resolved spec when valid (explicit and reproducible), else the raw keys."""
        spec, _ = self.validate()
        if spec is not None:
            return config_lib.to_yaml(spec)
        return yaml.safe_dump(self.data, sort_keys=False, default_flow_style=False)


def _delete_dotted(data: dict, key: str) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)
