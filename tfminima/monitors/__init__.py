"""Monitors: Keras callbacks that measure the model at epoch ends, built from their specs.

:data:`MONITORS` maps each monitor's YAML name to its class; the modules are imported explicitly
here, so an error inside one (an ImportError included) surfaces as itself. Options and defaults
live in :mod:`tfminima.monitor_specs`; :func:`build_all` turns an experiment's monitor specs into
monitors::

    from tfminima.monitors import SharpnessMonitor, build_all
    SharpnessMonitor(every=2, k=3)        # options validated by SharpnessMonitorSpec
    build_all(spec)                        # the monitors a run of ``spec`` measures
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfminima.monitor_specs import MonitorSpec
from tfminima.monitors.base import Monitor, MonitorContext
from tfminima.monitors.memorization import MemorizationMonitor
from tfminima.monitors.noise_monitor import NoiseMonitor
from tfminima.monitors.sharpness import SharpnessMonitor
from tfminima.monitors.subset import fixed_subset

if TYPE_CHECKING:
    from tfminima.config import ExperimentSpec

__all__ = [
    "MONITORS", "MemorizationMonitor", "Monitor", "MonitorContext", "NoiseMonitor", "SharpnessMonitor",
    "build", "build_all", "fixed_subset", "monitor_class",
]

MONITORS: dict[str, type[Monitor]] = {
    cls.spec_type.name: cls for cls in (MemorizationMonitor, SharpnessMonitor, NoiseMonitor)
}


def monitor_class(name: str) -> type[Monitor]:
    """The monitor class of a YAML name."""
    if name not in MONITORS:
        raise KeyError(f"unknown monitor {name!r}; known: {sorted(MONITORS)}")
    return MONITORS[name]


def build(spec: MonitorSpec) -> Monitor:
    """The monitor a spec describes."""
    return monitor_class(spec.name)(spec)


def build_all(experiment: ExperimentSpec) -> list[Monitor]:
    """The monitors a run of ``experiment`` measures (see ``ExperimentSpec.monitors_to_run``)."""
    return [build(spec) for spec in experiment.monitors_to_run()]
