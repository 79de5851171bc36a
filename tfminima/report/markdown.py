"""Markdown building blocks of the report: number formats and the tables every section shares.

Accuracies print as percentages with two decimals, gaps between accuracies in percentage
points (pp), correlations with two decimals. A mean over seeds prints with its 95 % bootstrap
interval and n (``54.20 [52.10, 56.30] (n=3)``), a single seed as its value and ``(n=1)``.
Section texts are in :mod:`markdown_sections` and :mod:`markdown_sharpness`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

from tfminima import formats
from tfminima.report import numbers, seeds, sharpness, stats
from tfminima.report.loading import Group, Run

DASH = "—"
ACCURACIES = {"val_accuracy", "test_accuracy", "train_accuracy", "best_val_accuracy", "noisy_accuracy"}
METRIC_NAMES = {"val_accuracy": "final val accuracy", "test_accuracy": "test accuracy", "train_loss": "final train loss",
                "train_accuracy": "final train accuracy", "best_val_accuracy": "best val accuracy",
                "lambda_max": "λ_max", "trace": "Tr(H)", "noisy_accuracy": "final memorisation",
                "stability": "stability λ_max·η/(2(1+β))", "train_rise": "train-loss rise", "val_rise": "val-loss rise"}


# ------------------------------------------------------------------------------ formatting
def ratio(value: float | None) -> str:
    """A noise scale (η/S, η/(S(1−β))) as the CLI and the TUI write it: ``1.25e-3``."""
    return DASH if not _ok(value) else formats.eta_over_s(value)


def pct(value: float | None) -> str:
    """A fraction in [0, 1] as a percentage, ``87.25``."""
    return DASH if not _ok(value) else f"{value * 100:.2f}"


def num(value: float | None, digits: int = 4) -> str:
    return DASH if not _ok(value) else f"{value:.{digits}g}"


def rho(corr: numbers.Correlation | None) -> str:
    return "n/a" if corr is None else f"{corr.rho:.2f}"


def epoch(value: float) -> str:
    return f"{value:g}"


def _ok(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A GitHub-flavoured markdown table (``|`` inside cells escaped)."""
    clean = lambda c: str(c).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(clean(c) for c in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def image(path: str, alt: str) -> str:
    return f"![{alt}]({path})\n"


def value_format(metric: str) -> Callable[[float | None], str]:
    return pct if metric in ACCURACIES else num


def estimate(est: stats.Estimate | None, fmt: Callable[[float | None], str] = num) -> str:
    """``mean [lo, hi] (n=k)``; one value: the value alone (the group's seed note says there is no interval)."""
    if est is None:
        return DASH
    if not est.has_interval:
        return fmt(est.mean)
    return f"{fmt(est.mean)} [{fmt(est.lo)}, {fmt(est.hi)}] (n={est.n})"


def difference(d: stats.Difference, metric: str) -> str:
    """mean(A) − mean(B) with its interval; accuracies in percentage points."""
    scale, unit, fmt = (100.0, " pp", "+.2f") if metric in ACCURACIES else (1.0, "", "+.4g")
    text = f"{d.diff * scale:{fmt}}{unit}"
    if d.has_interval:
        text += f" [{d.lo * scale:{fmt}}, {d.hi * scale:{fmt}}]"
    return text


def correlation(corr: stats.RankCorrelation | None) -> str:
    """``ρ [lo, hi]``; without seeds to resample, ρ alone."""
    if corr is None:
        return "n/a"
    if corr.has_interval:
        return f"{corr.rho:.2f} [{corr.lo:.2f}, {corr.hi:.2f}]"
    return f"{corr.rho:.2f}"


def pvalue(corr_or_diff) -> str:
    p = getattr(corr_or_diff, "pvalue", None)
    return DASH if p is None else f"{p:.2g}"


# -------------------------------------------------------------------------- seeds and tests
def seed_note(conds: list[seeds.Condition]) -> str:
    """How the group's numbers aggregate seeds, and what the intervals can promise."""
    if not conds:
        return ""
    most = seeds.max_seeds(conds)
    if most < 2:
        return (f"One seed per condition ({len(conds)} conditions): the numbers are single runs, with no interval "
                "over seeds. Comparisons between η/S values resample the runs that share an η/S instead.\n")
    small = sorted({c.n for c in conds if 2 <= c.n <= 5})
    text = (f"Seeds: {len(conds)} conditions (runs whose configs differ only in `seed`), up to {most} seeds each. "
            "Tables give the mean over seeds, [a 95 % bootstrap interval over seeds] (expanded percentile, "
            "Hesterberg 2015) and n; figures draw the mean.")
    if small:
        cover = ", ".join(f"{stats.range_coverage(n):.1%} with {n}" for n in small)
        text += (f" With n ≤ 5 seeds the interval is (close to) the seeds' range, which covers the true mean only "
                 f"with probability 1 − 2^(1−n) ({cover}): more seeds, not a different method, narrow it.")
    return text + "\n"


def comparisons_table(comparisons: list[seeds.Comparison]) -> str:
    """Every comparison with its difference, interval, test, p-value and verdict."""
    rows = [[c.claim, f"`{c.a}`", f"`{c.b}`", METRIC_NAMES.get(c.metric, c.metric), difference(c.diff, c.metric),
             c.diff.test, pvalue(c.diff), f"**{c.verdict}**"] for c in comparisons if c is not None]
    if not rows:
        return ""
    return table(["comparison", "A", "B", "metric", "A − B [95 % CI]", "test", "p", "verdict"], rows)


CONDITION_METRICS = ("train_loss", "val_accuracy", "test_accuracy", "lambda_max", "trace")


def conditions_table(conds: list[seeds.Condition]) -> str:
    """Per condition, each end metric's mean over seeds with its interval, and the end stability."""
    metrics = [m for m in CONDITION_METRICS if any(c.final(m) for c in conds)]
    header = ["condition", "η/S", "seeds"] + [METRIC_NAMES[m] for m in metrics]
    with_stability = "lambda_max" in metrics
    header += ["stability at the end"] if with_stability else []
    rows = []
    for c in conds:
        row = [f"`{c.name}`", ratio(c.eta_over_s), ", ".join(str(s) for s in c.seeds)]
        row += [estimate(c.estimate(m), value_format(m)) for m in metrics]
        if with_stability:
            row.append(estimate(c.estimate(sharpness.final_stability), lambda v: num(v, 3)))
        rows.append(row)
    return table(header, rows)


# ------------------------------------------------------------------------------ runs table
def runs_table(group: Group) -> str:
    """Every run of the group, drawn or not, with its state; errors listed under the table."""
    with_noisy = any(r.final("noisy_accuracy") is not None for r in group.runs)
    with_sharp = any(r.final("lambda_max") is not None for r in group.runs)
    header = ["run", "η", "S", "β", "η/S", "epochs", "train acc (%)", "val acc (%)", "test acc (%)", "λ_max", "Tr(H)"]
    header += ["stability"] if with_sharp else []
    header += ["noisy acc (%)"] if with_noisy else []
    header += ["state"]
    rows = []
    for r in group.runs:
        row = [f"`{r.run_id}`", num(r.lr), str(r.batch_size or DASH), num(r.momentum, 3), ratio(r.eta_over_s),
               epoch(r.series("train", "loss").epochs[-1]) if len(r.series("train", "loss")) else "0",
               pct(r.final("train_accuracy")), pct(r.final("val_accuracy")), pct(r.final("test_accuracy")),
               num(r.final("lambda_max")), num(r.final("trace"))]
        row += [num(sharpness.final_stability(r), 3)] if with_sharp else []
        row += [pct(r.final("noisy_accuracy"))] if with_noisy else []
        row += [r.state if r.plotted else f"**{r.state}** (not drawn)"]
        rows.append(row)
    text = table(header, rows)
    if with_sharp:
        text += ("\nstability = λ_max·η/(2(1+β)) at the last sharpness measurement, with that epoch's η: 1 is the "
                 "edge of stability of heavy-ball gradient descent (Cohen et al. 2021), where a step this large "
                 "allows no sharper minimum.\n")
    problems = [r for r in group.runs if r.error]
    if problems:
        text += "\n" + "".join(f"- `{r.run_id}` ({r.state}): {r.error.splitlines()[0][:300]}\n" for r in problems)
    return text


# ------------------------------------------------------------------------------ correlations
SCALE_NAMES = {"eta_over_s": "η/S", "eta_over_s_momentum": "η/(S(1−β))"}


def correlations_text(correlations: dict[tuple[str, str], stats.RankCorrelation | None]) -> str:
    """Spearman ρ of each metric with each noise scale, over conditions, with the seed interval and p."""
    rows = []
    for (metric, scale), corr in correlations.items():
        rows.append([METRIC_NAMES[metric], SCALE_NAMES[scale], correlation(corr), pvalue(corr),
                     DASH if corr is None else str(corr.n), DASH if corr is None else str(corr.seeds)])
    with_ci = any(c is not None and c.has_interval for c in correlations.values())
    text = ("Spearman rank correlation with the noise scale over conditions (completed runs; a condition's value is "
            "its mean over seeds):\n\n"
            + table(["metric", "against", "ρ" + (" [95 % CI]" if with_ci else ""), "p", "conditions", "seeds (most)"],
                    rows))
    notes = ""
    if with_ci:
        notes += "The interval resamples seeds within each condition: how much ρ depends on the seeds drawn. "
    notes += (f"p is exact (every ordering of the conditions enumerated) up to {stats.EXACT_RANKS} conditions, "
              "scipy's t approximation beyond.")
    return text + "\n" + notes + "\n"


# ------------------------------------------------------------------------------ families
def families_text(conds: list[seeds.Condition], metric: str, scale=lambda r: r.eta_over_s,
                  scale_name: str = "η/S") -> str:
    """Per noise-scale value: its conditions, the mean over its runs with an interval, and the spread
    between its conditions (the paper: equal η/S, similar result)."""
    families = family_runs(conds, scale)
    rows = []
    spreads = []
    for key, members in families.items():
        runs = [r for c in members for r in c.runs]
        values = [r.final(metric) for r in runs]
        values = [v for v in values if _ok(v)]
        if not values:
            continue
        est = stats.mean_ci(values)
        means = [e.mean for e in (c.estimate(metric) for c in members) if e is not None]
        spread = max(means) - min(means)
        if len(means) > 1:
            spreads.append(spread)
        fmt = value_format(metric)
        spread_text = f"{spread * 100:.2f}" if metric in ACCURACIES else num(spread)
        rows.append([ratio(key), str(len(members)), str(len(values)), estimate(est, fmt),
                     spread_text if len(means) > 1 else DASH])
    if not rows:
        return ""
    unit = " pp" if metric in ACCURACIES else ""
    text = (f"{METRIC_NAMES[metric].capitalize()} by {scale_name} (conditions with equal {scale_name} pooled; "
            f"the interval resamples their runs):\n\n"
            + table([scale_name, "conditions", "runs", "mean [95 % CI]", "spread of the condition means" + (" (pp)" if unit else "")], rows))
    means = [stats.mean_ci([v for v in (r.final(metric) for c in m for r in c.runs) if _ok(v)]).mean
             for m in families.values() if any(_ok(r.final(metric)) for c in m for r in c.runs)]
    if spreads and len(means) > 1:
        scale_by = 100.0 if metric in ACCURACIES else 1.0
        text += (f"\nMean spread within equal-{scale_name} conditions: {sum(spreads) / len(spreads) * scale_by:.2f}{unit}; "
                 f"range of the per-{scale_name} means: {(max(means) - min(means)) * scale_by:.2f}{unit}.\n")
    return text


def family_runs(conds: list[seeds.Condition], scale=lambda r: r.eta_over_s) -> dict[float, list[seeds.Condition]]:
    """Conditions by their noise scale (up to rounding), ascending."""
    out: dict[float, list[seeds.Condition]] = {}
    for c in conds:
        value = scale(c.first)
        if value is not None:
            out.setdefault(numbers.ratio_key(value), []).append(c)
    return dict(sorted(out.items()))


def family_comparisons(conds: list[seeds.Condition], metric: str, scale=lambda r: r.eta_over_s,
                       scale_name: str = "η/S", limit: int = 12) -> list[seeds.Comparison]:
    """The two claims of E1 on ``metric``: conditions with equal η/S agree (each pair within a family,
    paired by seed), and neighbouring η/S values differ (their runs pooled, unpaired)."""
    families = family_runs(conds, scale)
    out = []
    for key, members in families.items():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                out.append(seeds.compare_conditions(f"equal {scale_name} ({ratio(key)}) agree", a, b, metric))
    out = [c for c in out if c is not None][:limit]
    for lo, hi in itertools.pairwise(families):
        runs_lo = [r for c in families[lo] for r in c.runs]
        runs_hi = [r for c in families[hi] for r in c.runs]
        out.append(seeds.compare_runs(f"{scale_name} {ratio(hi)} differs from {ratio(lo)}", f"{scale_name}={ratio(hi)}",
                                      runs_hi, f"{scale_name}={ratio(lo)}", runs_lo, metric))
    return [c for c in out if c is not None]


# ------------------------------------------------------------------------------ analyses
def analyses_text(runs: list[Run]) -> str:
    """``tfminima analyze`` results: per run and checkpoint, λ_max, top-k, Tr(H) ± s.e., samples, stability."""
    rows = []
    for r in runs:
        for a in r.analyses:
            eig = [v for v in a.get("eigenvalues") or [] if _ok(v)]
            done = a.get("epochs_done")
            edge = sharpness.run_edge(r, done) if _ok(done) else None
            lam = eig[0] if eig else None
            trace = a.get("trace")
            err = a.get("trace_stderr")
            rows.append([f"`{r.run_id}`", DASH if done is None else str(done), num(lam),
                         ", ".join(num(v) for v in eig), f"{num(trace)} ± {num(err, 2)}" if _ok(trace) else DASH,
                         str(a.get("samples", DASH)), num(lam / edge, 3) if lam is not None and edge else DASH,
                         f"`analysis/{a['file']}`"])
    if not rows:
        return ""
    return ("Hessian at a checkpoint, measured after training by `tfminima analyze` (top-k eigenvalues by "
            "Lanczos, Tr(H) by Hutchinson ± its standard error, on a training subset of `samples` examples):\n\n"
            + table(["run", "after epoch", "λ_max", "top-k eigenvalues", "Tr(H) ± s.e.", "samples",
                     "stability λ_max·η/(2(1+β))", "file"], rows))


def warnings_text(warnings: list[str]) -> str:
    """One quoted block, a paragraph per warning."""
    return "\n>\n".join(f"> **Warning:** {w}" for w in warnings) + "\n" if warnings else ""
