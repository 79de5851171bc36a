"""Does λ_max swing with the noise phase of a cyclic schedule? High-noise phases against their neighbours.

The paper (E6) reports that the Hessian norm swings with the phase of a cyclic schedule. A run's phases
come from its own schedule events: every epoch logs the η/S it trained at, an epoch above the midpoint of
the run's η/S range is *high-noise*, one below it *low-noise* (an epoch at the midpoint, as a triangular
schedule passes it, belongs to neither), and consecutive epochs on one side form a phase. A schedule
cycles when its phases come back, i.e. there are at least three. Each high-noise phase is paired with the
low-noise phases on either side of it (one at the start or end of training): the mean λ_max measured in
the high phase against the mean of its neighbours' means, so that a steady drift of λ_max along
training (sharpening, or flattening as the loss falls) cancels instead of posing as a swing. No plotting.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfminima.report import sharpness
from tfminima.report.loading import Run

MIN_PHASES = 3  # high, low, high (or the reverse): the schedule came back


@dataclasses.dataclass
class Phase:
    """Consecutive epochs on one side of the midpoint, and the sharpness measured in them."""

    high: bool
    epochs: list[float]  # epochs completed whose η/S puts them in this phase
    eta_over_s: float  # mean η/S over those epochs
    lambda_max: list[float]  # measurements inside the phase, in epoch order
    stability: list[float]
    loss: list[float]  # the training loss of each measured epoch (the mean over its steps)

    @property
    def measured(self) -> bool:
        return bool(self.lambda_max)


def noise_phases(run: Run) -> list[Phase] | None:
    """The run's phases in order; None when its schedule does not cycle (or logged no η/S)."""
    sched = run.series("schedule", "eta_over_s")
    if len(sched) < MIN_PHASES or not np.all(np.isfinite(sched.values)):
        return None
    lo, hi = float(sched.values.min()), float(sched.values.max())
    if not hi > lo:
        return None
    middle, tol = (lo + hi) / 2, 1e-9 * hi
    lam = run.series("sharpness", "lambda_max")
    stab = sharpness.stability_series(run)
    train = run.series("train", "loss")
    phases: list[Phase] = []
    for epoch, ratio in zip(sched.epochs, sched.values):
        if abs(ratio - middle) <= tol:
            continue
        high = bool(ratio > middle)
        if not phases or phases[-1].high != high:
            phases.append(Phase(high, [], 0.0, [], [], []))
        phase = phases[-1]
        phase.epochs.append(float(epoch))
        phase.eta_over_s += (float(ratio) - phase.eta_over_s) / len(phase.epochs)  # running mean
        value = lam.at(epoch)
        if value is not None and math.isfinite(value):
            phase.lambda_max.append(value)
            s, loss = stab.at(epoch), train.at(epoch)
            phase.stability.append(s if s is not None else math.nan)
            phase.loss.append(loss if loss is not None else math.nan)
    return phases if len(phases) >= MIN_PHASES else None


@dataclasses.dataclass
class Cycle:
    """One high-noise phase and its measured low-noise neighbours."""

    high: Phase
    lows: list[Phase]

    @property
    def lambda_high(self) -> float:
        return float(np.mean(self.high.lambda_max))

    @property
    def lambda_low(self) -> float:
        return float(np.mean([np.mean(p.lambda_max) for p in self.lows]))


@dataclasses.dataclass
class Swing:
    """A cycling run's high-noise phases against their neighbours: per run, the mean over its cycles."""

    run: Run
    cycles: list[Cycle]

    @property
    def lambda_high(self) -> float:
        return float(np.mean([c.lambda_high for c in self.cycles]))

    @property
    def lambda_low(self) -> float:
        return float(np.mean([c.lambda_low for c in self.cycles]))

    @property
    def higher_in_high(self) -> int:
        """Cycles whose high-noise phase has the larger λ_max."""
        return sum(c.lambda_high > c.lambda_low for c in self.cycles)

    def phases(self, high: bool) -> list[Phase]:
        """The high-noise phases of the cycles, or their low-noise neighbours (each once)."""
        if high:
            return [c.high for c in self.cycles]
        return list({id(p): p for c in self.cycles for p in c.lows}.values())

    def mean(self, key: str, high: bool) -> float:
        """Mean ``stability`` (λ_max·η/(2(1+β)) at the epoch's η) or training ``loss`` over the measurements in
        the high (or low) phases."""
        values = [v for p in self.phases(high) for v in getattr(p, key) if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    def eta_over_s(self, high: bool) -> float:
        return float(np.mean([p.eta_over_s for p in self.phases(high)]))


def swing(run: Run) -> Swing | None:
    """The run's cycles (a measured high-noise phase with at least one measured low-noise neighbour); None
    when the schedule does not cycle or no high-noise phase has a measured neighbour."""
    phases = noise_phases(run)
    if phases is None:
        return None
    cycles = []
    for i, phase in enumerate(phases):
        if not (phase.high and phase.measured):
            continue
        lows = [phases[j] for j in (i - 1, i + 1) if 0 <= j < len(phases) and phases[j].measured]
        if lows:
            cycles.append(Cycle(phase, lows))
    return Swing(run, cycles) if cycles else None
