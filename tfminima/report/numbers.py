"""The numbers a report states: correlations, gaps between curves, peaks, β values. No plotting.

Each function takes runs (or their series) and returns plain values, so tests can check them
against hand-built inputs and the markdown and the figures print the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable

import numpy as np

from tfminima.report import seeds, stats
from tfminima.report.loading import Run, Series


def ratio_key(value: float) -> float:
    """η/S values equal up to float noise (0.04/128 against 0.01/32) share a key."""
    return float(f"{value:.6g}")


Correlation = stats.RankCorrelation


def spearman(x: Iterable[float | None], y: Iterable[float | None]) -> Correlation | None:
    """ρ over the pairs where both values are finite; None when fewer than two or one side is constant.

    A rank correlation, because the paper claims an ordering (higher η/S → higher accuracy,
    lower sharpness), not a linear law. The p-value is exact for up to 8 points.
    """
    return stats.spearman(list(x), list(y))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def iso_ratio_groups(runs: list[Run], ratio: Callable[[Run], float | None] = lambda r: r.eta_over_s) -> dict[float, list[Run]]:
    """Runs by their η/S (or another noise scale) up to rounding, ascending."""
    groups: dict[float, list[Run]] = {}
    for run in runs:
        value = ratio(run)
        if value is not None:
            groups.setdefault(ratio_key(value), []).append(run)
    return dict(sorted(groups.items()))


@dataclasses.dataclass
class IsoSpread:
    """How much a metric varies inside one η/S value (the paper: little) and its mean there."""

    ratio: float
    n: int
    mean: float
    spread: float  # max − min over the runs with this η/S


def iso_spreads(runs: list[Run], metric: str, ratio: Callable[[Run], float | None] = lambda r: r.eta_over_s) -> list[IsoSpread]:
    out = []
    for key, members in iso_ratio_groups(runs, ratio).items():
        values = [v for v in (r.final(metric) for r in members) if _finite(v)]
        if values:
            out.append(IsoSpread(key, len(values), float(np.mean(values)), float(np.ptp(values))))
    return out


@dataclasses.dataclass
class Gap:
    """The largest |a − b| between two curves over their common epochs, and where it happens."""

    value: float
    epoch: float
    a: float
    b: float
    epochs_compared: int


def largest_gap(a: Series, b: Series) -> Gap | None:
    """Largest absolute difference at epochs both curves have (the first such epoch on ties)."""
    common, ia, ib = np.intersect1d(a.epochs, b.epochs, return_indices=True)
    if not len(common):
        return None
    va, vb = a.values[ia], b.values[ib]
    diff = np.abs(va - vb)
    ok = np.isfinite(diff)
    if not ok.any():
        return None
    i = int(np.argmax(np.where(ok, diff, -np.inf)))
    return Gap(float(diff[i]), float(common[i]), float(va[i]), float(vb[i]), len(common))


@dataclasses.dataclass
class Memorization:
    """A run's validation accuracy against memorisation: at the validation peak and at the end."""

    peak_val: float
    peak_epoch: float
    mem_at_peak: float
    final_val: float
    final_mem: float
    final_epoch: float


def memorization_points(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, noisy-subset accuracy, validation accuracy) at epochs where both were measured."""
    mem = run.series("memorization", "noisy_accuracy")
    val = run.series("eval", "accuracy", "val")
    common, im, iv = np.intersect1d(mem.epochs, val.epochs, return_indices=True)
    return common, mem.values[im], val.values[iv]


def memorization_summary(run: Run) -> Memorization | None:
    """Peak validation accuracy (first epoch on ties) and the memorisation reached then and at the end."""
    epochs, mem, val = memorization_points(run)
    if not len(epochs):
        return None
    i = int(np.argmax(val))
    return Memorization(float(val[i]), float(epochs[i]), float(mem[i]), float(val[-1]), float(mem[-1]), float(epochs[-1]))


_BETA_LABEL = re.compile(r"^b(\d+(?:\.\d+)?)$")


def beta_of_label(label: str | None) -> float | None:
    """β from a sweep label such as ``b0.25`` or ``b7`` (E5 names its runs so)."""
    m = _BETA_LABEL.match(label or "")
    return float(m.group(1)) if m else None


@dataclasses.dataclass
class BetaPoint:
    """One run of a β-scaling sweep (η = η₀β, S = S₀β) at training-set size ``train_size``."""

    train_size: int | None
    beta: float
    run: Run


def beta_points(runs: list[Run]) -> list[BetaPoint]:
    """β per run: from its ``b<β>`` label, else S over the smallest S at the same training-set size."""
    smallest: dict[int | None, int] = {}
    for r in runs:
        if r.batch_size:
            smallest[r.train_size] = min(smallest.get(r.train_size, r.batch_size), r.batch_size)
    out = []
    for r in runs:
        beta = beta_of_label(r.label)
        if beta is None and r.batch_size:
            beta = r.batch_size / smallest[r.train_size]
        if beta is not None:
            out.append(BetaPoint(r.train_size, beta, r))
    return sorted(out, key=lambda p: (p.train_size or 0, p.beta, p.run.run_id))


@dataclasses.dataclass
class Rise:
    """Loss along the interpolation line: at both end points and ``d`` beyond each of them."""

    split: str
    d: float
    at_a: float
    at_b: float
    beyond_a: float  # loss at α = −d (past A, away from B)
    beyond_b: float  # loss at α = 1 + d

    @property
    def rise_a(self) -> float:
        return self.beyond_a - self.at_a

    @property
    def rise_b(self) -> float:
        return self.beyond_b - self.at_b


def interpolation_rise(result: dict, split: str = "train", d: float = 0.5) -> Rise | None:
    """How fast the loss climbs past each end point: a sharper minimum climbs faster.

    ``d`` shrinks to what the α range covers (α below 0 and above 1).
    """
    losses = result.get(f"{split}_loss")
    if not losses:
        return None
    alphas = np.asarray(result["alphas"], dtype=float)
    loss = np.asarray([np.nan if v is None else v for v in losses], dtype=float)
    d = min(d, -alphas.min(), alphas.max() - 1.0)
    if d <= 0:
        return None
    at = lambda a: float(np.interp(a, alphas, loss))
    return Rise(split, float(d), at(0.0), at(1.0), at(-d), at(1.0 + d))


@dataclasses.dataclass
class SvagComparison:
    """At one learning rate: a run of each SVAG l (its condition's first seed), and how far the mean
    curves of the largest l move from those of l = 1."""

    lr: float
    runs: dict[int, Run]
    loss_gap: Gap | None
    val_gap: Gap | None

    @property
    def largest_l(self) -> int:
        return max(self.runs)


def svag_comparisons(runs: list[Run]) -> list[SvagComparison]:
    """Per learning rate (and batch size), l = 1 against the largest l: train loss and val accuracy,
    each a mean over the condition's seeds."""
    by_lr: dict[tuple, dict[int, seeds.Condition]] = {}
    for c in seeds.conditions(runs):
        r = c.first
        if r.lr is not None:
            by_lr.setdefault((r.lr, r.batch_size), {})[r.svag] = c
    out = []
    for (lr, _), members in sorted(by_lr.items()):
        members = dict(sorted(members.items()))
        one, top = members.get(1), members[max(members)]
        loss_gap = val_gap = None
        if one is not None and top is not one:
            mean = lambda c, *key: seeds.mean_curve(c, *key).as_series()
            loss_gap = largest_gap(mean(one, "train", "loss"), mean(top, "train", "loss"))
            val_gap = largest_gap(mean(one, "eval", "accuracy", "val"), mean(top, "eval", "accuracy", "val"))
        out.append(SvagComparison(lr, {l: c.first for l, c in members.items()}, loss_gap, val_gap))
    return out


def varies(values: Iterable) -> bool:
    """More than one distinct value (after rounding noise away)."""
    return len({ratio_key(v) for v in values if _finite(v)}) > 1
