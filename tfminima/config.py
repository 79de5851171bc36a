"""The experiment spec: a typed schema, YAML loading, and errors a researcher can act on.

No TensorFlow here: the CLI's ``validate`` and the TUI import this module and must stay fast
and light. It imports :mod:`tfminima.sweep` (every run a sweep expands is validated here);
the sweep expander never imports this module.

Every problem in a file is collected (not just the first) and reported as
``file:line: dotted.key: what is wrong (did you mean 'x'?)`` through :class:`ConfigError`.
"""

from __future__ import annotations

import copy
import difflib
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tfminima import sweep as sweep_lib
from tfminima.dotted import get_dotted, set_dotted  # noqa: F401  (config.get_dotted: the TUI's form)
from tfminima.monitor_specs import MONITOR_SPECS, MemorizationMonitorSpec, MonitorItem, MonitorSpec, normalise_items

# --------------------------------------------------------------------------- errors


class Problem(typing.NamedTuple):
    """One thing wrong with a config: where, which key, what, and a suggestion."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found in one config; ``str()`` is ready to print."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------- schema


class Spec(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


DATASET_SIZES: dict[str, tuple[int, int, int]] = {
    # default train / validation / test sizes (validation is carved out of the training set
    # with split_seed; MNIST-1D and digits are generated / split from one pool)
    "mnist1d": (4000, 1000, 1000),
    "digits": (1197, 300, 300),
    "mnist": (55000, 5000, 10000),
    "fashion_mnist": (55000, 5000, 10000),
    "cifar10": (45000, 5000, 10000),
    "cifar100": (45000, 5000, 10000),
}
IMAGE_DATASETS = {"cifar10", "cifar100"}
DatasetName = Literal["mnist1d", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100"]


class DatasetSpec(Spec):
    """Which data, how it is split, normalised, augmented and corrupted."""

    name: DatasetName = "mnist1d"
    train_size: int | None = Field(None, gt=0, description="training examples (default: the dataset's)")
    val_size: int | None = Field(None, ge=0, description="validation examples held out of training")
    test_size: int | None = Field(None, ge=0, description="test examples")
    split_seed: int = Field(777, description="seed of the train/validation split (paper: 777)")
    label_noise: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training labels replaced")
    noise_seed: int = Field(0, description="seed choosing the noisy indices and their random labels")
    normalization: Literal["auto", "per_pixel_mean_global_std", "standardize", "scale", "none"] = Field(
        "auto", description="auto: per-pixel mean / global std for CIFAR, standardize otherwise"
    )
    augmentation: Literal["auto", "shift_flip", "shift", "flip", "none"] = Field(
        "auto", description="auto: 4-pixel shifts + horizontal flips for CIFAR, none otherwise"
    )
    data_dir: str | None = Field(None, description="TFDS data_dir (default: TFDS's own)")
    drop_remainder: bool = Field(False, description="drop the last partial training batch of an epoch")

    @model_validator(mode="after")
    def _fill_defaults(self) -> "DatasetSpec":
        train, val, test = DATASET_SIZES[self.name]
        for field, default in (("train_size", train), ("val_size", val), ("test_size", test)):
            if getattr(self, field) is None:
                object.__setattr__(self, field, default)
        if self.normalization == "auto":
            norm = "per_pixel_mean_global_std" if self.name in IMAGE_DATASETS else "standardize"
            object.__setattr__(self, "normalization", norm)
        if self.augmentation == "auto":
            object.__setattr__(self, "augmentation", "shift_flip" if self.name in IMAGE_DATASETS else "none")
        return self


class MLPSpec(Spec):
    """Fully connected net; covers the paper's 2×256 ReLU MLP and 4-layer batch-norm MLP."""

    name: Literal["mlp"]
    hidden: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [100, 100])
    activation: Literal["relu", "tanh", "elu", "gelu", "sigmoid"] = "relu"
    batch_norm: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class CNNSpec(Spec):
    """A small conv net: conv blocks (conv-relu-maxpool) then a dense layer."""

    name: Literal["cnn"]
    filters: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [32, 64])
    dense: int = Field(128, gt=0)
    batch_norm: bool = False


class ResNetSpec(Spec):
    """CIFAR ResNet of He et al. (2016): depth 6n+2, widths 16/32/64 × width_multiplier."""

    name: Literal["resnet"]
    depth: Literal[8, 14, 20, 32, 44, 56, 110] = 20
    width_multiplier: int = Field(1, gt=0)


class VGGSpec(Spec):
    """VGG-11 with batch norm (64,M,128,M,256,256,M,512,512,M,512,512,M), FC 512-512 with dropout."""

    name: Literal["vgg11"]
    batch_norm: bool = True
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    width_multiplier: float = Field(1.0, gt=0.0)


ModelSpec = Annotated[Union[MLPSpec, CNNSpec, ResNetSpec, VGGSpec], Field(discriminator="name")]


class OptimizerSpec(Spec):
    """SGD: θ ← θ − η (g + wd·θ) with optional (Nesterov) momentum β."""

    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0.0, description="learning rate η")
    batch_size: int = Field(128, gt=0, description="global batch size S (summed over replicas)")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="momentum β")
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0, description="L2 coefficient added to the gradient")
    svag: int = Field(
        1, ge=1,
        description="SVAG l (Li, Malladi, Arora 2021): l× the steps at η/l on two mixed batches; 1 is SGD",
    )


class _ScheduleBase(Spec):
    """Schedules give a multiplier of the base value (optimizer.lr or optimizer.batch_size)."""


class ConstantSchedule(_ScheduleBase):
    kind: Literal["constant"]


class StepSchedule(_ScheduleBase):
    kind: Literal["step"]
    milestones: list[Annotated[int, Field(ge=0)]]
    factor: float = Field(0.1, gt=0.0, description="multiplier applied at every milestone epoch")


class LinearSchedule(_ScheduleBase):
    kind: Literal["linear"]
    end_factor: float = Field(..., gt=0.0)
    start_epoch: int = Field(0, ge=0)
    end_epoch: int | None = Field(None, gt=0, description="default: the last epoch")


class ExponentialSchedule(_ScheduleBase):
    kind: Literal["exponential"]
    gamma: float = Field(..., gt=0.0, description="multiplier per epoch")


class CyclicTriangularSchedule(_ScheduleBase):
    kind: Literal["cyclic_triangular"]
    low: float = Field(..., gt=0.0)
    high: float = Field(..., gt=0.0)
    period: int = Field(..., ge=2, description="epochs in one full cycle")
    start: Literal["low", "high"] = "high"


class CyclicDiscreteSchedule(_ScheduleBase):
    kind: Literal["cyclic_discrete"]
    low: float = Field(..., gt=0.0)
    high: float = Field(..., gt=0.0)
    stage: int = Field(..., ge=1, description="epochs spent at each level")
    start: Literal["low", "high"] = "high"


class TableSchedule(_ScheduleBase):
    kind: Literal["table"]
    values: list[Annotated[float, Field(gt=0.0)]] = Field(..., min_length=1, description="one per epoch; the last repeats")


ScheduleSpec = Annotated[
    Union[
        ConstantSchedule,
        StepSchedule,
        LinearSchedule,
        ExponentialSchedule,
        CyclicTriangularSchedule,
        CyclicDiscreteSchedule,
        TableSchedule,
    ],
    Field(discriminator="kind"),
]


class DistributionSpec(Spec):
    """Which tf.distribute strategy runs the training, and on which devices."""

    strategy: Literal["auto", "one_device", "mirrored", "multi_worker"] = Field(
        "auto", description="auto: mirrored on several GPUs, one device otherwise; multi_worker reads TF_CONFIG"
    )
    devices: list[str] | None = Field(None, description="e.g. ['/gpu:0', '/gpu:1'] (default: all of a kind)")
    cpu_replicas: int = Field(1, ge=1, description="split the CPU into this many logical devices")
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = "none"
    jit_compile: Literal["auto", "on", "off"] = Field("off", description="XLA for the train step")


class SweepSpec(Spec):
    """Which fields vary: a cartesian grid, zipped axes, η/S ratios and seeds."""

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values, crossed")
    zip: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values, paired")
    ratio: list[Annotated[float, Field(gt=0.0)]] = Field(default_factory=list, description="η/S values")
    derive: Literal["lr", "batch_size"] = Field("lr", description="with ratio: which of η, S follows")
    seeds: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _zip_lengths(self) -> "SweepSpec":
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"zip lists must have the same length, got {sorted(lengths)}")
        return self

    @property
    def is_empty(self) -> bool:
        return not (self.grid or self.zip or self.ratio or self.seeds)


FIGURES = Literal[
    "curves", "eta_over_s", "heatmap", "interpolation", "paired_curves", "memorization",
    "beta_scaling", "sharpness_trajectory", "sharpness_vs_loss", "svag",
]


class ReportSpec(Spec):
    """What ``tfminima report`` draws for this experiment, and which runs it compares."""

    figures: list[FIGURES] = Field(default_factory=lambda: ["curves", "eta_over_s"])
    pairs: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list,
        description="run ids (or labels) compared pairwise: interpolated between, or overlaid",
    )
    interpolation_points: int = Field(31, ge=3, description="α values in [alpha_min, alpha_max]; α = 0 and 1 are always added")
    alpha_min: float = -1.0
    alpha_max: float = 2.0
    interpolation_samples: int = Field(2048, gt=0, description="training examples evaluated per α")


class ExperimentSpec(Spec):
    """One experiment: a single run, or a sweep of runs when ``sweep`` is given."""

    name: str = Field("experiment", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int = 0
    epochs: int = Field(10, gt=0)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=lambda: MLPSpec(name="mlp"))
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    lr_schedule: ScheduleSpec = Field(default_factory=lambda: ConstantSchedule(kind="constant"))
    batch_size_schedule: ScheduleSpec = Field(default_factory=lambda: ConstantSchedule(kind="constant"))
    schedule_conversion: Literal["none", "lr_to_batch_size", "batch_size_to_lr"] = Field(
        "none",
        description="realise the lr schedule through the batch size (or back) with η/S equal at every epoch",
    )
    monitors: list[MonitorItem] = Field(default_factory=list)
    distribution: DistributionSpec = Field(default_factory=DistributionSpec)
    deterministic: bool = Field(True, description="seeded, op-deterministic: reruns are bitwise equal")
    eval_batch_size: int = Field(1024, gt=0)
    divergence_factor: float = Field(100.0, gt=1.0, allow_inf_nan=True,
                                     description="diverged when loss > factor × first loss (.inf: never)")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    output_dir: str = Field("runs", description="runs go to <output_dir>/<name>/<run-id>")
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named sets of dotted-key overrides, applied with --profile NAME (e.g. a CPU-scale variant)",
    )
    profile: str = Field("", description="the profile this config was resolved with (set by --profile)")

    @field_validator("model", mode="before")
    @classmethod
    def _default_model_name(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:
            return {"name": "mlp", **value}
        return value

    @field_validator("lr_schedule", "batch_size_schedule", mode="before")
    @classmethod
    def _default_schedule_kind(cls, value: Any) -> Any:
        if value is None:
            return {"kind": "constant"}
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "constant", **value}
        return value

    @field_validator("monitors", mode="before")
    @classmethod
    def _monitors(cls, value: Any) -> Any:
        return normalise_items(value)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> "ExperimentSpec":
        # A sweep may override the values checked here: then each expanded run is checked instead.
        if info.context and info.context.get("sweep_base"):
            return self
        if self.optimizer.batch_size > self.dataset.train_size:
            raise ValueError(
                f"optimizer.batch_size: {self.optimizer.batch_size} is larger than "
                f"dataset.train_size {self.dataset.train_size}"
            )
        replicas = self.replicas_known()
        if replicas and self.optimizer.batch_size % replicas:
            raise ValueError(
                f"optimizer.batch_size: {self.optimizer.batch_size} is not divisible by the "
                f"{replicas} replicas: the global batch is split evenly across replicas"
            )
        if self.schedule_conversion == "lr_to_batch_size" and self.batch_size_schedule.kind != "constant":
            raise ValueError("schedule_conversion: lr_to_batch_size needs a constant batch_size_schedule")
        if self.schedule_conversion == "batch_size_to_lr" and self.lr_schedule.kind != "constant":
            raise ValueError("schedule_conversion: batch_size_to_lr needs a constant lr_schedule")
        if self.optimizer.nesterov and self.optimizer.momentum == 0:
            raise ValueError("optimizer.nesterov: needs optimizer.momentum > 0")
        return self

    def replicas_known(self) -> int | None:
        """Replica count when the config alone fixes it (None when it depends on the machine)."""
        d = self.distribution
        if d.strategy == "mirrored":
            return len(d.devices) if d.devices else (d.cpu_replicas if d.cpu_replicas > 1 else None)
        if d.strategy == "one_device":
            return 1
        return None

    def monitors_to_run(self) -> list[MonitorSpec]:
        """The listed monitors, and the memorisation monitor (at its defaults) when labels are noisy
        and it is not listed: a noisy-label run always logs what SGD memorised."""
        specs = list(self.monitors)
        if self.dataset.label_noise > 0 and not any(isinstance(m, MemorizationMonitorSpec) for m in specs):
            specs.append(MemorizationMonitorSpec())
        return specs

    @property
    def noise_scale(self) -> float:
        """η/S at the base values."""
        return self.optimizer.lr / self.optimizer.batch_size

    @property
    def noise_scale_momentum(self) -> float:
        """η/(S(1−β)), the effective temperature with momentum (Smith et al. 2018)."""
        return self.optimizer.lr / (self.optimizer.batch_size * (1.0 - self.optimizer.momentum))


# --------------------------------------------------------------------------- YAML with lines


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that also records the line of every mapping key and sequence item."""


def _compose_lines(text: str) -> dict[tuple, int]:
    """Map each path (tuple of keys / indices) in a YAML document to its 1-based line."""
    node = yaml.compose(text, Loader=_LineLoader)
    lines: dict[tuple, int] = {}
    seen: set[int] = set()

    def walk(n, path):
        if id(n) in seen:  # an alias: its lines are those of its anchor (and it may contain itself)
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                lines[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return lines


def _line_for(lines: dict[tuple, int], path: tuple) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


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
    if origin is Union or (origin is not None and str(origin) == "types.UnionType"):
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


def _suggest(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


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
            msg = "unknown key" + _suggest(path[-1], _fields_at(data, parent))
        elif e["type"] == "union_tag_invalid" and path[:1] == ("monitors",):
            got = e.get("ctx", {}).get("tag")  # the entry's key names no monitor
            msg = f"unknown monitor {got!r}" + _suggest(got, list(MONITOR_SPECS))
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tag_key = str(ctx.get("discriminator", "")).strip("'")
            got = ctx.get("tag")
            options = [s.strip().strip("'") for s in str(ctx.get("expected_tags", "")).split(",")]
            path = path + (tag_key,)
            key = ".".join(str(p) for p in path)
            msg = f"{got!r} is not one of {', '.join(options)}" + _suggest(got, options)
        elif e["type"] in ("literal_error", "enum"):
            expected = e.get("ctx", {}).get("expected")
            got = e.get("input")
            options = [s.strip().strip("'") for s in str(expected).replace(" or ", ",").split(",")]
            msg = f"{got!r} is not one of {expected}" + (_suggest(got, options) if isinstance(got, str) else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
            head, sep, rest = msg.partition(": ")
            if sep and not key and re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", head):
                path = tuple(head.split("."))  # a cross-field check names the key it is about
                key, msg = head, rest
        problems.append(Problem(file, _line_for(lines, path), key, msg))
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


def parse_override(item: str) -> tuple[str, Any]:
    """Parse a ``--set dotted.key=value`` override; the value is read as YAML."""
    if "=" not in item:
        raise ConfigError([Problem("--set", None, item, "expected key=value")])
    key, _, raw = item.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def validate_data(
    data: Any, *, file: str = "<config>", lines: dict[tuple, int] | None = None
) -> ExperimentSpec:
    """Validate a plain dict into an :class:`ExperimentSpec`, or raise :class:`ConfigError`."""
    lines = lines or {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, _line_for(lines, ()), "", "the top level must be a mapping of keys")])
    _check_finite_tree(data, file)
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


MAX_NODES = 100_000  # values in a document, aliases expanded ("billion laughs" guard)
MAX_DEPTH = 100  # nesting levels (the schema needs 5; pydantic and deepcopy recurse)


def _check_finite_tree(data: Any, file: str) -> None:
    """YAML aliases can make a document refer to itself or expand exponentially: refuse both,
    and documents nested deeper than anything the schema holds."""
    count, stack = 0, [(data, frozenset())]
    while stack:
        node, ancestors = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError([Problem(file, None, "", f"the document expands to more than {MAX_NODES} values "
                                                       "(YAML aliases repeated inside each other?)")])
        if len(ancestors) > MAX_DEPTH:
            raise ConfigError([Problem(file, None, "", f"the document is nested too deeply (more than {MAX_DEPTH} levels)")])
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                raise ConfigError([Problem(file, None, "", "a YAML alias refers to a node that contains it "
                                                           "(a recursive document)")])
            inner = ancestors | {id(node)}
            stack.extend((v, inner) for v in (node.values() if isinstance(node, dict) else node))


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
                    Problem(file, _line_for(lines, ("sweep", axis, key)), f"sweep.{axis}.{key}",
                            f"no such config key '{key}'" + _suggest(parts[-1], valid))
                )
    return problems


def _check_sweep_runs(spec: ExperimentSpec, data: dict, lines, file) -> list[Problem]:
    """Every expanded run must itself be a valid experiment; report against the sweep's lines."""
    if spec.sweep.is_empty:
        return []
    try:
        runs = sweep_lib.expand_data(data, defaults=ExperimentSpec().model_dump(mode="json"))
    except sweep_lib.SweepError as err:
        return [Problem(file, _line_for(lines, ("sweep",)), "sweep", str(err))]
    problems: list[Problem] = []
    for run in runs:
        try:
            ExperimentSpec.model_validate(run.data)
        except ValidationError as err:
            for p in _problems_from_validation(err, run.data, {}, file):
                where = _sweep_line(lines, p.key)
                problems.append(Problem(file, where, p.key, f"{p.message} (in sweep run {run.run_id})"))
    return problems


def _sweep_line(lines: dict[tuple, int], key: str) -> int | None:
    for axis in ("grid", "zip"):
        if ("sweep", axis, key) in lines:
            return lines[("sweep", axis, key)]
    return _line_for(lines, ("sweep",))


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
        raise ConfigError([Problem(file, _line_for(lines, ("profiles",)), "profiles",
                                   f"no profile {name!r}; profiles: {', '.join(known) or 'none'}"
                                   + _suggest(name, known))])
    overrides = profiles[name] or {}
    if not isinstance(overrides, dict):
        raise ConfigError([Problem(file, _line_for(lines, ("profiles", name)), f"profiles.{name}",
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
    data, _ = read_yaml(_read_text(Path(path)), str(path))
    profiles = data.get("profiles")
    return sorted(p for p in profiles if isinstance(p, str)) if isinstance(profiles, dict) else []


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {err.strerror or err}")]) from None
    except UnicodeDecodeError as err:
        raise ConfigError([Problem(str(path), None, "", f"not UTF-8 text (byte {err.start}): is this a YAML file?")]) from None


def read_yaml(text: str, file: str = "<config>") -> tuple[dict, dict[tuple, int]]:
    """Parse YAML into (data, lines); syntax errors become a ConfigError with the line."""
    try:
        data = yaml.load(text, Loader=_LineLoader)
        lines = _compose_lines(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        problem = (err.problem or "invalid YAML").strip()
        raise ConfigError([Problem(file, line, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as err:
        raise ConfigError([Problem(file, None, "", f"YAML error: {err}")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, None, "", "the document is nested too deeply")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "", "the top level must be a mapping of keys")])
    return data, lines


def load(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> ExperimentSpec:
    """Load and validate an experiment YAML file (optionally with one of its profiles applied)."""
    path = Path(path)
    return load_text(_read_text(path), str(path), overrides, profile)


class _Dumper(yaml.SafeDumper):
    """Block mappings, but flow style for lists of plain values ([100, 100])."""


def _represent_list(dumper, data):
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def to_yaml(spec: ExperimentSpec, *, include_sweep: bool = True) -> str:
    """The resolved spec (defaults filled) as YAML, in schema order."""
    data = spec.model_dump(mode="json")
    if not include_sweep or spec.sweep.is_empty:
        data.pop("sweep", None)
    if not data.get("profiles"):
        data.pop("profiles", None)
    if not data.get("profile"):
        data.pop("profile", None)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
