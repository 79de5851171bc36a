"""The critical batch size from runs trained to a target (``until:``, E8): numbers only, no plotting.

For each batch size S the sweep holds several learning rates, each over seeds. Per S the report keeps
the *best* η: the condition whose seeds reached the target most often and, among those, in the fewest
steps on average over its seeds (the tie-break a grid search of Shallue et al. 2019 uses: the seed mean).
Steps-to-target against S is then fitted with McCandlish et al. (2018)'s

    steps(S) = S_min · (1 + B_crit / S)        (examples(S) = E_min · (1 + S / B_crit), E_min = S_min·B_crit)

by least squares on log steps (each S weighs alike, from 10 steps to 10⁵). Its interval comes from a
bootstrap over seeds: every resample redraws the seeds of every condition (with replacement), chooses
the best η per S again and refits, so the choice of η is inside the interval. The prediction is the
gradient noise scale B_simple = Tr(C)/‖G‖² that the noise monitor measured along training (unbiased for
the training set): its median over every measurement of every run, and the quartiles as its spread.

An S whose every η missed the target is kept as "not reached" (tables and figure), never dropped; it
takes no part in the fit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from tfminima.report import seeds, stats
from tfminima.report.loading import Run

__all__ = ["BatchPoint", "CriticalBatch", "Fit", "critical_batch", "fit_critical", "noise_scale", "target_runs"]

COUNTS = ("steps_to_target", "epochs_to_target", "examples_to_target")


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def reached(run: Run) -> bool | None:
    """Whether the run reached its target: summary.json, else its ``target`` event; None without ``until``."""
    value = run.summary.get("target_reached")
    if isinstance(value, bool):
        return value
    events = [e for e in run.events if e.get("kind") == "target" and isinstance(e.get("reached"), bool)]
    return events[-1]["reached"] if events else None


def count(run: Run, key: str) -> float | None:
    """``steps_to_target`` / ``epochs_to_target`` / ``examples_to_target`` of a run that reached it."""
    value = _number(run.summary.get(key))
    if value is None:
        events = [e for e in run.events if e.get("kind") == "target" and e.get("reached") is True]
        value = _number(events[-1].get(key)) if events else None
    return value


def target_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs trained to a target that ended (completed: reached or at the cap; diverged: never reaches it)."""
    return [r for r in runs if r.batch_size and r.state in ("completed", "diverged")
            and (reached(r) is not None or r.state == "diverged")]


@dataclasses.dataclass
class Candidate:
    """One learning rate at one S: its seeds' counts (None where a seed missed the target)."""

    cond: seeds.Condition
    steps: dict  # seed -> steps or None

    @property
    def lr(self) -> float:
        return float(self.cond.first.lr)

    @property
    def n_reached(self) -> int:
        return sum(v is not None for v in self.steps.values())


@dataclasses.dataclass
class BatchPoint:
    """One batch size: every η tried, the best one, and its counts over seeds (Estimates)."""

    batch_size: int
    candidates: list[Candidate]
    best: Candidate | None  # None: no η reached the target with any seed
    counts: dict[str, stats.Estimate | None]  # COUNTS -> mean over the best η's seeds that reached it

    @property
    def reached(self) -> bool:
        return self.best is not None


@dataclasses.dataclass(frozen=True)
class Fit:
    """S_min · (1 + B_crit/S) fitted on log steps; intervals from the bootstrap over seeds (None without one)."""

    s_min: float
    b_crit: float
    b_crit_lo: float | None
    b_crit_hi: float | None
    s_min_lo: float | None
    s_min_hi: float | None
    resamples: int
    rms_log: float  # root-mean-square residual of log steps

    def steps(self, s) -> np.ndarray:
        return self.s_min * (1.0 + self.b_crit / np.asarray(s, dtype=float))


@dataclasses.dataclass(frozen=True)
class NoiseScale:
    """B_simple along training: the median of every measurement, the quartiles, how many runs and values."""

    median: float
    q1: float
    q3: float
    lo: float
    hi: float
    n_values: int
    n_runs: int


@dataclasses.dataclass
class CriticalBatch:
    points: list[BatchPoint]
    fit: Fit | None
    noise: NoiseScale | None
    target: str  # "train_loss ≤ 0.3"

    @property
    def agreement(self) -> str | None:
        """Whether the measured B_crit (its interval) and B_simple (its quartiles) overlap, in words."""
        if self.fit is None or self.noise is None or self.fit.b_crit_lo is None:
            return None
        overlap = self.fit.b_crit_lo <= self.noise.q3 and self.noise.q1 <= self.fit.b_crit_hi
        return "agree" if overlap else "disagree"


# ---------------------------------------------------------------------------------- selection
def _best(candidates: list[Candidate], pick=None) -> Candidate | None:
    """The η whose seeds reached the target most often, then in the fewest steps on average."""
    scored = []
    for c in candidates:
        values = [c.steps[k] for k in (pick(c) if pick else c.steps)]
        got = [v for v in values if v is not None]
        if got:
            scored.append((-len(got) / len(values), float(np.mean(np.log(got))), c.lr, c))
    return min(scored, key=lambda t: t[:3])[3] if scored else None


def batch_points(runs: Sequence[Run]) -> list[BatchPoint]:
    by_s: dict[int, list[Run]] = {}
    for r in target_runs(runs):
        by_s.setdefault(int(r.batch_size), []).append(r)
    points = []
    for s in sorted(by_s):
        candidates = []
        for cond in seeds.conditions(by_s[s]):
            keys = cond.seeds if len(set(cond.seeds)) == cond.n else [r.run_id for r in cond.runs]
            candidates.append(Candidate(cond, {k: count(r, "steps_to_target") if reached(r) else None
                                               for k, r in zip(keys, cond.runs)}))
        candidates.sort(key=lambda c: c.lr)
        best = _best(candidates)
        counts = {key: best.cond.estimate(lambda r, key=key: count(r, key) if reached(r) else None) if best else None
                  for key in COUNTS}
        points.append(BatchPoint(s, candidates, best, counts))
    return points


# ---------------------------------------------------------------------------------- the fit
def fit_critical(batch_sizes: Sequence[float], steps: Sequence[float]) -> tuple[float, float, float]:
    """(S_min, B_crit, rms residual) of log steps = log S_min + log(1 + B_crit/S), least squares.

    B_crit is searched on a log grid over [S_lo/1000, 1000·S_hi] then refined by a bounded 1-D search;
    for a fixed B_crit the best log S_min is the mean residual, so the fit is exact and deterministic.
    """
    from scipy.optimize import minimize_scalar

    s = np.asarray(batch_sizes, dtype=float)
    y = np.log(np.asarray(steps, dtype=float))
    if len(s) < 2 or len(set(s.tolist())) < 2:
        raise ValueError("the fit needs steps to target at two batch sizes or more")

    def loss(log_b: float) -> float:
        r = y - np.log1p(np.exp(log_b) / s)
        return float(np.sum((r - r.mean()) ** 2))

    lo, hi = math.log(s.min() / 1000), math.log(s.max() * 1000)
    grid = np.linspace(lo, hi, 121)
    r = y - np.log1p(np.exp(grid)[:, None] / s)  # loss() at every grid point at once
    i = int(np.argmin(np.sum((r - r.mean(axis=1, keepdims=True)) ** 2, axis=1)))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    log_b = float(minimize_scalar(loss, bounds=(a, b), method="bounded", options={"xatol": 1e-10}).x)
    r = y - np.log1p(math.exp(log_b) / s)
    return float(math.exp(r.mean())), float(math.exp(log_b)), float(math.sqrt(np.mean((r - r.mean()) ** 2)))


def _bootstrap(points: list[BatchPoint], resamples: int, seed: int) -> tuple[list[float], list[float]]:
    """B_crit and S_min of refits with every condition's seeds redrawn and the best η chosen again."""
    rng = np.random.default_rng(seed)
    b_values, s_values = [], []
    for _ in range(resamples):
        xs, ys = [], []
        for p in points:
            keys = list(dict.fromkeys(k for c in p.candidates for k in c.steps))
            drawn = [keys[i] for i in rng.integers(0, len(keys), len(keys))]
            best = _best([c for c in p.candidates if set(drawn) <= set(c.steps)], pick=lambda c: drawn)
            got = [best.steps[k] for k in drawn if best is not None and best.steps[k] is not None]
            if got:
                xs.append(p.batch_size)
                ys.append(math.exp(np.mean(np.log(got))))
        if len(set(xs)) >= 2:
            s_min, b_crit, _ = fit_critical(xs, ys)
            b_values.append(b_crit)
            s_values.append(s_min)
    return b_values, s_values


def fit_points(points: list[BatchPoint], resamples: int = 1000, seed: int = stats.SEED) -> Fit | None:
    """The fit on the best η per S (geometric seed mean of its steps), with its bootstrap interval."""
    used = [p for p in points if p.reached]
    if len({p.batch_size for p in used}) < 2:
        return None
    xs = [p.batch_size for p in used]
    ys = [math.exp(np.mean(np.log([v for v in p.best.steps.values() if v is not None]))) for p in used]
    s_min, b_crit, rms = fit_critical(xs, ys)
    n_seeds = max(len(c.steps) for p in used for c in p.candidates)
    if n_seeds < 2:
        return Fit(s_min, b_crit, None, None, None, None, 0, rms)
    b_values, s_values = _bootstrap(used, resamples, seed)
    alpha = stats.expanded_alpha(n_seeds)
    b_lo, b_hi = np.quantile(np.log(b_values), [alpha, 1 - alpha])  # expanded percentiles (stats.mean_ci's)
    s_lo, s_hi = np.quantile(np.log(s_values), [alpha, 1 - alpha])
    return Fit(s_min, b_crit, float(math.exp(b_lo)), float(math.exp(b_hi)), float(math.exp(s_lo)),
               float(math.exp(s_hi)), len(b_values), rms)


# ---------------------------------------------------------------------------------- the prediction
def noise_scale(runs: Sequence[Run]) -> NoiseScale | None:
    """B_simple (the noise monitor's unbiased ``b_simple``) over every measurement of every run."""
    values, n_runs = [], 0
    for r in runs:
        got = [float(e["b_simple"]) for e in r.events if e.get("kind") == "noise" and _number(e.get("b_simple"))]
        values += got
        n_runs += bool(got)
    if not values:
        return None
    v = np.asarray(values)
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    return NoiseScale(float(med), float(q1), float(q3), float(v.min()), float(v.max()), len(v), n_runs)


def target_text(runs: Sequence[Run]) -> str:
    """The target the runs were trained to, e.g. ``train_loss ≤ 0.3`` (the first run's config)."""
    for r in runs:
        until = r.spec.until if r.spec is not None else None
        if until is not None:
            return f"{until.metric} {'≥' if until.metric.endswith('accuracy') else '≤'} {until.value:g}"
    return "the target"


def critical_batch(runs: Sequence[Run], resamples: int = 1000) -> CriticalBatch:
    points = batch_points(runs)
    return CriticalBatch(points, fit_points(points, resamples), noise_scale(runs), target_text(runs))
