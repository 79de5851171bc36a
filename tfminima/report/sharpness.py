"""Sharpness compared fairly: at equal training loss, and against the edge of stability. No plotting.

Two confounders make raw end-point sharpness misleading across η/S:

- **depth**: λ_max grows while the loss is still falling (progressive sharpening), so runs that end
  at different losses are compared at different stages. The paper's E[L] = (η/4S)·Tr(H) is a
  statement at equal loss; :func:`loss_path` and :func:`compare_at_loss` compare runs there.
- **the stability cap**: gradient descent with step η and heavy-ball momentum β cannot stay where
  λ_max > 2(1+β)/η (Cohen et al. 2021, "Gradient descent on neural networks typically occurs at the
  edge of stability"). ``stability`` = λ_max·η/(2(1+β)) is 1 at that edge; a run that is "flat"
  only because its step forbids anything sharper sits near 1, and that is not the noise η/S at work.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfminima.stability import edge_of_stability
from tfminima.report import seeds, stats
from tfminima.report.loading import Run, Series

AT_EDGE = 0.9  # stability at or above this: the run sits at the edge of stability


# ---------------------------------------------------------------------- edge of stability
def edge(lr: float, momentum: float = 0.0, *, nesterov: bool = False, svag: int = 1) -> float:
    """The largest λ_max at which the step is stable: 2(1+β)/η for heavy ball, 2(1+β)/((1+2β)η) for Nesterov.

    ``lr`` is the nominal η; SVAG with l > 1 steps at η/l (the logs keep the nominal η).
    The Nesterov form is the quadratic stability limit of Nesterov's update (Cohen et al. 2021, appendix).
    The formula is :func:`tfminima.stability.edge_of_stability`'s, which the monitors log ``stability`` with.
    """
    return edge_of_stability(lr, momentum, nesterov=nesterov, svag=svag)


def run_edge(run: Run, epoch: float | None = None) -> float | None:
    """The edge for ``run`` with the learning rate of ``epoch`` (its base η when None)."""
    lr = run.lr if epoch is None else run.lr_at(epoch)
    if not lr or lr <= 0:
        return None
    return edge(lr, run.momentum, nesterov=run.nesterov, svag=run.svag)


def stability_series(run: Run) -> Series:
    """λ_max / edge at every sharpness measurement: the logged ``stability`` where the monitor wrote one,
    else computed from λ_max, the epoch's scheduled η and the config's momentum."""
    lam = run.series("sharpness", "lambda_max")
    logged = run.series("sharpness", "stability")
    values = []
    for epoch, value in zip(lam.epochs, lam.values):
        got = logged.at(epoch)
        if got is None:
            e = run_edge(run, epoch)
            got = value / e if e else math.nan
        values.append(got)
    return Series(lam.epochs, np.array(values, dtype=float))


def final_stability(run: Run) -> float | None:
    """Stability at the last sharpness measurement; from summary.json's λ_max and the last epoch's η when
    the event log has no sharpness event."""
    last = stability_series(run).last
    if last is not None:
        return last
    logged = run.summary.get("sharpness/stability")
    if isinstance(logged, (int, float)) and not isinstance(logged, bool):
        return float(logged)
    lam = run.final("lambda_max")
    train = run.series("train", "loss")
    e = run_edge(run, float(train.epochs[-1]) if len(train) else None)
    return lam / e if lam is not None and e else None


@dataclasses.dataclass
class CapVerdict:
    """Whether the flatter runs of a comparison are just held down by the stability cap.

    ``flatter`` are the names below the median λ_max; ``stability`` their stability values.
    """

    flatter: list[str]
    stability: list[float]

    @property
    def at_edge(self) -> int:
        return sum(s >= AT_EDGE for s in self.stability)


def cap_verdict(points: dict[str, tuple[float, float]]) -> CapVerdict | None:
    """From {name: (λ_max, stability)}: the flatter half (below the median λ_max) and their stability.

    None with fewer than two named points or no stability known.
    """
    ok = {k: v for k, v in points.items() if all(_finite(x) for x in v)}
    if len(ok) < 2:
        return None
    median = float(np.median([lam for lam, _ in ok.values()]))
    flatter = sorted((k for k, (lam, _) in ok.items() if lam < median), key=lambda k: ok[k][0])
    if not flatter:
        return None
    return CapVerdict(flatter, [ok[k][1] for k in flatter])


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------- equal training loss
@dataclasses.dataclass
class LossPath:
    """A run's sharpness measurements, each with the training loss of the same epoch, in epoch order.

    The loss is the ``train`` event's: the mean training loss over that epoch. ``trace`` and
    ``trace_stderr`` are NaN where the monitor measured no trace; ``stability`` is λ_max over the
    edge of stability at that epoch's learning rate.
    """

    run: Run
    epochs: np.ndarray
    loss: np.ndarray
    lambda_max: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    stability: np.ndarray
    edge: np.ndarray  # 2(1+β)/η at each measurement

    @property
    def loss_range(self) -> tuple[float, float]:
        return float(self.loss.min()), float(self.loss.max())

    def at_loss(self, level: float, key: str = "lambda_max") -> float | None:
        """``key`` where the run first reaches training loss ``level`` (see :func:`value_at_loss`)."""
        return value_at_loss(self.loss, getattr(self, key), level)


def loss_path(run: Run) -> LossPath | None:
    """The run's (loss, λ_max, Tr(H), stability) points at epochs with both a sharpness and a train event.

    None if there are none. Points whose loss is not positive and finite, or whose λ_max is not
    finite, are left out (a log axis cannot place them).
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

    def aligned(series: Series) -> np.ndarray:
        return np.array([np.nan if (v := series.at(e)) is None else v for e in epochs], dtype=float)

    edges = np.array([np.nan if (e := run_edge(run, x)) is None else e for x in epochs], dtype=float)
    return LossPath(run, epochs, loss_v, lam_v, aligned(run.series("sharpness", "trace")),
                    aligned(run.series("sharpness", "trace_stderr")), aligned(stability_series(run)), edges)


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
    """λ_max, Tr(H) and stability of each run at one training-loss level, and ρ with η/S there.

    ``rho_*`` is over conditions (means over seeds), with the seed-resampling interval; None when
    fewer than :data:`MIN_RUNS_FOR_RHO` conditions reach the level.
    """

    level: float
    lambda_max: dict[str, float]  # run id -> λ_max at this loss (runs that reach it)
    trace: dict[str, float]
    stability: dict[str, float]
    rho_lambda: stats.RankCorrelation | None
    rho_trace: stats.RankCorrelation | None

    @property
    def n(self) -> int:
        return len(self.lambda_max)


def _rho_over_conditions(paths: list[LossPath], values: dict[str, float]) -> stats.RankCorrelation | None:
    conds = seeds.conditions([p.run for p in paths if p.run.run_id in values])
    if len(conds) < MIN_RUNS_FOR_RHO:
        return None
    # Interpolated values equal up to float noise (iso-ratio runs on one law) rank as ties.
    groups = [[float(f"{values[r.run_id]:.10g}") for r in c.runs] for c in conds]
    return stats.spearman_over_conditions([c.eta_over_s for c in conds], groups)


def compare_at_loss(paths: list[LossPath], levels: list[float]) -> list[LevelComparison]:
    """At each level, every run's interpolated λ_max, Tr(H) and stability, and ρ(·, η/S) over conditions."""
    out = []
    for level in levels:
        values = {}
        for key in ("lambda_max", "trace", "stability"):
            at = {p.run.run_id: p.at_loss(level, key) for p in paths}
            values[key] = {rid: v for rid, v in at.items() if v is not None and math.isfinite(v)}
        out.append(LevelComparison(level, values["lambda_max"], values["trace"], values["stability"],
                                   _rho_over_conditions(paths, values["lambda_max"]),
                                   _rho_over_conditions(paths, values["trace"])))
    return out


@dataclasses.dataclass
class EqualLoss:
    """Everything an equal-loss comparison of a set of runs needs, computed once."""

    paths: list[LossPath]
    skipped: list[Run]  # runs without a sharpness measurement paired with a training loss
    levels: LossLevels
    comparisons: list[LevelComparison]

    @property
    def middle(self) -> LevelComparison | None:
        """The level reached by the most runs (the lower-loss one on ties): the one verdicts quote."""
        if not self.comparisons:
            return None
        return max(self.comparisons, key=lambda c: c.n)


def equal_loss(runs: list[Run]) -> EqualLoss:
    paths = {r.run_id: loss_path(r) for r in runs}
    drawn = [p for p in paths.values() if p is not None]
    levels = loss_levels(drawn)
    return EqualLoss(drawn, [r for r in runs if paths[r.run_id] is None], levels, compare_at_loss(drawn, levels.levels))
