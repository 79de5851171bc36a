"""The config dict the Configure form edits, addressed by form keys. No Textual.

:class:`FormModel` holds the raw config the user is editing (only the keys they set, like a YAML
file), routes each form key (a dotted config key, ``monitors.<name>[.<option>]`` or
``sweep.<axis>``) to its place in that dict, validates with ``config.validate_data`` and sends
every ``Problem`` to the form field its dotted key names.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tfminima import config as config_lib
from tfminima.monitor_specs import monitor_name
from tui.formspec import BS_KEY, LR_KEY, MISSING, FieldDef, UnionDef, union_tags


class FormModel:
    """The raw config dict being edited, addressed by form keys."""

    def __init__(self, data: dict | None = None):
        self.data: dict = copy.deepcopy(data or {})
        self._stash: dict[tuple[str, Any], dict] = {}
        self._monitor_options: dict[str, dict] = {}
        self.unplaced: dict[str, str] = {}  # form key -> why its value could not go in the dict

    @classmethod
    def from_text(cls, text: str, file: str = "<config>") -> FormModel:
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
        if self.get(key) == value and key not in self.unplaced:
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
        if fd.key in self.unplaced:
            return self.set(fd.key, value)
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
                if value is not MISSING and not isinstance(value, dict):
                    self.unplaced[key] = "must be a mapping of dotted keys to lists, e.g. {optimizer.momentum: [0.0, 0.9]}"
                    return
                self.unplaced.pop(key, None)
                kept = {k: v for k, v in grid.items() if k in (LR_KEY, BS_KEY)}
                grid = dict(value, **kept) if value is not MISSING else kept
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
        unplaced = [config_lib.Problem("<form>", None, k, m) for k, m in self.unplaced.items()]
        try:
            spec = config_lib.validate_data(copy.deepcopy(self.data), file="<form>")
        except config_lib.ConfigError as err:
            return None, unplaced + err.problems
        return (None if unplaced else spec), unplaced

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
                parts = ["monitors", str(monitor_name(items[i]))] + parts[3:4]
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
