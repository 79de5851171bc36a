"""Statistics over seeds: bootstrap intervals, permutation tests, Spearman ρ with an interval.

A sweep repeats each condition (a config up to its ``seed``) a handful of times, so the report
needs statistics that assume no distribution of the outcome and stay honest with 2–5 seeds:

- **Intervals** are *expanded* percentile bootstraps (Hesterberg 2015, "What teachers should know
  about the bootstrap", The American Statistician 69(4)). The plain percentile bootstrap is too
  narrow for small n, because the bootstrap standard error is √((n−1)/n) of the usual one and it
  uses normal instead of t quantiles; the expansion takes the bootstrap percentiles at
  α' = Φ(−√(n/(n−1)) · t_{α/2, n−1}) instead of α/2. With up to 5 seeds that is (nearly) the seeds'
  min–max, which is the most a handful of seeds can say: no resampling of n values reaches outside
  their range, and the range covers the mean of a symmetric distribution only with probability
  1 − 2^(1−n) (:func:`range_coverage`: 50 % with 2 seeds, 75 % with 3). The report says so next to
  such intervals; with many seeds the interval is the usual percentile one.
- **Tests** are exact permutation tests where the permutations can be enumerated (sign flips of
  paired differences, splits of two groups, orderings of a rank correlation), random ones beyond.
- Everything is deterministic: the resampling generator has a fixed seed, so a report built twice
  states the same intervals.

numpy and scipy only; no plotting, no run files.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

LEVEL = 0.95
ALPHA = 1.0 - LEVEL  # a difference is "beyond seed noise" only when the exact test also has p < ALPHA
RESAMPLES = 4000
PERMUTATIONS = 20000  # random permutations when exact enumeration would need more than this
SEED = 0


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The mean of a metric over ``n`` seeds and its bootstrap interval (None when n < 2)."""

    mean: float
    n: int
    lo: float | None
    hi: float | None
    values: tuple[float, ...]

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def spread(self) -> float:
        """max − min over the seeds."""
        return float(max(self.values) - min(self.values))


@dataclasses.dataclass(frozen=True)
class Difference:
    """mean(a) − mean(b) with its bootstrap interval and a permutation p-value.

    ``within_noise`` is True when the interval contains 0 (the comparison cannot tell the two
    apart from seed noise), False when it excludes 0, None when there is no interval.
    ``min_pvalue`` is the smallest p the permutation test can give with these sizes (2/2ⁿ for n
    paired seeds): an interval that excludes 0 while p cannot fall below :data:`ALPHA` means too
    few seeds to tell, not a difference.
    """

    diff: float
    lo: float | None
    hi: float | None
    pvalue: float | None
    paired: bool
    n_a: int
    n_b: int
    test: str
    min_pvalue: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def within_noise(self) -> bool | None:
        if not self.has_interval:
            return None
        return bool(self.lo <= 0.0 <= self.hi)

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 and the exact test agrees (p < ALPHA): a difference beyond seed noise."""
        return self.within_noise is False and self.pvalue is not None and self.pvalue < ALPHA


@dataclasses.dataclass(frozen=True)
class RankCorrelation:
    """Spearman's ρ over ``n`` points (conditions), its p-value and a seed-bootstrap interval.

    ``seeds`` is the largest number of seeds behind one point; with one seed everywhere there is
    no interval (``lo``/``hi`` None). ``exact`` says whether the p-value enumerates every ordering.
    """

    rho: float
    pvalue: float
    n: int
    lo: float | None = None
    hi: float | None = None
    seeds: int = 1
    exact: bool = False

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None


def _finite_array(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


@functools.lru_cache(maxsize=1024)  # scipy's distributions cost ~0.2 ms a call; reports ask thousands of times
def expanded_alpha(n: int, level: float = LEVEL, factor: float | None = None, df: float | None = None) -> float:
    """The lower percentile (as a fraction) of the expanded percentile interval.

    One sample: ``factor`` = √(n/(n−1)) and ``df`` = n − 1 (Hesterberg 2015). Two samples pass
    their own ``factor`` (usual over bootstrap standard error) and Welch's ``df``.
    """
    from scipy.stats import norm, t

    factor = math.sqrt(n / (n - 1)) if factor is None else factor
    df = n - 1 if df is None else df
    return float(norm.cdf(-factor * t.ppf(0.5 + level / 2, df)))


def range_coverage(n: int) -> float:
    """How often the min–max of ``n`` draws covers the median of a continuous distribution: 1 − 2^(1−n)."""
    return 1.0 - 2.0 ** (1 - n)


def _percentiles(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha], method="linear")
    return float(lo), float(hi)


def mean_ci(values: Sequence[float], *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> Estimate:
    """The mean and its expanded percentile bootstrap interval; no interval from fewer than 2 values.

    Non-finite values (a diverged seed) are left out; raises ValueError when none is left.
    """
    x = _finite_array(values)
    if not len(x):
        raise ValueError("mean_ci needs at least one finite value")
    mean = float(x.mean())
    if len(x) < 2:
        return Estimate(mean, 1, None, None, tuple(x.tolist()))
    if np.ptp(x) == 0:
        return Estimate(mean, len(x), mean, mean, tuple(x.tolist()))
    rng = np.random.default_rng(seed)
    boot = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = _percentiles(boot, expanded_alpha(len(x), level))
    return Estimate(mean, len(x), lo, hi, tuple(x.tolist()))


def compare_means(a: Sequence[float] | Mapping, b: Sequence[float] | Mapping, *, level: float = LEVEL,
                  resamples: int = RESAMPLES, seed: int = SEED) -> Difference:
    """mean(a) − mean(b): paired over seeds when both are {seed: value} with the same ≥ 2 seeds, else unpaired.

    Paired: the expanded bootstrap interval of the mean per-seed difference, and an exact sign-flip
    permutation test (equal seeds share the initial weights and the data order, so pairing removes
    that shared part of the noise). Unpaired: each group resampled on its own, the interval
    expanded with Welch's degrees of freedom, and a permutation test over the splits of the pooled
    values. With one value on a side there is no interval and no test.
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        common = sorted(set(a) & set(b))
        va = [a[k] for k in common]
        vb = [b[k] for k in common]
        pairs = [(x, y) for x, y in zip(va, vb) if _finite(x) and _finite(y)]
        if set(a) == set(b) and len(pairs) >= 2:
            return _paired(np.array(pairs, dtype=float), level, resamples, seed)
        a, b = list(a.values()), list(b.values())
    return _unpaired(_finite_array(list(a)), _finite_array(list(b)), level, resamples, seed)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _paired(pairs: np.ndarray, level: float, resamples: int, seed: int) -> Difference:
    d = pairs[:, 0] - pairs[:, 1]
    est = mean_ci(d, level=level, resamples=resamples, seed=seed)
    n = len(d)
    test = f"paired over {n} seeds: bootstrap of the mean difference, sign-flip permutation test"
    floor = 2.0 / 2**n if n <= 14 else 1.0 / PERMUTATIONS
    return Difference(est.mean, est.lo, est.hi, sign_flip_pvalue(d, seed=seed), True, n, n, test, floor)


def sign_flip_pvalue(d: np.ndarray, *, seed: int = SEED) -> float:
    """Two-sided p of mean(d) = 0 by flipping the signs of the differences (exact up to 2^14 patterns)."""
    d = np.asarray(d, dtype=float)
    observed = abs(d.mean())
    n = len(d)
    if n <= 14:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(PERMUTATIONS, n))
    stats = np.abs((signs * d).mean(axis=1))
    return float(np.mean(stats >= observed - 1e-12 * max(1.0, observed)))


def _unpaired(a: np.ndarray, b: np.ndarray, level: float, resamples: int, seed: int) -> Difference:
    if not len(a) or not len(b):
        raise ValueError("compare_means needs at least one finite value on each side")
    diff = float(a.mean() - b.mean())
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        test = f"no interval: {min(na, nb)} seed on one side"
        return Difference(diff, None, None, None, False, na, nb, test)
    test = f"unpaired ({na} vs {nb} values): bootstrap of the difference of means, permutation test"
    pvalue = split_pvalue(a, b, seed=seed)
    splits = math.comb(na + nb, na)
    floor = (2.0 if na == nb else 1.0) / splits if splits <= PERMUTATIONS else 1.0 / PERMUTATIONS
    va, vb = a.var(ddof=1), b.var(ddof=1)
    if va == 0 and vb == 0:
        return Difference(diff, diff, diff, pvalue, False, na, nb, test, floor)
    rng = np.random.default_rng(seed)
    boot = (a[rng.integers(0, na, size=(resamples, na))].mean(axis=1)
            - b[rng.integers(0, nb, size=(resamples, nb))].mean(axis=1))
    usual = va / na + vb / nb
    plug_in = va * (na - 1) / na**2 + vb * (nb - 1) / nb**2  # what the bootstrap's spread estimates
    welch_df = usual**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    alpha = expanded_alpha(na + nb, level, factor=math.sqrt(usual / plug_in), df=welch_df)
    lo, hi = _percentiles(boot, alpha)
    return Difference(diff, lo, hi, pvalue, False, na, nb, test, floor)


def split_pvalue(a: np.ndarray, b: np.ndarray, *, seed: int = SEED) -> float:
    """Two-sided permutation p of mean(a) = mean(b) over the splits of the pooled values (exact up to 20000)."""
    pooled = np.concatenate([a, b])
    n, na = len(pooled), len(a)
    observed = abs(a.mean() - b.mean())
    if math.comb(n, na) <= PERMUTATIONS:
        masks = np.zeros((math.comb(n, na), n), dtype=bool)
        for i, idx in enumerate(itertools.combinations(range(n), na)):
            masks[i, list(idx)] = True
    else:
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((PERMUTATIONS, n)), axis=1)
        masks = np.zeros((PERMUTATIONS, n), dtype=bool)
        np.put_along_axis(masks, order[:, :na], True, axis=1)
    sum_a = (masks * pooled).sum(axis=1)
    stats = np.abs(sum_a / na - (pooled.sum() - sum_a) / (n - na))
    return float(np.mean(stats >= observed - 1e-12 * max(1.0, observed)))


# ------------------------------------------------------------------------------------ ranks
EXACT_RANKS = 8  # up to 8! = 40320 orderings: exact permutation p-value


def _ranks(y: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(y, axis=-1)


@functools.lru_cache(maxsize=EXACT_RANKS)
def _orderings(n: int) -> np.ndarray:
    """Every ordering of ``range(n)``, one a row (8! = 40,320 rows: built once, not at every ρ)."""
    orderings = np.array(list(itertools.permutations(range(n))))
    orderings.flags.writeable = False
    return orderings


def _pearson_rows(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``rx`` (1-D) with every row of ``ry``; NaN for constant rows."""
    cx = rx - rx.mean()
    cy = ry - ry.mean(axis=-1, keepdims=True)
    denom = np.sqrt((cx**2).sum() * (cy**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (cy * cx).sum(axis=-1) / np.where(denom > 0, denom, 1.0), np.nan)


def spearman(x: Sequence[float], y: Sequence[float]) -> RankCorrelation | None:
    """Spearman's ρ over the pairs where both are finite; None with fewer than 2 or a constant side.

    The p-value is exact (every ordering of y enumerated) up to 8 points, scipy's t approximation beyond.
    """
    pairs = [(a, b) for a, b in zip(x, y) if _finite(a) and _finite(b)]
    if len(pairs) < 2:
        return None
    xs, ys = (np.array(v, dtype=float) for v in zip(*pairs))
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    rho = float(_pearson_rows(rx, ry))
    n = len(xs)
    if n <= EXACT_RANKS:
        perms = ry[_orderings(n)]
        stats = np.abs(_pearson_rows(rx, perms))
        return RankCorrelation(rho, float(np.mean(stats >= abs(rho) - 1e-12)), n, exact=True)
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spearmanr(xs, ys)
    return RankCorrelation(rho, float(res.pvalue), n)


def spearman_over_conditions(x: Sequence[float], groups: Sequence[Sequence[float]], *, level: float = LEVEL,
                             resamples: int = RESAMPLES, seed: int = SEED) -> RankCorrelation | None:
    """ρ between ``x`` and each condition's mean over its seeds (``groups``), with a seed-bootstrap interval.

    The interval resamples the seeds within every condition (a condition with one seed stays fixed),
    recomputes the means and ρ, and takes the percentile interval: how much ρ depends on which
    seeds were drawn. Without a condition of two or more seeds there is no interval.
    """
    points = [(xi, _finite_array(g)) for xi, g in zip(x, groups) if _finite(xi)]
    points = [(xi, g) for xi, g in points if len(g)]
    base = spearman([xi for xi, _ in points], [float(g.mean()) for _, g in points])
    if base is None:
        return None
    seeds = max(len(g) for _, g in points)
    if seeds < 2:
        return base
    rng = np.random.default_rng(seed)
    means = np.column_stack([g[rng.integers(0, len(g), size=(resamples, len(g)))].mean(axis=1) for _, g in points])
    rx = _ranks(np.array([xi for xi, _ in points]))
    rhos = _pearson_rows(rx, _ranks(means))
    rhos = rhos[np.isfinite(rhos)]
    if len(rhos) < resamples // 2:  # most resamples tie every condition: no meaningful interval
        return dataclasses.replace(base, seeds=seeds)
    lo, hi = _percentiles(rhos, (1.0 - level) / 2)
    return dataclasses.replace(base, lo=lo, hi=hi, seeds=seeds)
