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

from tfminima.report import stats
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
    """At one learning rate: the SVAG runs by l, and how far the largest l moves from l = 1."""

    lr: float
    runs: dict[int, Run]
    loss_gap: Gap | None
    val_gap: Gap | None

    @property
    def largest_l(self) -> int:
        return max(self.runs)


def svag_comparisons(runs: list[Run]) -> list[SvagComparison]:
    """Per learning rate (and batch size), l = 1 against the largest l: train loss and val accuracy."""
    by_lr: dict[tuple, dict[int, Run]] = {}
    for r in runs:
        if r.lr is not None:
            by_lr.setdefault((r.lr, r.batch_size), {})[r.svag] = r
    out = []
    for (lr, _), members in sorted(by_lr.items()):
        members = dict(sorted(members.items()))
        one, top = members.get(1), members[max(members)]
        loss_gap = val_gap = None
        if one is not None and top is not one:
            loss_gap = largest_gap(one.series("train", "loss"), top.series("train", "loss"))
            val_gap = largest_gap(one.series("eval", "accuracy", "val"), top.series("eval", "accuracy", "val"))
        out.append(SvagComparison(lr, members, loss_gap, val_gap))
    return out


def varies(values: Iterable) -> bool:
    """More than one distinct value (after rounding noise away)."""
    return len({ratio_key(v) for v in values if _finite(v)}) > 1


# ------------------------------------------------------------------------- sharpness_vs_loss
@dataclasses.dataclass
class LossPath:
    """A run's sharpness measurements, each with the training loss of the same epoch, in epoch order.

    The loss is the ``train`` event's: the mean training loss over that epoch. ``trace`` and
    ``trace_stderr`` are NaN where the monitor measured no trace.
    """

    run: Run
    epochs: np.ndarray
    loss: np.ndarray
    lambda_max: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray

    @property
    def loss_range(self) -> tuple[float, float]:
        return float(self.loss.min()), float(self.loss.max())

    def at_loss(self, level: float, key: str = "lambda_max") -> float | None:
        """``key`` where the run first reaches training loss ``level`` (see :func:`value_at_loss`)."""
        return value_at_loss(self.loss, getattr(self, key), level)


def loss_path(run: Run) -> LossPath | None:
    """The run's (loss, λ_max, Tr(H)) points at epochs with both a sharpness and a train event; None if none.

    Points whose loss is not positive and finite, or whose λ_max is not finite, are left out
    (a log axis cannot place them).
    """
    lam = run.series("sharpness", "lambda_max")
    loss = run.series("train", "loss")
    epochs, il, it = np.intersect1d(lam.epochs, loss.epochs, return_indices=True)
    if not len(epochs):
        return None
    lam_v, loss_v = lam.values[il], loss.values[it]
    keep = np.isfinite(lam_v) & np.isfinite(loss_v) & (loss_v > 0)
    if not keep.any():
        return None
    epochs, lam_v, loss_v = epochs[keep], lam_v[keep], loss_v[keep]

    def aligned(key: str) -> np.ndarray:
        s = run.series("sharpness", key)
        return np.array([np.nan if (v := s.at(e)) is None else v for e in epochs], dtype=float)

    return LossPath(run, epochs, loss_v, lam_v, aligned("trace"), aligned("trace_stderr"))


def value_at_loss(loss: np.ndarray, values: np.ndarray, level: float) -> float | None:
    """The value where the trajectory first reaches training loss ``level``; None if it never does.

    Points are taken in epoch order and joined by straight lines in (log loss, log value), so a
    power law ``value = c · loss^p`` is recovered exactly between measurements (linear in the value
    when one end is not positive). A loss that goes back up (a cyclic schedule) can cross a level
    more than once: the first crossing counts, the moment the run first got that far.
    """
    if not (level > 0 and math.isfinite(level)):
        return None
    x = np.log(np.asarray(loss, dtype=float))
    y = np.asarray(values, dtype=float)
    target = math.log(level)
    for i in range(len(x)):
        if x[i] == target:
            return float(y[i]) if math.isfinite(y[i]) else None
        if i + 1 < len(x) and (x[i] - target) * (x[i + 1] - target) < 0:
            a, b = y[i], y[i + 1]
            if not (math.isfinite(a) and math.isfinite(b)):
                return None
            t = (target - x[i]) / (x[i + 1] - x[i])
            if a > 0 and b > 0:
                return float(math.exp(math.log(a) + t * (math.log(b) - math.log(a))))
            return float(a + t * (b - a))
    return None


@dataclasses.dataclass
class LossLevels:
    """Training-loss levels at which runs are compared, and the span they were placed in.

    ``common`` is True when every run's loss range covers the span; otherwise the span is where at
    least ``min_runs`` runs reach (the runs' ranges have no common part). ``levels`` is empty when
    no span exists.
    """

    levels: list[float]
    span: tuple[float, float] | None
    common: bool
    min_runs: int
    runs: int


def loss_levels(paths: list[LossPath], n: int = 4) -> LossLevels:
    """``n`` log-spaced levels (centres of ``n`` equal log bins) inside the loss range all runs pass through.

    When the runs' ranges do not all overlap, the span falls back to the losses reached by at least
    half the runs (and at least two); when even that is empty there are no levels.
    """
    if not paths:
        return LossLevels([], None, False, 0, 0)
    ranges = np.log(np.array([p.loss_range for p in paths]))
    lo, hi = float(ranges[:, 0].max()), float(ranges[:, 1].min())
    if lo <= hi:
        return LossLevels(_log_centres(lo, hi, n), (math.exp(lo), math.exp(hi)), True, len(paths), len(paths))
    need = max(2, math.ceil(len(paths) / 2))
    grid = np.unique(np.concatenate([ranges.ravel(), np.linspace(ranges.min(), ranges.max(), 512)]))
    cover = ((ranges[:, :1] <= grid) & (grid <= ranges[:, 1:])).sum(axis=0)
    ok = grid[cover >= need]
    if not len(ok):
        return LossLevels([], None, False, need, len(paths))
    lo, hi = float(ok.min()), float(ok.max())
    return LossLevels(_log_centres(lo, hi, n), (math.exp(lo), math.exp(hi)), False, need, len(paths))


def _log_centres(lo: float, hi: float, n: int) -> list[float]:
    if hi <= lo:
        return [math.exp(lo)]
    return [math.exp(lo + (i + 0.5) * (hi - lo) / n) for i in range(n)]


MIN_RUNS_FOR_RHO = 3


@dataclasses.dataclass
class LevelComparison:
    """λ_max and Tr(H) of each run at one training-loss level, and their Spearman ρ with η/S there.

    ``rho_*`` is None when fewer than :data:`MIN_RUNS_FOR_RHO` runs reach the level.
    """

    level: float
    lambda_max: dict[str, float]  # run id -> λ_max at this loss (runs that reach it)
    trace: dict[str, float]
    rho_lambda: Correlation | None
    rho_trace: Correlation | None

    @property
    def n(self) -> int:
        return len(self.lambda_max)


def compare_at_loss(paths: list[LossPath], levels: list[float]) -> list[LevelComparison]:
    """At each level, every run's interpolated λ_max and Tr(H) and their rank correlation with η/S."""
    ratio = {p.run.run_id: p.run.eta_over_s for p in paths}
    out = []
    for level in levels:
        values = {}
        for key in ("lambda_max", "trace"):
            at = {p.run.run_id: p.at_loss(level, key) for p in paths}
            values[key] = {rid: v for rid, v in at.items() if v is not None and math.isfinite(v)}
        # Interpolated values equal up to float noise (iso-ratio runs on one law) rank as ties.
        rhos = [spearman([ratio[r] for r in values[key]], [float(f"{v:.10g}") for v in values[key].values()])
                if len(values[key]) >= MIN_RUNS_FOR_RHO else None for key in ("lambda_max", "trace")]
        out.append(LevelComparison(level, values["lambda_max"], values["trace"], *rhos))
    return out
