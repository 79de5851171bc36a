"""Sweep expansion: one experiment spec → the list of runs it stands for. No TensorFlow.

Axes, crossed in this order: ``grid`` (cartesian), ``zip`` (paired lists), ``ratio`` (η/S values;
the learning rate follows as ratio × batch size, or the batch size as lr / ratio with
``derive: batch_size``) and ``seeds``. Each run gets a readable id such as ``lr0.05-bs128-s0``
and records η, S, β and the noise scales η/S and η/(S(1−β)).

The schema stays in :mod:`tfminima.config`, which imports this module (never the reverse): a
validated spec brings its own class, and raw data comes with the schema's defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from typing import TYPE_CHECKING, Any

from tfminima import limits, paths
from tfminima.dotted import get_dotted, set_dotted

if TYPE_CHECKING:
    from tfminima.config import ExperimentSpec


class SweepError(ValueError):
    """A sweep that cannot be expanded (e.g. a derived batch size that is not an integer)."""


LABEL = "label"  # a sweep axis key that names runs instead of setting a config key

SHORT_NAMES = {
    "optimizer.lr": "lr",
    "optimizer.batch_size": "bs",
    "optimizer.momentum": "m",
    "optimizer.weight_decay": "wd",
    "dataset.label_noise": "noise",
    "dataset.train_size": "n",
    "schedule_conversion": "conversion",
    "seed": "s",
}


@dataclasses.dataclass
class RunPlan:
    """One run of a sweep: its id, its full config data, and what the sweep set in it."""

    run_id: str
    data: dict
    varied: dict[str, Any]
    spec: "ExperimentSpec | None" = None

    @property
    def lr(self) -> float:
        return self.spec.optimizer.lr

    @property
    def batch_size(self) -> int:
        return self.spec.optimizer.batch_size

    @property
    def momentum(self) -> float:
        return self.spec.optimizer.momentum

    @property
    def eta_over_s(self) -> float:
        return self.spec.noise_scale

    @property
    def eta_over_s_momentum(self) -> float:
        return self.spec.noise_scale_momentum

    def hparams(self) -> dict[str, Any]:
        """What identifies the run in TensorBoard's HParams dashboard and in tables."""
        hp = {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "momentum": self.momentum,
            "eta_over_s": self.eta_over_s,
            "eta_over_s_momentum": self.eta_over_s_momentum,
            "seed": self.spec.seed,
        }
        for key, value in self.varied.items():
            name = key.replace(".", "_")
            if isinstance(value, dict):  # a whole section (e.g. a schedule): the label names it
                continue
            if key in SHORT_NAMES or name in hp:
                continue
            hp[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
        return hp


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return "-".join(f"{k}{_fmt(v)}" for k, v in value.items())
    return str(value)


def _round_sig(x: float, digits: int = 12) -> float:
    """Kill float noise from ratio × batch size (5e-4 × 64 → 0.032, not 0.032000000000000001)."""
    return float(f"{x:.{digits}g}")


def _value(run: dict, key: str, defaults: dict) -> Any:
    """A run's value for ``key``, the schema's default where the run's data leaves it out."""
    return get_dotted(run, key, get_dotted(defaults, key))


def run_id_for(data: dict, varied: dict[str, Any], defaults: dict) -> str:
    """A readable id: [label], lr, batch size, then other varied keys, then the seed.

    A sweep axis may carry ``label`` values (not a config key): they name the runs, and keys whose
    values are whole sections (schedules, models) are then left out of the id. ``defaults`` is a
    resolved config standing in for keys ``data`` leaves out (a section that is not a mapping
    counts as missing: each run's validation reports it).
    """
    label = varied.get(LABEL)
    parts = [str(label)] if label is not None else []
    parts += [f"lr{_fmt(_value(data, 'optimizer.lr', defaults))}",
              f"bs{_fmt(_value(data, 'optimizer.batch_size', defaults))}"]
    for key, value in varied.items():
        if key in ("optimizer.lr", "optimizer.batch_size", "seed", "ratio", LABEL):
            continue
        if label is not None and isinstance(value, (dict, list)):
            continue
        short = SHORT_NAMES.get(key, key.split(".")[-1])
        parts.append(f"{short}{_fmt(value)}")
    parts.append(f"s{_fmt(_value(data, 'seed', defaults))}")
    return "-".join(parts).replace("/", "_")


def expand_data(data: dict, *, defaults: dict) -> list[RunPlan]:
    """Expand raw config data (a dict, sweep section included) into run plans (unvalidated).

    ``defaults`` is a resolved config (every key at the schema's default, e.g.
    ``ExperimentSpec.default_data()``): ids and η/S ratios read it where a run leaves a key out.
    """
    sweep = data.get("sweep") or {}
    base = copy.deepcopy(data)
    base.pop("sweep", None)

    axes: list[list[dict[str, Any]]] = []
    grid = sweep.get("grid") or {}
    for key, values in grid.items():
        axes.append([{key: v} for v in _as_list(values, f"sweep.grid.{key}")])
    zipped = sweep.get("zip") or {}
    if zipped:
        lists = {k: _as_list(v, f"sweep.zip.{k}") for k, v in zipped.items()}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) != 1:
            raise SweepError(f"zip lists must have the same length, got {sorted(lengths)}")
        n = lengths.pop()
        axes.append([{k: lists[k][i] for k in lists} for i in range(n)])
    ratios = sweep.get("ratio") or []
    if ratios:
        axes.append([{"ratio": r} for r in _as_list(ratios, "sweep.ratio")])
    seeds = sweep.get("seeds") or []
    if seeds:
        axes.append([{"seed": s} for s in _as_list(seeds, "sweep.seeds")])
    _check_size(axes)
    _check_labels(axes)

    derive = sweep.get("derive", get_dotted(defaults, "sweep.derive"))
    plans: list[RunPlan] = []
    for combo in itertools.product(*axes) if axes else [()]:
        run = copy.deepcopy(base)
        varied: dict[str, Any] = {}
        for assignment in combo:
            for key, value in assignment.items():
                varied[key] = value
                if key not in ("ratio", LABEL):
                    set_dotted(run, key, copy.deepcopy(value))
        if "ratio" in varied:
            _apply_ratio(run, float(varied["ratio"]), derive, defaults)
        plans.append(RunPlan(run_id_for(run, varied, defaults), run, varied))
    _make_ids_unique(plans)
    for plan in plans:
        problem = paths.component_problem(plan.run_id)
        if problem:
            raise SweepError(f"the run id {problem}; name the runs with a shorter `label` axis")
    return plans


def _check_size(axes: list[list]) -> None:
    """Refuse a sweep larger than the runs limit from its axes' lengths, before anything is expanded."""
    count = math.prod(len(axis) for axis in axes)
    try:
        limit = limits.value("runs")
    except limits.LimitError as err:
        raise SweepError(str(err)) from None
    if count > limit:
        sizes = " × ".join(str(len(axis)) for axis in axes)
        raise SweepError(f"the sweep expands to {count} runs ({sizes}), {limits.beyond('runs')}")


def _check_labels(axes: list[list]) -> None:
    """Labels name run folders: each must be one safe path component."""
    for axis in axes:
        for assignment in axis:
            if LABEL in assignment:
                problem = paths.component_problem(str(assignment[LABEL]))
                if problem:
                    raise SweepError(f"the label {problem}")


def _apply_ratio(run: dict, ratio: float, derive: str, defaults: dict) -> None:
    if derive == "lr":
        bs = _number(run, "optimizer.batch_size", defaults, "the learning rate")
        set_dotted(run, "optimizer.lr", _round_sig(ratio * bs))
    elif derive == "batch_size":
        lr = _number(run, "optimizer.lr", defaults, "the batch size")
        bs = lr / ratio
        if abs(bs - round(bs)) > 1e-6 * max(1.0, bs):
            raise SweepError(
                f"batch size lr/ratio = {lr}/{ratio} = {bs:.6g} is not an integer; "
                "pick ratios that divide the learning rate, or derive the learning rate instead"
            )
        set_dotted(run, "optimizer.batch_size", int(round(bs)))
    else:
        raise SweepError(f"derive must be 'lr' or 'batch_size', got {derive!r}")


def _number(run: dict, key: str, defaults: dict, derived: str) -> float:
    value = _value(run, key, defaults)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweepError(f"{key} is {value!r}, not a number: sweep.ratio cannot derive {derived} from it")
    return value


def _as_list(values: Any, where: str) -> list:
    if not isinstance(values, list) or not values:
        raise SweepError(f"{where} must be a non-empty list")
    return values


def _make_ids_unique(plans: list[RunPlan]) -> None:
    counts: dict[str, int] = {}
    for p in plans:
        counts[p.run_id] = counts.get(p.run_id, 0) + 1
    seen: dict[str, int] = {}
    for p in plans:
        if counts[p.run_id] > 1:
            seen[p.run_id] = seen.get(p.run_id, 0) + 1
            p.run_id = f"{p.run_id}-{seen[p.run_id]}"


def expand(spec: "ExperimentSpec") -> list[RunPlan]:
    """Expand a validated spec into validated run plans (each with its own ``spec``).

    Each run is validated by the spec's own class, so this module needs no import of the schema.
    """
    schema = type(spec)
    plans = expand_data(spec.model_dump(mode="json"), defaults=schema.default_data())
    for plan in plans:
        plan.data.pop("sweep", None)
        plan.data.pop("profiles", None)  # a run's config is resolved: no variants left in it
        plan.spec = schema.model_validate(plan.data)
    return plans


def select_shard(plans: list[RunPlan], index: int, count: int) -> list[RunPlan]:
    """Runs of shard ``index`` of ``count`` (0-based): disjoint, deterministic, together all runs."""
    if count < 1 or not 0 <= index < count:
        raise SweepError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
    return plans[index::count]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``i/n``."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise SweepError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise SweepError(f"--shard expects 0 <= i < n, got {text!r}")
    return i, n
