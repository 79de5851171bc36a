"""The monitors' options: one pydantic model per monitor, the only place their defaults live.

No TensorFlow here: the config (``ExperimentSpec.monitors``), the TUI's Configure form and the
monitors themselves (:mod:`tfminima.monitors`, built from these specs) all read this module.

The YAML lists a monitor as a bare name or a one-key mapping ``name: {options}``::

    monitors: [{sharpness: {every: 5}}, memorization, {noise: {}}]

:data:`MonitorItem` is the type of one entry: a union of the spec models discriminated by that
key, serialised back to the same shape with every option filled in (``{sharpness: {every: 5,
k: 1, ...}}``), so a resolved ``config.yaml`` says what ran and loads again unchanged.

A new option is a field of its monitor's spec here, read by the monitor as ``self.<option>``.
A new monitor is a spec class added to :data:`MONITOR_SPECS` and a :class:`tfminima.monitors.Monitor`
subclass whose ``spec_type`` is that class, listed in :data:`tfminima.monitors.MONITORS`.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WrapSerializer,
)


class MonitorOptionError(ValueError):
    """Options a monitor's spec rejects (Python API); ``str()`` names each option and what is wrong."""


class MonitorSpec(BaseModel):
    """Options every monitor has: measure every ``every`` epochs, and always after the last one."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    name: ClassVar[str] = "monitor"  # the YAML key, and the kind of the events the monitor logs

    every: int = Field(1, ge=1)

    @classmethod
    def from_options(cls, spec: MonitorSpec | None = None, **options: Any) -> MonitorSpec:
        """``spec`` (or the defaults) with ``options`` applied, validated by this model.

        Raises :class:`MonitorOptionError` naming every bad option (and the nearest valid one).
        """
        if spec is not None and not isinstance(spec, cls):
            raise TypeError(f"{cls.__name__} expected, got {type(spec).__name__}")
        if spec is not None and not options:
            return spec
        values = spec.model_dump() if spec is not None else {}
        try:
            return cls.model_validate({**values, **options})
        except ValidationError as err:
            raise MonitorOptionError(_describe(cls, err)) from None


def _describe(cls: type[MonitorSpec], err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            match = difflib.get_close_matches(key, list(cls.model_fields), n=1, cutoff=0.5)
            msg = "unknown option" + (f" (did you mean '{match[0]}'?)" if match else "")
            msg += f"; options: {', '.join(cls.model_fields)}"
        else:
            msg = f"{e['msg']} (got {e['input']!r})"
        lines.append(f"{key}: {msg}")
    return f"{cls.name} monitor: " + "; ".join(lines)


class MemorizationMonitorSpec(MonitorSpec):
    """Accuracy on the noisy subset (against its noisy labels) and on the clean subset."""

    name: ClassVar[str] = "memorization"


class SharpnessMonitorSpec(MonitorSpec):
    """λ_max (top-k, Lanczos) and its stability ratio, Tr(H) (Hutchinson), optionally ‖H‖_F and the batch
    sharpness, on a fixed training subset."""

    name: ClassVar[str] = "sharpness"

    every: int = Field(5, ge=1)
    k: int = Field(1, ge=1)
    trace: bool = True
    samples: int = Field(2048, gt=0)
    tol: float = Field(1e-3, gt=0.0)
    trace_probes: int = Field(100, ge=2)
    trace_tol: float | None = Field(None, gt=0.0, description="stop Hutchinson at this relative stderr")
    max_hvps: int | None = Field(None, gt=0, description="cap on Hessian-vector products for the eigenvalues")
    density: bool = False
    density_runs: int = Field(10, ge=1)
    density_steps: int = Field(80, ge=2)
    method: Literal["lanczos", "power", "eigsh"] = "lanczos"
    # Double backward by default: as exact as forward-over-backward and about 5x faster to trace
    # (0.3 s against 1.5 s for the quickstart MLP), paid once per architecture and sweep.
    mode: Literal["forward", "reverse"] = Field("reverse", description="HVP by forward-over-backward or double backward")
    seed: int = 0
    frobenius: bool = Field(False, description="also ‖H‖_F = sqrt(E‖Hz‖²) over frobenius_probes probes")
    frobenius_probes: int = Field(30, ge=2)
    batch_sharpness: bool = Field(
        False, description="also E_B[g_Bᵀ H_B g_B/‖g_B‖²] over `batches` batches of the epoch's batch size"
    )
    batches: int = Field(20, ge=2, description="batches drawn for the batch sharpness (a gradient and an HVP each)")


class NoiseMonitorSpec(MonitorSpec):
    """Gradient covariance trace, gradient noise scale and the paper's E[L] vs (η/4S)Tr(H) check."""

    name: ClassVar[str] = "noise"

    every: int = Field(5, ge=1)
    samples: int = Field(512, gt=0)
    seed: int = 0
    # Tr(H) enters ratios (E[L] against (η/4S)·Tr(H), Tr(C)/Tr(H)): ~3 % standard error is plenty
    trace_probes: int = Field(30, ge=2)
    tol: float = Field(1e-3, gt=0.0)
    chunk_size: int | None = Field(None, gt=0, description="examples per per-example-gradient chunk")


MONITOR_SPECS: dict[str, type[MonitorSpec]] = {
    spec.name: spec for spec in (MemorizationMonitorSpec, SharpnessMonitorSpec, NoiseMonitorSpec)
}


# --------------------------------------------------------------------------- the YAML shape


def split_item(item: Any) -> tuple[str, Any] | None:
    """``(name, options)`` of one YAML entry (a bare name or ``{name: options}``); None for another shape."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        ((name, options),) = item.items()
        return str(name), {} if options is None else options
    return None


def normalise_items(value: Any) -> list:
    """The ``monitors`` list with every entry as ``{name: options}`` (specs pass through).

    Raises ValueError for a value that is not such a list, naming the entry.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("must be a list like [{sharpness: {every: 5}}, memorization]")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, MonitorSpec):
            out.append(item)
            continue
        parsed = split_item(item)
        if parsed is None:
            raise ValueError(f"item {i} must be a monitor name or a one-key mapping name: {{options}}")
        name, options = parsed
        out.append({name: options})
    return out


def monitor_name(item: Any) -> str | None:
    """The discriminator of :data:`MonitorItem`: a spec's name, or the key of ``{name: options}``."""
    if isinstance(item, MonitorSpec):
        return item.name
    parsed = split_item(item)
    return parsed[0] if parsed else None


def _options(item: Any) -> Any:
    """``{name: options}`` → ``options`` (a spec passes through)."""
    parsed = split_item(item) if isinstance(item, dict) else None
    return parsed[1] if parsed else item


def _as_yaml_entry(spec: MonitorSpec, handler) -> dict:
    return {spec.name: handler(spec)}


MonitorItem = Annotated[
    Union[tuple(Annotated[spec, BeforeValidator(_options), Tag(name)] for name, spec in MONITOR_SPECS.items())],
    Discriminator(monitor_name),
    WrapSerializer(_as_yaml_entry),
]
"""One entry of ``ExperimentSpec.monitors``: the spec model its YAML key names."""
