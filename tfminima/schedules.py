"""Learning-rate and batch-size schedules, per epoch, and the conversion that keeps η/S equal.

No TensorFlow: the TUI previews schedules and the reporter draws them from these functions.

A schedule is a multiplier of its base value (``optimizer.lr`` or ``optimizer.batch_size``):

- ``constant``: 1
- ``step``: ``factor ** (number of milestones <= epoch)``
- ``linear``: from 1 at ``start_epoch`` to ``end_factor`` at ``end_epoch`` (default: last epoch)
- ``exponential``: ``gamma ** epoch``
- ``cyclic_triangular``: between ``low`` and ``high`` along a triangle of ``period`` epochs
- ``cyclic_discrete``: a square wave, ``stage`` epochs at each level
- ``table``: ``values[epoch]`` (the last value repeats)

The paper's E3: a learning-rate schedule η(e) at batch size S0 is replaced by a constant learning
rate η_max and the batch size S(e) = S0 · η_max / η(e), so η/S is the same at every epoch.

With a finite training set of N examples the noise scale is η/S·(1 − S/N) (:func:`eta_over_s_finite`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def multiplier(spec: Any, epoch: int, epochs: int) -> float:
    """The schedule's multiplier at ``epoch`` (0-based) of a run of ``epochs`` epochs."""
    kind = spec.kind
    if kind == "constant":
        return 1.0
    if kind == "step":
        return float(spec.factor) ** sum(1 for m in spec.milestones if epoch >= m)
    if kind == "linear":
        end = spec.end_epoch if spec.end_epoch is not None else max(epochs - 1, 1)
        start = spec.start_epoch
        if end <= start:
            return 1.0 if epoch < start else float(spec.end_factor)
        t = min(max((epoch - start) / (end - start), 0.0), 1.0)
        return 1.0 + (float(spec.end_factor) - 1.0) * t
    if kind == "exponential":
        return float(spec.gamma) ** epoch
    if kind == "cyclic_triangular":
        phase = (epoch % spec.period) / spec.period
        tri = 1.0 - abs(2.0 * phase - 1.0)  # 0 at the cycle start, 1 half-way
        lo, hi = float(spec.low), float(spec.high)
        return lo + (hi - lo) * tri if spec.start == "low" else hi - (hi - lo) * tri
    if kind == "cyclic_discrete":
        first = (epoch // spec.stage) % 2 == 0
        at_high = first if spec.start == "high" else not first
        return float(spec.high if at_high else spec.low)
    if kind == "table":
        return float(spec.values[min(epoch, len(spec.values) - 1)])
    raise ValueError(f"unknown schedule kind {kind!r}")


def multiplier_range(spec: Any, epochs: int) -> tuple[tuple[float, int], tuple[float, int]]:
    """((log of the smallest multiplier, its epoch), (log of the largest, its epoch)) over ``epochs`` epochs.

    From the formulas, without listing the epochs and in logarithms, so that 10⁵ epochs of
    ``gamma: 2`` are judged (and refused by the config's limits) instead of overflowing. Ties go to
    the earliest epoch. Equal to the extremes of :func:`multiplier` over ``range(epochs)``.
    """
    last = max(epochs - 1, 0)
    kind = spec.kind
    if kind == "constant":
        points = [(0.0, 0)]
    elif kind == "step":
        hits = sorted(m for m in spec.milestones if m <= last)
        first = sum(1 for m in hits if m == 0)
        log_f = math.log(float(spec.factor))
        points = [(first * log_f, 0), (len(hits) * log_f, hits[-1] if hits else 0)]
    elif kind == "exponential":
        points = [(0.0, 0), (last * math.log(float(spec.gamma)), last)]
    elif kind == "linear":  # monotone: from epoch 0 to where it stops changing (end_epoch, or start_epoch)
        end = spec.end_epoch if spec.end_epoch is not None else max(epochs - 1, 1)
        settled = spec.start_epoch if end <= spec.start_epoch else end
        points = [(math.log(multiplier(spec, e, epochs)), e) for e in (0, min(settled, last))]
    elif kind == "cyclic_discrete":  # two levels; the second starts at epoch `stage`
        points = [(math.log(multiplier(spec, e, epochs)), e) for e in (0, spec.stage if spec.stage <= last else 0)]
    elif kind == "cyclic_triangular":  # extremes at the cycle start and at the phase nearest its middle
        middle = min(spec.period // 2, min(epochs, spec.period) - 1) if epochs > 0 else 0
        points = [(math.log(multiplier(spec, e, epochs)), e) for e in (0, middle)]
    elif kind == "table":
        points = [(math.log(float(v)), e) for e, v in enumerate(spec.values[: max(epochs, 1)])]
    else:
        raise ValueError(f"unknown schedule kind {kind!r}")
    low = min(points, key=lambda p: (p[0], p[1]))
    high = max(points, key=lambda p: (p[0], -p[1]))
    return low, high


@dataclasses.dataclass(frozen=True)
class EpochSetting:
    """What SGD uses during one epoch."""

    epoch: int
    lr: float
    batch_size: int

    @property
    def eta_over_s(self) -> float:
        return self.lr / self.batch_size


def eta_over_s_finite(lr: float, batch_size: int, num_examples: int) -> float:
    """The noise scale of SGD on a finite training set: ``η/S·(1 − S/N)`` (Smith and Le 2018).

    A batch of ``S`` examples drawn without replacement from ``N`` has gradient noise of covariance
    ``C/S·(N−S)/(N−1)``: the temperature is ``η/S`` only while ``S ≪ N`` and vanishes for a full batch.
    ``S ≥ N`` gives 0 (a batch can hold no more than the whole training set: no sampling noise); an
    experiment that varies N (E5) compares runs by this, not by ``η/S``.
    """
    if lr < 0 or batch_size < 1 or num_examples < 1:
        raise ValueError(f"need lr >= 0, batch_size >= 1, num_examples >= 1; got {lr}, {batch_size}, {num_examples}")
    return lr / batch_size * max(0.0, 1.0 - batch_size / num_examples)


def round_batch_size(value: float, replicas: int = 1) -> int:
    """Nearest positive multiple of ``replicas`` (the global batch is split evenly)."""
    return max(replicas, int(round(value / replicas)) * replicas)


PLAN_CHUNK = 1000  # epochs planned between two checks of the stop request


def multipliers(schedule: Any, epochs: int) -> list[float]:
    """:func:`multiplier` at every epoch; seconds for 10⁵ epochs of a long step schedule, so the
    stop request is checked between chunks (:func:`tfminima.interrupt.check`)."""
    from tfminima import interrupt

    out = []
    for start in range(0, epochs, PLAN_CHUNK):
        interrupt.check(f"planning the schedule of {epochs} epochs")
        out += [multiplier(schedule, e, epochs) for e in range(start, min(start + PLAN_CHUNK, epochs))]
    return out


def plan(spec: Any, replicas: int = 1) -> list[EpochSetting]:
    """The learning rate and batch size of every epoch of an ``ExperimentSpec``.

    Applies ``schedule_conversion``: ``lr_to_batch_size`` realises the learning-rate schedule by
    the batch size (learning rate fixed at its peak), ``batch_size_to_lr`` the reverse (batch size
    fixed at its smallest). Where a converted batch size must be rounded to an integer (or to a
    multiple of the replica count), the learning rate of that epoch is corrected by the rounding
    factor, so η/S stays exactly equal to the original schedule's. Without conversion, batch
    sizes are rounded and learning rates are used as written.
    """
    lr0, bs0, epochs = spec.optimizer.lr, spec.optimizer.batch_size, spec.epochs
    lr_m = multipliers(spec.lr_schedule, epochs)
    bs_m = multipliers(spec.batch_size_schedule, epochs)
    out = []
    if spec.schedule_conversion == "lr_to_batch_size":
        peak = max(lr_m)
        for e in range(epochs):
            exact = bs0 * bs_m[e] * peak / lr_m[e]
            bs = round_batch_size(exact, replicas)
            out.append(EpochSetting(e, lr0 * peak * bs / exact, bs))
    elif spec.schedule_conversion == "batch_size_to_lr":
        low = min(bs_m)
        fixed = round_batch_size(bs0 * low, replicas)
        for e in range(epochs):
            # η/S must equal lr0·lr_m / (bs0·bs_m); with S fixed, η follows.
            out.append(EpochSetting(e, lr0 * lr_m[e] * fixed / (bs0 * bs_m[e]), fixed))
    else:  # as written; batch sizes rounded, learning rates untouched
        for e in range(epochs):
            out.append(EpochSetting(e, lr0 * lr_m[e], round_batch_size(bs0 * bs_m[e], replicas)))
    return out
