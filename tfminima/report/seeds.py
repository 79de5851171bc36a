"""Runs that differ only in their seed form a *condition*; its numbers are means over seeds with intervals.

A sweep's ``seeds:`` axis repeats every point of the grid (run ids ``...-s0``, ``...-s1``); the
report groups by the resolved config without its ``seed`` (never by id text), so the tables can
state a mean, an interval and n, and the figures a mean curve with a band. Comparisons between
conditions carry the test that decided them (:mod:`tfminima.report.stats`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable

import numpy as np

from tfminima.report import stats
from tfminima.report.loading import Run, Series, changes_training, differing_keys, key_text


@dataclasses.dataclass
class Condition:
    """The runs of one config up to the seed, in seed order."""

    key: str
    runs: list[Run]

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def name(self) -> str:
        """The label when the sweep named the runs (with the keys that tell it apart where another condition
        shares it: ``b1 N=1000``), else the common run id without its ``-s<seed>`` tail."""
        first = self.first
        if first.label:
            return first.display_label
        stems = {_without_seed(r) for r in self.runs}
        return stems.pop() if len(stems) == 1 else first.run_id

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def eta_over_s(self) -> float | None:
        return self.first.eta_over_s

    def values(self, get: Callable[[Run], float | None]) -> dict:
        """{seed (or run id when seeds repeat): value} for the runs where ``get`` gives a finite number."""
        keys = self.seeds if len(set(self.seeds)) == len(self.runs) else [r.run_id for r in self.runs]
        out = {}
        for k, r in zip(keys, self.runs):
            v = get(r)
            if _finite(v):
                out[k] = float(v)
        return out

    def final(self, metric: str) -> dict:
        return self.values(lambda r: r.final(metric))

    def estimate(self, get: Callable[[Run], float | None] | str) -> stats.Estimate | None:
        """Mean over seeds with its interval; ``get`` is a metric name or a function of a run."""
        values = self.final(get) if isinstance(get, str) else self.values(get)
        return stats.mean_ci(list(values.values())) if values else None


def _without_seed(run: Run) -> str:
    if run.seed is None:
        return run.run_id
    return re.sub(rf"-s{run.seed}$", "", run.run_id)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def conditions(runs: Iterable[Run]) -> list[Condition]:
    """Runs grouped by config up to the seed, in the order their first run appears."""
    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.condition_key, []).append(run)
    return [Condition(key, sorted(members, key=lambda r: (r.seed is None, r.seed or 0, r.run_id)))
            for key, members in by_key.items()]


# Config keys (and key prefixes) that set the noise scale or its course in time (η, S, β, SVAG's l, the
# schedules): conditions that differ only in these (and in keys that do not change training) are compared.
NOISE_SCALE_KEYS = ("optimizer.lr", "optimizer.batch_size", "optimizer.momentum", "optimizer.nesterov",
                    "optimizer.svag", "lr_schedule", "batch_size_schedule", "schedule_conversion")


def _sets_the_noise_scale(key: str) -> bool:
    return not changes_training(key) or any(key == k or key.startswith(f"{k}.") for k in NOISE_SCALE_KEYS)


def strata(conds: list[Condition]) -> list[tuple[str, list[Condition]]]:
    """The conditions split by the values of every other key they differ in (E4: the label noise), named
    ``noise=25%``: comparisons across η/S are made within one stratum, never between runs that also differ
    in what they train on. One unnamed stratum when nothing else differs."""
    keys = [k for k in differing_keys([c.first for c in conds]) if not _sets_the_noise_scale(k)]
    if not keys:
        return [("", list(conds))]
    out: dict[str, list[Condition]] = {}
    for c in conds:
        items = c.first.config_items()
        out.setdefault(" ".join(key_text(k, items.get(k)) for k in keys), []).append(c)
    return list(out.items())


def condition_of(runs: list[Run]) -> dict[str, Condition]:
    """run id -> its condition."""
    return {r.run_id: c for c in conditions(runs) for r in c.runs}


def max_seeds(conds: Iterable[Condition]) -> int:
    return max((c.n for c in conds), default=0)


@dataclasses.dataclass
class MeanCurve:
    """A condition's curve: the mean over seeds at each epoch, the seeds' min and max, and how many."""

    epochs: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.epochs)

    def as_series(self) -> Series:
        return Series(self.epochs, self.mean)


def mean_curve(cond: Condition, kind: str, key: str, split: str | None = None) -> MeanCurve:
    """Per epoch, the mean over the seeds that logged it (a seed still running contributes what it has)."""
    curves = [r.series(kind, key, split) for r in cond.runs]
    curves = [c for c in curves if len(c)]
    if not curves:
        empty = np.zeros(0)
        return MeanCurve(empty, empty, empty, empty, np.zeros(0, dtype=int))
    epochs = np.unique(np.concatenate([c.epochs for c in curves]))
    grid = np.full((len(curves), len(epochs)), np.nan)
    for i, c in enumerate(curves):
        grid[i, np.searchsorted(epochs, c.epochs)] = c.values
    finite = np.isfinite(grid)
    count = finite.sum(axis=0)
    keep = count > 0
    grid, epochs, count = grid[:, keep], epochs[keep], count[keep]
    return MeanCurve(epochs, np.nanmean(grid, axis=0), np.nanmin(grid, axis=0), np.nanmax(grid, axis=0), count)


# ----------------------------------------------------------------------------- comparisons
@dataclasses.dataclass
class Comparison:
    """One statement the report makes about two sets of runs, with the test that decides it."""

    claim: str  # what is compared, e.g. "equal η/S agree"
    a: str
    b: str
    metric: str
    diff: stats.Difference

    @property
    def verdict(self) -> str:
        """Within seed noise (the interval contains 0), beyond it (the interval excludes 0 and the exact
        test has p < 0.05), or too few seeds to tell (the interval excludes 0, the test cannot agree)."""
        d = self.diff
        if d.within_noise is None:
            return "no interval (one seed on a side): seed noise unknown"
        if d.within_noise:
            return "within seed noise"
        if d.resolved:
            return "beyond seed noise"
        return (f"too few seeds to tell (interval excludes 0, but p = {d.pvalue:.2g}; "
                f"with these sizes p ≥ {d.min_pvalue:.2g})")


def compare_conditions(claim: str, a: Condition, b: Condition, metric: str,
                       get: Callable[[Run], float | None] | None = None) -> Comparison | None:
    """``a`` against ``b`` on a final metric (or ``get``): paired by seed when both ran the same seeds."""
    get = get or (lambda r: r.final(metric))
    va, vb = a.values(get), b.values(get)
    if not va or not vb:
        return None
    return Comparison(claim, a.name, b.name, metric, stats.compare_means(va, vb))


def compare_runs(claim: str, name_a: str, runs_a: list[Run], name_b: str, runs_b: list[Run], metric: str,
                 get: Callable[[Run], float | None] | None = None) -> Comparison | None:
    """Two sets of runs (e.g. η/S families, every seed of every condition in them) compared unpaired."""
    get = get or (lambda r: r.final(metric))
    va = [v for v in (get(r) for r in runs_a) if _finite(v)]
    vb = [v for v in (get(r) for r in runs_b) if _finite(v)]
    if not va or not vb:
        return None
    return Comparison(claim, name_a, name_b, metric, stats.compare_means(va, vb))


def rank_correlation(conds: list[Condition], x: Callable[[Condition], float | None],
                     get: Callable[[Run], float | None] | str) -> stats.RankCorrelation | None:
    """Spearman ρ of each condition's mean over seeds against ``x``, with the seed-resampling interval."""
    xs, groups = [], []
    for c in conds:
        values = c.final(get) if isinstance(get, str) else c.values(get)
        if values and _finite(x(c)):
            xs.append(float(x(c)))
            groups.append(list(values.values()))
    return stats.spearman_over_conditions(xs, groups)
