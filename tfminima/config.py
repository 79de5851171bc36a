"""Experiment configs: load a YAML file (or text, or a dict), validate it, and report every problem.

The public face of three modules: :mod:`tfminima.config_schema` (the typed schema and its
limits), :mod:`tfminima.config_yaml` (bounded reading, YAML with lines, :class:`ConfigError`,
``to_yaml``) and this one, which validates and turns pydantic's errors into
``file:line: dotted.key: what is wrong (did you mean 'x'?)``, collecting every problem, not just
the first. Every run a sweep expands is validated too, after the sweep's size has been checked
against the runs limit from the lengths of its axes (nothing is expanded before that).

No TensorFlow here: the CLI's ``validate`` and the TUI import this module and must stay fast
and light. It imports :mod:`tfminima.sweep`; the sweep expander never imports the schema.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from tfminima import sweep as sweep_lib
from tfminima.config_schema import *  # noqa: F403  (the schema is config's: config.ExperimentSpec, ...)
from tfminima.config_schema import ExperimentSpec
from tfminima.config_yaml import (  # noqa: F401  (re-exported: config.read_yaml, config.to_yaml ...)
    MAX_DEPTH,
    MAX_NODES,
    ConfigError,
    Problem,
    check_document_shape,
    line_for,
    parse_override,
    read_text,
    read_yaml,
    suggest,
    to_yaml,
)
from tfminima.dotted import get_dotted, set_dotted  # noqa: F401  (config.get_dotted: the TUI's form)
from tfminima.monitor_specs import MONITOR_SPECS, MonitorItem

# --------------------------------------------------------------------------- suggestions


def _fields_at(data: Any, path: tuple) -> list[str]:
    """Valid key names of the section at ``path`` (walking the schema alongside the data)."""
    model: Any = ExperimentSpec
    node = data
    for part in path:
        model = _field_type(model, part, node)
        node = node.get(part) if isinstance(node, dict) else None
        if model is None:
            return []
    if model is MonitorItem:  # a monitors entry's only key is the monitor's name
        return list(MONITOR_SPECS)
    model = _resolve_union(model, node)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _resolve_union(tp: Any, node: Any) -> Any:
    """Pick the member of a tagged union the data selects (by its 'name' or 'kind')."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _resolve_union(args[0], node)
    if origin is Union or origin is types.UnionType:  # Union[A, B] or A | B (until: UntilSpec | None)
        members = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        for m in members:
            for tag in ("name", "kind"):
                f = m.model_fields.get(tag)
                if f is not None and isinstance(node, dict) and node.get(tag) in typing.get_args(f.annotation):
                    return m
        return members[0] if members else None
    return tp


def _field_type(model: Any, part: Any, node: Any) -> Any:
    if model is MonitorItem:  # {name: options}: the name selects the spec
        return MONITOR_SPECS.get(part)
    if typing.get_origin(model) is list:  # an entry (monitors.0)
        return typing.get_args(model)[0] if str(part).isdigit() else None
    model = _resolve_union(model, node)
    if isinstance(model, type) and issubclass(model, BaseModel):
        f = model.model_fields.get(part)
        return f.annotation if f is not None else None
    return None


# --------------------------------------------------------------------------- loading


def _problems_from_validation(
    err: ValidationError, data: dict, lines: dict[tuple, int], file: str, prefix: tuple = ()
) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = tuple(prefix) + tuple(e["loc"])
        path = _data_path(loc, data)
        key = ".".join(str(p) for p in path)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = path[:-1]
            msg = "unknown key" + suggest(path[-1], _fields_at(data, parent))
        elif e["type"] == "union_tag_invalid" and path[:1] == ("monitors",):
            got = e.get("ctx", {}).get("tag")  # the entry's key names no monitor
            msg = f"unknown monitor {got!r}" + suggest(got, list(MONITOR_SPECS))
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tag_key = str(ctx.get("discriminator", "")).strip("'")
            got = ctx.get("tag")
            options = [s.strip().strip("'") for s in str(ctx.get("expected_tags", "")).split(",")]
            path = path + (tag_key,)
            key = ".".join(str(p) for p in path)
            msg = f"{got!r} is not one of {', '.join(options)}" + suggest(got, options)
        elif e["type"] in ("literal_error", "enum"):
            expected = e.get("ctx", {}).get("expected")
            got = e.get("input")
            options = [s.strip().strip("'") for s in str(expected).replace(" or ", ",").split(",")]
            msg = f"{got!r} is not one of {expected}" + (suggest(got, options) if isinstance(got, str) else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
            head, sep, rest = msg.partition(": ")
            if sep and not key and re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", head):
                path = tuple(head.split("."))  # a cross-field check names the key it is about
                key, msg = head, rest
        problems.append(Problem(file, line_for(lines, path), key, msg))
    return problems


def _data_path(loc: tuple, data: Any) -> tuple:
    """Drop the union-tag segments pydantic inserts (e.g. model.mlp.hidden -> model.hidden)."""
    path: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and isinstance(part, str):
            tag_match = any(node.get(t) == part for t in ("name", "kind"))
            # ... or the default tag a section without 'name'/'kind' was given (mlp, constant)
            defaulted = ("name" not in node and part == "mlp") or ("kind" not in node and part == "constant")
            if tag_match or defaulted:
                continue
        if part in ("function-after", "function-before", "function-wrap"):
            continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


def validate_data(
    data: Any, *, file: str = "<config>", lines: dict[tuple, int] | None = None
) -> ExperimentSpec:
    """Validate a plain dict into an :class:`ExperimentSpec`, or raise :class:`ConfigError`."""
    lines = lines or {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, line_for(lines, ()), "", "the top level must be a mapping of keys")])
    check_document_shape(data, file)
    problems: list[Problem] = []
    spec = None
    has_sweep = isinstance(data.get("sweep"), dict) and any(data["sweep"].get(k) for k in ("grid", "zip", "ratio", "seeds"))
    try:
        spec = ExperimentSpec.model_validate(data, context={"sweep_base": has_sweep})
    except ValidationError as err:
        problems += _problems_from_validation(err, data, lines, file)
    problems += _check_sweep_keys(data, lines, file)
    if spec is not None and not problems:
        problems += _check_sweep_runs(spec, data, lines, file)
    if problems:
        raise ConfigError(_dedupe_sorted(problems))
    return spec


def _dedupe_sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


def _check_sweep_keys(data: dict, lines, file) -> list[Problem]:
    """Every key a sweep varies must exist in the schema."""
    sweep = data.get("sweep")
    if not isinstance(sweep, dict):
        return []
    problems = []
    for axis in ("grid", "zip"):
        section = sweep.get(axis)
        if not isinstance(section, dict):
            continue
        for key in section:
            parts = tuple(str(key).split("."))
            if not _is_valid_path(data, parts):
                valid = _fields_at(data, parts[:-1]) or list(ExperimentSpec.model_fields)
                problems.append(
                    Problem(file, line_for(lines, ("sweep", axis, key)), f"sweep.{axis}.{key}",
                            f"no such config key '{key}'" + suggest(parts[-1], valid))
                )
    return problems


def _check_sweep_runs(spec: ExperimentSpec, data: dict, lines, file) -> list[Problem]:
    """Every expanded run must itself be a valid experiment; report against the sweep's lines.

    A problem shared by many runs is reported once, with the first few run ids.
    """
    if spec.sweep.is_empty:
        return []
    try:
        runs = sweep_lib.expand_data(data, defaults=ExperimentSpec.default_data())
    except sweep_lib.SweepError as err:
        return [Problem(file, line_for(lines, ("sweep",)), "sweep", str(err))]
    runs_with: dict[Problem, list[str]] = {}
    for run in runs:
        try:
            ExperimentSpec.model_validate(run.data)
        except ValidationError as err:
            for p in _problems_from_validation(err, run.data, {}, file):
                runs_with.setdefault(Problem(file, _sweep_line(lines, p.key), p.key, p.message), []).append(run.run_id)
    problems = []
    for problem, ids in runs_with.items():
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        problems.append(problem._replace(message=f"{problem.message} (in sweep run{'s' if len(ids) > 1 else ''} {shown})"))
    return problems


def _sweep_line(lines: dict[tuple, int], key: str) -> int | None:
    for axis in ("grid", "zip"):
        if ("sweep", axis, key) in lines:
            return lines[("sweep", axis, key)]
    return line_for(lines, ("sweep",))


def _is_valid_path(data: dict, parts: tuple) -> bool:
    if parts == ("label",):  # names runs; sets no key
        return True
    if len(parts) == 1:
        return parts[0] in ExperimentSpec.model_fields and parts[0] != "sweep"
    return parts[-1] in _fields_at(data, parts[:-1])



def load_text(
    text: str, file: str = "<config>", overrides: list[str] | None = None, profile: str | None = None
) -> ExperimentSpec:
    """Parse YAML text, apply a profile and ``key=value`` overrides, validate.

    Raises ConfigError with every problem; a profile's values are reported at the profile's lines.
    """
    data, lines = read_yaml(text, file)
    if profile:
        apply_profile(data, lines, profile, file)
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(data, key, value)
        lines[tuple(key.split("."))] = 0  # 0 = "from --set"
    try:
        return validate_data(data, file=file, lines=lines)
    except ConfigError as err:
        fixed = [
            p._replace(file="--set", line=None) if p.line == 0 else p for p in err.problems
        ]
        raise ConfigError(fixed) from None


def apply_profile(data: dict, lines: dict[tuple, int], name: str, file: str = "<config>") -> None:
    """Apply ``profiles.<name>`` (dotted keys → values) to ``data`` in place; drop ``profiles``."""
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict) or name not in profiles:
        known = sorted(map(str, profiles)) if isinstance(profiles, dict) else []
        raise ConfigError([Problem(file, line_for(lines, ("profiles",)), "profiles",
                                   f"no profile {name!r}; profiles: {', '.join(known) or 'none'}"
                                   + suggest(name, known))])
    overrides = profiles[name] or {}
    if not isinstance(overrides, dict):
        raise ConfigError([Problem(file, line_for(lines, ("profiles", name)), f"profiles.{name}",
                                   "a profile is a mapping of dotted keys to values")])
    for key, value in overrides.items():
        target = tuple(str(key).split("."))
        set_dotted(data, str(key), copy.deepcopy(value))
        source = ("profiles", name, key)
        for path, line in list(lines.items()):
            if path[: len(source)] == source:
                lines[target + path[len(source):]] = line
    data.pop("profiles", None)
    data["profile"] = name


def profile_names(path: str | Path) -> list[str]:
    """The profiles a YAML file defines (for validating each of them)."""
    data, _ = read_yaml(read_text(path), str(path))
    profiles = data.get("profiles")
    return sorted(p for p in profiles if isinstance(p, str)) if isinstance(profiles, dict) else []

def load(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> ExperimentSpec:
    """Load and validate an experiment YAML file (optionally with one of its profiles applied)."""
    path = Path(path)
    return load_text(read_text(path), str(path), overrides, profile)

