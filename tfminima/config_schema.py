"""The experiment schema: every section of an experiment YAML as a typed pydantic model. No TensorFlow.

Values are checked where they are declared: types, ranges, the tagged unions of models and
schedules, the cross-checks between sections, and the limits of :mod:`tfminima.limits` (epochs,
examples, batch size, the learning rate and batch size a schedule reaches at any epoch, computed
from its formula without listing the epochs). Names that become folders are checked as single
path components (:mod:`tfminima.paths`). Reading files and reporting problems with their lines
is :mod:`tfminima.config`'s job; this module knows no YAML.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tfminima import limits, model_shapes, paths, schedules
from tfminima.monitor_specs import (
    MemorizationMonitorSpec,
    MonitorItem,
    MonitorSpec,
    normalise_items,
)

__all__ = [  # what tfminima.config re-exports
    "CNNSpec",
    "ConstantSchedule",
    "DATASET_POOLS",
    "DATASET_SIZES",
    "CyclicDiscreteSchedule",
    "CyclicTriangularSchedule",
    "DatasetName",
    "DatasetSpec",
    "DistributionSpec",
    "ExperimentSpec",
    "ExponentialSchedule",
    "FIGURES",
    "IMAGE_DATASETS",
    "LinearSchedule",
    "MAX_INTERPOLATION_POINTS",
    "MLPSpec",
    "ModelSpec",
    "OptimizerSpec",
    "ReportSpec",
    "ResNetSpec",
    "SEED_MAX",
    "ScheduleSpec",
    "Spec",
    "StepSchedule",
    "SweepSpec",
    "TableSchedule",
    "UNTIL_METRICS",
    "UntilSpec",
    "VGGSpec",
    "schedule_problem",
]

SEED_MAX = 2**32 - 1  # NumPy's and Keras' seeds are 32-bit unsigned
MAX_INTERPOLATION_POINTS = 100_000  # report.interpolation_points and analyze --points


def _limited(name: str, what: str):
    """A field validator: the value (None passes) must be within limit ``name`` (see :mod:`tfminima.limits`)."""

    def check(value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            limits.check(name, value, f"{value} {what}")
        return value

    return check


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
# examples a fixed dataset has: (training pool, test pool); None: one pool for all three splits
# (MNIST-1D is generated to any size, up to the examples limit)
DATASET_POOLS: dict[str, tuple[int, int | None]] = {
    "digits": (1797, None),
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
}
DatasetName = Literal["mnist1d", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100"]


class DatasetSpec(Spec):
    """Which data, how it is split, normalised, augmented and corrupted."""

    name: DatasetName = "mnist1d"
    train_size: int | None = Field(None, gt=0, description="training examples (default: the dataset's)")
    val_size: int | None = Field(None, ge=0, description="validation examples held out of training")
    test_size: int | None = Field(None, ge=0, description="test examples")
    split_seed: int = Field(777, ge=0, le=SEED_MAX, description="seed of the train/validation split (paper: 777)")
    label_noise: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training labels replaced")
    noise_seed: int = Field(0, ge=0, le=SEED_MAX, description="seed choosing the noisy indices and their random labels")
    normalization: Literal["auto", "per_pixel_mean_global_std", "standardize", "scale", "none"] = Field(
        "auto", description="auto: per-pixel mean / global std for CIFAR, standardize otherwise"
    )
    augmentation: Literal["auto", "shift_flip", "shift", "flip", "none"] = Field(
        "auto", description="auto: 4-pixel shifts + horizontal flips for CIFAR, none otherwise"
    )
    data_dir: str | None = Field(None, description="TFDS data_dir (default: TFDS's own)")
    drop_remainder: bool = Field(False, description="drop the last partial training batch of an epoch")

    _sizes_limited = field_validator("train_size", "val_size", "test_size")(_limited("examples", "examples"))

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
        pool = DATASET_POOLS.get(self.name)
        if pool is not None:
            train_pool, test_pool = pool
            asked = self.train_size + self.val_size + (self.test_size if test_pool is None else 0)
            if asked > train_pool:
                what = "train_size + val_size" + (" + test_size" if test_pool is None else "")
                raise ValueError(f"{what} = {asked} is more than the {train_pool} examples {self.name} has")
            if test_pool is not None and self.test_size > test_pool:
                raise ValueError(f"test_size {self.test_size} is more than the {test_pool} test examples {self.name} has")
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

    _batch_limited = field_validator("batch_size")(_limited("batch_size", "examples in a batch"))


class _ScheduleBase(Spec):
    """Schedules give a multiplier of the base value (optimizer.lr or optimizer.batch_size)."""


class ConstantSchedule(_ScheduleBase):
    kind: Literal["constant"]


class StepSchedule(_ScheduleBase):
    kind: Literal["step"]
    milestones: list[Annotated[int, Field(ge=0)]] = Field(
        ..., description="epochs done after which factor applies once more (20: from the 21st epoch on)")
    factor: float = Field(0.1, gt=0.0, description="multiplier applied at every milestone")


class LinearSchedule(_ScheduleBase):
    kind: Literal["linear"]
    end_factor: float = Field(..., gt=0.0)
    start_epoch: int = Field(0, ge=0, description="epochs done before the ramp starts (0: at the first epoch)")
    end_epoch: int | None = Field(None, gt=0, description="epochs done when end_factor is reached "
                                                          "(default: at the last epoch)")


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
    cpu_replicas: int = Field(1, ge=1, le=256, description="split the CPU into this many logical devices")
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = "none"
    jit_compile: Literal["auto", "on", "off"] = Field("off", description="XLA for the train step")


class SweepSpec(Spec):
    """Which fields vary: a cartesian grid, zipped axes, η/S ratios and seeds."""

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values, crossed")
    zip: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values, paired")
    ratio: list[Annotated[float, Field(gt=0.0)]] = Field(default_factory=list, description="η/S values")
    derive: Literal["lr", "batch_size"] = Field("lr", description="with ratio: which of η, S follows")
    seeds: list[Annotated[int, Field(ge=0, le=SEED_MAX)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _zip_lengths(self) -> "SweepSpec":
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"zip lists must have the same length, got {sorted(lengths)}")
        return self

    @property
    def is_empty(self) -> bool:
        return not (self.grid or self.zip or self.ratio or self.seeds)


UNTIL_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class UntilSpec(Spec):
    """Train to a target: stop once ``metric`` reaches ``value`` (a loss at most, an accuracy at least).

    Checked at every epoch end and, with ``every_steps``, every that many optimizer steps of the run
    (counted from its first step, so the check points do not move with the batch size of an epoch).
    The train_* metrics are one inference-mode evaluation of a fixed training subset (not the running
    mean of the epoch's steps), the same at an epoch end as inside an epoch; val_* evaluate the
    validation split. ``epochs`` stays the cap.
    """

    metric: Literal["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    value: float = Field(..., description="the target: a loss at most this, an accuracy at least this")
    every_steps: int | None = Field(None, gt=0, description="also check every this many steps (default: epoch ends only)")
    train_examples: int | None = Field(
        None, gt=0, description="train_*: training examples evaluated (a fixed subset; default: all of them)"
    )
    subset_seed: int = Field(0, ge=0, le=SEED_MAX, description="train_*: seed drawing the fixed training subset")

    _train_examples_limited = field_validator("train_examples")(_limited("examples", "examples"))

    @field_validator("value")
    @classmethod
    def _value_in_range(cls, value: float, info: ValidationInfo) -> float:
        metric = info.data.get("metric", "")  # declared before value: validated first
        if metric.endswith("_accuracy") and not 0.0 <= value <= 1.0:
            raise ValueError(f"{value:g} is outside [0, 1], the range of {metric}")
        if metric.endswith("_loss") and value < 0:
            raise ValueError(f"{value:g} is negative: {metric} never is")
        return value


FIGURES = Literal[
    "curves", "eta_over_s", "heatmap", "interpolation", "paired_curves", "memorization",
    "beta_scaling", "sharpness_trajectory", "sharpness_vs_loss", "svag", "steps_to_target",
]


class ReportSpec(Spec):
    """What ``tfminima report`` draws for this experiment, and which runs it compares."""

    figures: list[FIGURES] = Field(default_factory=lambda: ["curves", "eta_over_s"])
    pairs: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list,
        description="run ids (or labels) compared pairwise: interpolated between, or overlaid",
    )
    interpolation_points: int = Field(31, ge=3, le=MAX_INTERPOLATION_POINTS,
                                      description="α values in [alpha_min, alpha_max]; α = 0 and 1 are always added")
    alpha_min: float = -1.0
    alpha_max: float = 2.0
    interpolation_samples: int = Field(2048, gt=0, description="training examples evaluated per α")

    _samples_limited = field_validator("interpolation_samples")(_limited("examples", "samples"))


class ExperimentSpec(Spec):
    """One experiment: a single run, or a sweep of runs when ``sweep`` is given."""

    name: str = Field("experiment", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$",
                      description="the group folder's name below output_dir: one path component")
    description: str = ""
    seed: int = Field(0, ge=0, le=SEED_MAX)
    epochs: int = Field(10, gt=0, description="epochs to train (with until: the cap)")
    until: UntilSpec | None = Field(None, description="train to a target: stop when a metric reaches a value")
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

    _epochs_limited = field_validator("epochs")(_limited("epochs", "epochs"))
    _eval_batch_limited = field_validator("eval_batch_size")(_limited("batch_size", "examples in an evaluation batch"))

    @field_validator("name")
    @classmethod
    def _name_is_a_folder(cls, value: str) -> str:
        return paths.check_component(value, "")

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
        if self.until is not None and self.until.metric.startswith("val_") and self.dataset.val_size == 0:
            raise ValueError(f"until.metric: {self.until.metric} needs a validation split, and dataset.val_size is 0")
        if self.optimizer.nesterov and self.optimizer.momentum == 0:
            raise ValueError("optimizer.nesterov: needs optimizer.momentum > 0")
        problem = schedule_problem(self) or model_shapes.problem(self.model, self.dataset.name)
        if problem:
            raise ValueError(problem)
        return self

    @classmethod
    def default_data(cls) -> dict[str, Any]:
        """Every key at its default, as JSON data: what a run that leaves a key out gets. Not checked as a
        run (a limit lowered by its variable may refuse the default model; each run is checked itself)."""
        return cls.model_validate({}, context={"sweep_base": True}).model_dump(mode="json")

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



# --------------------------------------------------------------------------- schedule limits
def _shown(log_value: float) -> str:
    """A number given by its natural log (it may be far beyond a float)."""
    if log_value < 700:
        return f"{math.exp(log_value):.4g}"
    return f"about 1e{log_value / math.log(10):.0f}"


def schedule_problem(spec: ExperimentSpec) -> str | None:
    """``key: what`` when the learning rate or batch size leaves its limits at some epoch, else None.

    Works on logarithms of the schedules' extremes (:func:`tfminima.schedules.multiplier_range`),
    so an exponential schedule over many epochs is judged without computing (or overflowing) it.
    """
    epochs = spec.epochs
    (lr_lo, lr_lo_at), (lr_hi, lr_hi_at) = schedules.multiplier_range(spec.lr_schedule, epochs)
    (bs_lo, bs_lo_at), (bs_hi, bs_hi_at) = schedules.multiplier_range(spec.batch_size_schedule, epochs)
    log_lr, log_bs = math.log(spec.optimizer.lr), math.log(spec.optimizer.batch_size)
    lr_key, bs_key = "lr_schedule", "batch_size_schedule"
    if spec.schedule_conversion == "lr_to_batch_size":  # S(e) = S0 · peak / m(e), η fixed at its peak
        lr_range = ((log_lr + lr_hi, lr_hi_at), (log_lr + lr_hi, lr_hi_at))
        bs_range = ((log_bs, lr_hi_at), (log_bs + lr_hi - lr_lo, lr_lo_at))
        bs_key = lr_key
    elif spec.schedule_conversion == "batch_size_to_lr":  # η(e) = η0 · S_min / S(e), S fixed at its smallest
        lr_range = ((log_lr + bs_lo - bs_hi, bs_hi_at), (log_lr, bs_lo_at))
        bs_range = ((log_bs + bs_lo, bs_lo_at), (log_bs + bs_lo, bs_lo_at))
        lr_key = bs_key
    else:
        lr_range = ((log_lr + lr_lo, lr_lo_at), (log_lr + lr_hi, lr_hi_at))
        bs_range = ((log_bs + bs_lo, bs_lo_at), (log_bs + bs_hi, bs_hi_at))
        # a constant schedule leaves only the value given to blame: point at it (its line or its --set)
        lr_key = "optimizer.lr" if spec.lr_schedule.kind == "constant" else lr_key
        bs_key = "optimizer.batch_size" if spec.batch_size_schedule.kind == "constant" else bs_key
    (low, low_at), (high, high_at) = lr_range
    try:
        max_lr, max_bs = limits.value("lr"), limits.value("batch_size")
    except limits.LimitError as err:
        return str(err)
    if high > math.log(max_lr):
        return f"{lr_key}: the learning rate reaches {_shown(high)} in epoch {high_at + 1}, {limits.beyond('lr')}"
    if low < math.log(limits.FLOAT32_TINY):
        return (f"{lr_key}: the learning rate falls to {_shown(low)} in epoch {low_at + 1}, below float32's "
                f"smallest normal number {limits.FLOAT32_TINY:.3g}: training would stand still")
    (_, _), (high, high_at) = bs_range
    if high > math.log(max_bs):
        return (f"{bs_key}: the batch size reaches {_shown(high)} in epoch {high_at + 1}, "
                f"{limits.beyond('batch_size')}")
    return None
