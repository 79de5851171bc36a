"""Markdown of every sharpness comparison: at equal training loss, with the stability ratio beside λ_max.

Wherever λ_max or Tr(H) are compared across η/S the text compares them at a common training loss
(or says why it cannot), shows stability = λ_max·η/(2(1+β)) (1 = the edge of stability), and ends
with a verdict on whether the flatter runs are simply held down by that edge.
"""

from __future__ import annotations

import math

import numpy as np

from tfminima.report import paper, phases, seeds, sharpness, stats
from tfminima.report.markdown import (
    DASH,
    comparisons_table,
    correlation,
    estimate,
    family_runs,
    num,
    pct,
    pvalue,
    ratio,
    rho,
    table,
)


def _est(values: list[float], digits: int = 4) -> str:
    """A mean over runs without n (the table states it): ``mean [lo, hi]``, or the value alone."""
    if not values:
        return DASH
    est = stats.mean_ci(values)
    text = estimate(est, lambda v: num(v, digits))
    return text.rsplit(" (n=", 1)[0]


def cap_text(verdict: sharpness.CapVerdict | None, where: str) -> str:
    """Is the effect just the stability cap? Judged on the flatter half of the compared conditions."""
    if verdict is None:
        return ""
    names = ", ".join(f"`{n}`" for n in verdict.flatter)
    lo, hi = min(verdict.stability), max(verdict.stability)
    span = f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}"
    n, at = len(verdict.flatter), verdict.at_edge
    if at == n:
        return (f"\n**Stability cap:** the flatter runs ({names}) sit at the edge of stability {where} (stability "
                f"{span} ≥ {sharpness.AT_EDGE}): a step of η allows no λ_max above 2(1+β)/η, so their flatness may be "
                "that cap, not the noise η/S.\n")
    if at:
        return (f"\n**Partly the stability cap:** {at} of the {n} flatter runs ({names}; stability {span}) sit at the "
                f"edge of stability {where} (≥ {sharpness.AT_EDGE}); the flatness of the others is not forced by their "
                "step size.\n")
    return (f"\n**Not the stability cap:** the flatter runs ({names}) are below the edge of stability {where} "
            f"(stability {span} < {sharpness.AT_EDGE}): their lower λ_max is not forced by their step size.\n")


def _cap_at_level(eq: sharpness.EqualLoss, level: sharpness.LevelComparison) -> sharpness.CapVerdict | None:
    points = {}
    for c in seeds.conditions([p.run for p in eq.paths]):
        lam = [level.lambda_max[r.run_id] for r in c.runs if r.run_id in level.lambda_max]
        stab = [level.stability[r.run_id] for r in c.runs if r.run_id in level.stability]
        if lam and stab:
            points[c.name] = (sum(lam) / len(lam), sum(stab) / len(stab))
    return sharpness.cap_verdict(points)


def _extreme_families(eq: sharpness.EqualLoss, level: sharpness.LevelComparison) -> seeds.Comparison | None:
    """Highest against lowest η/S at one loss level, every run of each family pooled."""
    families = family_runs(seeds.conditions([p.run for p in eq.paths if p.run.run_id in level.lambda_max]))
    if len(families) < 2:
        return None
    items = list(families.items())
    (lo, low), (hi, high) = items[0], items[-1]
    value = lambda r: level.lambda_max.get(r.run_id)
    return seeds.compare_runs(f"η/S {ratio(hi)} flatter than {ratio(lo)} at loss {num(level.level, 3)}",
                              f"η/S={ratio(hi)}", [r for c in high for r in c.runs],
                              f"η/S={ratio(lo)}", [r for c in low for r in c.runs], "lambda_max", value)


def why_not_equal_loss(eq: sharpness.EqualLoss) -> str:
    if not eq.paths:
        return ("**Sharpness is not compared at equal training loss:** no run has a sharpness measurement with a "
                "training loss of the same epoch.\n")
    finals = [float(p.loss[-1]) for p in eq.paths]
    return (f"**Sharpness is not compared at equal training loss:** the runs' training losses at their sharpness "
            f"measurements do not overlap (last measurements at losses {num(min(finals), 3)} – {num(max(finals), 3)}), "
            "so end-point λ_max compares minima at different depths. Measure sharpness along training "
            "(`sharpness: {every: ...}`) or train the runs to similar losses.\n")


def equal_loss_summary(eq: sharpness.EqualLoss, *, table_too: bool = True) -> str:
    """The equal-loss comparison in a paragraph and a small table, for sections that compare end points.

    ``table_too=False`` leaves out the per-condition table (the report's sharpness_vs_loss section has it).
    """
    level = eq.middle
    if level is None or level.n < 2:
        return why_not_equal_loss(eq)
    conds = seeds.conditions([p.run for p in eq.paths if p.run.run_id in level.lambda_max])
    text = (f"**At equal training loss** {num(level.level, 3)} (reached by {level.n} of {len(eq.paths)} runs with "
            f"sharpness measurements): ρ(λ_max, η/S) = {correlation(level.rho_lambda)} (p = {pvalue(level.rho_lambda)}) "
            f"over {len(conds)} conditions.\n\n")
    rows = []
    for c in conds:
        lam = [level.lambda_max[r.run_id] for r in c.runs if r.run_id in level.lambda_max]
        stab = [level.stability[r.run_id] for r in c.runs if r.run_id in level.stability]
        rows.append([f"`{c.name}`", ratio(c.eta_over_s), str(len(lam)), _est(lam), _est(stab, 3)])
    if table_too:
        text += table(["condition", "η/S", "runs", f"λ_max at loss {num(level.level, 3)}", "stability there"], rows)
    else:
        text += "Every level and condition: section *Sharpness at equal training loss*.\n"
    comparison = _extreme_families(eq, level)
    if comparison is not None:
        text += "\n" + comparisons_table([comparison])
    return text + cap_text(_cap_at_level(eq, level), f"at loss {num(level.level, 3)}")


# ----------------------------------------------------------------------- sharpness_vs_loss
def _rho_cell(corr: stats.RankCorrelation | None, n: int) -> str:
    if n < sharpness.MIN_RUNS_FOR_RHO:
        return f"n/a (< {sharpness.MIN_RUNS_FOR_RHO} conditions)"
    return "n/a (no ranking)" if corr is None else correlation(corr)


def sharpness_vs_loss_text(eq: sharpness.EqualLoss) -> str:
    """λ_max per condition at common training-loss levels, ρ(λ_max, η/S) per level, stability, end points beside."""
    paths, levels, comparisons, skipped = eq.paths, eq.levels, eq.comparisons, eq.skipped
    if not paths:
        text = "No sharpness measurements paired with a training loss (add the `sharpness` monitor).\n"
        if skipped:
            text += "\nRuns without sharpness measurements: " + ", ".join(f"`{r.name}`" for r in skipped) + ".\n"
        return text
    out = [("Each run's λ_max is compared at the same training loss (the mean loss over the epoch of the "
            "measurement), interpolated linearly in log λ_max against log loss between its measurements; "
            "a run that crosses a level more than once is taken at its first crossing.\n")]
    if levels.span is None:
        out.append(f"\n**No common training-loss range:** the runs' loss ranges at their sharpness measurements do not "
                   f"overlap, and no loss is reached by {levels.min_runs} or more of the {levels.runs} runs, so they "
                   f"cannot be compared at equal loss. Measure sharpness more often (`sharpness: {{every: ...}}`) or "
                   f"train the runs to similar losses.\n")
    elif levels.common:
        out.append(f"\nAll {levels.runs} runs pass through training losses {num(levels.span[0], 3)} – "
                   f"{num(levels.span[1], 3)}; levels are log-spaced inside that range.\n")
    else:
        out.append(f"\n**The runs' loss ranges have no part in common:** levels are placed where at least "
                   f"{levels.min_runs} of the {levels.runs} runs pass ({num(levels.span[0], 3)} – "
                   f"{num(levels.span[1], 3)}); each level says how many runs reach it.\n")
    conds = seeds.conditions([p.run for p in paths])
    families = family_runs(conds)
    if comparisons:
        with_families = len(families) <= 6
        header = ["training loss", "runs at this loss"]
        header += [f"mean λ_max, η/S={ratio(k)}" for k in families] if with_families else []
        header += ["ρ(λ_max, η/S)", "p", "ρ(Tr(H), η/S)"]
        rows = []
        for c in comparisons:
            row = [num(c.level, 3), f"{c.n} of {len(paths)}"]
            if with_families:
                for members in families.values():
                    vals = [c.lambda_max[r.run_id] for m in members for r in m.runs if r.run_id in c.lambda_max]
                    row.append(DASH if not vals else estimate(stats.mean_ci(vals)))
            n_cond = len(seeds.conditions([p.run for p in paths if p.run.run_id in c.lambda_max]))
            row += [_rho_cell(c.rho_lambda, n_cond), pvalue(c.rho_lambda),
                    _rho_cell(c.rho_trace, len(seeds.conditions([p.run for p in paths if p.run.run_id in c.trace])))]
            rows.append(row)
        out.append("\nAt equal training loss (an η/S column pools every run with that η/S; ρ is over conditions, "
                   "its interval from resampling seeds):\n\n" + table(header, rows))
        few = [c for c in comparisons if len(seeds.conditions([p.run for p in paths if p.run.run_id in c.lambda_max]))
               < sharpness.MIN_RUNS_FOR_RHO]
        if few:
            out.append(f"\nLevels reached by fewer than {sharpness.MIN_RUNS_FOR_RHO} conditions (no correlation): "
                       + ", ".join(num(c.level, 3) for c in few) + ".\n")
    out.append(_per_condition(eq, conds))
    level = eq.middle
    if level is not None and level.n >= 2:
        comparison = _extreme_families(eq, level)
        if comparison is not None:
            out.append("\n" + comparisons_table([comparison]))
        out.append(cap_text(_cap_at_level(eq, level), f"at loss {num(level.level, 3)}"))
    end_conds = [(c, [p for p in paths if p.run in c.runs]) for c in conds]
    end = stats.spearman_over_conditions([c.eta_over_s for c, _ in end_conds],
                                         [[float(p.lambda_max[-1]) for p in ps] for _, ps in end_conds])
    finals = [float(p.loss[-1]) for p in paths]
    out.append(f"\nAt the last measurements, for contrast: ρ(λ_max, η/S) = {rho(end)} over {len(conds)} conditions, "
               f"with training losses from {num(min(finals), 3)} to {num(max(finals), 3)}.\n")
    if skipped:
        out.append("\nNot used (no sharpness measurement with a training loss of the same epoch): "
                   + ", ".join(f"`{r.name}`" for r in skipped) + ".\n")
    return "".join(out)


def _per_condition(eq: sharpness.EqualLoss, conds: list[seeds.Condition]) -> str:
    """Per condition: λ_max at each level (mean over seeds [interval]), stability there, the last measurement."""
    paths = {p.run.run_id: p for p in eq.paths}
    level = eq.middle
    header = ["condition", "η/S", "seeds", "sharpness measurements", "training loss range"]
    header += [f"λ_max at loss {num(c.level, 3)}" for c in eq.comparisons]
    header += [f"stability at loss {num(level.level, 3)}"] if level is not None else []
    header += ["final loss", "final λ_max", "final stability"]
    rows = []
    for c in conds:
        ps = [paths[r.run_id] for r in c.runs if r.run_id in paths]
        lo = min(p.loss_range[0] for p in ps)
        hi = max(p.loss_range[1] for p in ps)
        counts = sorted({len(p.loss) for p in ps})
        row = [f"`{c.name}`", ratio(c.eta_over_s), str(len(ps)), "/".join(str(n) for n in counts),
               num(lo, 3) if num(lo, 3) == num(hi, 3) else f"{num(lo, 3)} – {num(hi, 3)}"]
        row += [_est([lc.lambda_max[p.run.run_id] for p in ps if p.run.run_id in lc.lambda_max])
                for lc in eq.comparisons]
        if level is not None:
            row.append(_est([level.stability[p.run.run_id] for p in ps if p.run.run_id in level.stability], 3))
        row += [_est([float(p.loss[-1]) for p in ps], 3), _est([float(p.lambda_max[-1]) for p in ps]),
                _est([float(p.stability[-1]) for p in ps if p.stability[-1] == p.stability[-1]], 3)]
        rows.append(row)
    return ("\nPer condition (mean over seeds [95 % interval]; — : never reaches that loss between its measurements; "
            "stability = λ_max·η/(2(1+β)), 1 = the edge of stability):\n\n" + table(header, rows))


# -------------------------------------------------------------------- sharpness_trajectory
def sharpness_text(conds: list[seeds.Condition], eq: sharpness.EqualLoss, experiment: str,
                   pairs: list[tuple[seeds.Condition, seeds.Condition]], *, table_too: bool = True) -> str:
    """Final λ_max, its range along training, stability and test accuracy per condition, the paper's
    end points, and the comparisons: at the end, at equal loss, and for each of ``report.pairs``."""
    with_paper = paper.is_experiment(experiment, "e6_cyclic_sharpness")
    conds = [c for c in conds if any(len(r.series("sharpness", "lambda_max")) for r in c.runs)]
    if not conds:
        return "No sharpness measurements (add the `sharpness` monitor).\n"
    rows = []
    for c in conds:
        lams = [r.series("sharpness", "lambda_max") for r in c.runs if len(r.series("sharpness", "lambda_max"))]
        stabs = [sharpness.stability_series(r) for r in c.runs]
        lo = min(float(s.values.min()) for s in lams)
        hi = max(float(s.values.max()) for s in lams)
        peaks = [float(s.values[s.values == s.values].max()) for s in stabs if (s.values == s.values).any()]
        row = [f"`{c.name}`", ratio(c.eta_over_s), str(c.n), _est(list(c.final("lambda_max").values())),
               f"{num(lo)} – {num(hi)}", _est(list(c.final("trace").values())),
               _est([s.last for s in stabs if s.last is not None and s.last == s.last], 3),
               num(max(peaks), 3) if peaks else DASH, _pct_est(list(c.final("test_accuracy").values()))]
        if with_paper:
            acc, norm = paper.E6_END.get(c.first.label or "", (None, None))
            row.append(DASH if acc is None else f"{acc:.2f} / {norm:g}")
        rows.append(row)
    header = ["condition", "base η/S", "seeds", "final λ_max", "λ_max range along training", "final Tr(H)",
              "final stability", "highest stability along training", "test acc (%)"]
    if with_paper:
        header.append("paper test acc (%) / Hessian norm")
    text = table(header, rows)
    text += ("\nstability = λ_max·η/(2(1+β)) with the η of the measured epoch (1 = the edge of stability, "
             "Cohen et al. 2021); values are means over seeds [95 % interval].\n")
    if with_paper:
        text += f"\nPaper: {paper.E6_END['setting']} ({paper.cite('E6')}).\n"
    comparisons = _end_comparisons(conds) + _pair_comparisons(pairs, eq)
    if comparisons:
        text += "\nComparisons of final λ_max (end points, at whatever loss each run reached):\n\n" + comparisons_table(
            comparisons)
    ends = {c.name: (est.mean, stab.mean) for c in conds
            if (est := c.estimate("lambda_max")) and (stab := c.estimate(sharpness.final_stability))}
    text += cap_text(sharpness.cap_verdict(ends), "at the end of training")
    return text + "\n" + equal_loss_summary(eq, table_too=table_too)


def _pct_est(values: list[float]) -> str:
    if not values:
        return DASH
    return estimate(stats.mean_ci(values), pct).rsplit(" (n=", 1)[0]


def _end_comparisons(conds: list[seeds.Condition], limit: int = 6) -> list[seeds.Comparison]:
    """Every condition against the sharpest one at the end (E6: cyclic schedules against the constant one)."""
    finals = [(c, c.estimate("lambda_max")) for c in conds]
    finals = [(c, e) for c, e in finals if e is not None]
    if len(finals) < 2 or len(finals) > limit + 1:
        return []
    sharpest = max(finals, key=lambda ce: ce[1].mean)[0]
    return [cmp for c, _ in finals if c is not sharpest
            if (cmp := seeds.compare_conditions(f"`{c.name}` flatter than the sharpest", c, sharpest, "lambda_max"))]


def _pair_comparisons(pairs, eq: sharpness.EqualLoss) -> list[seeds.Comparison]:
    """``report.pairs`` (runs meant to behave alike): final λ_max, and λ_max at equal loss where both reach it."""
    out = []
    level = eq.middle
    for a, b in pairs:
        out.append(seeds.compare_conditions("pair alike (final)", a, b, "lambda_max"))
        if level is not None:
            get = lambda r: level.lambda_max.get(r.run_id)
            out.append(seeds.compare_conditions(f"pair alike at loss {num(level.level, 3)}", a, b, "lambda_max", get))
    return [c for c in out if c is not None]



# ----------------------------------------------------------------------------- phase swing
def phase_swing_text(conds: list[seeds.Condition]) -> str:
    """λ_max in the high-noise phases of cycling schedules against the adjacent low-noise phases (see
    :mod:`tfminima.report.phases`), per condition over seeds and pooled over every cycling run, with the
    stability in each kind of phase. Empty when no run's schedule cycles."""
    swings = [(c, [sw for r in c.runs if (sw := phases.swing(r)) is not None]) for c in conds]
    swings = [(c, sws) for c, sws in swings if sws]
    if not swings:
        return ""
    rows, comparisons, pooled_high, pooled_low = [], [], {}, {}
    for c, sws in swings:
        cycles = sorted({len(sw.cycles) for sw in sws})
        higher = sum(sw.higher_in_high for sw in sws)
        total = sum(len(sw.cycles) for sw in sws)
        rows.append([f"`{c.name}`", f"{ratio(np.mean([sw.eta_over_s(True) for sw in sws]))} / "
                     f"{ratio(np.mean([sw.eta_over_s(False) for sw in sws]))}", str(len(sws)),
                     "/".join(str(n) for n in cycles), _est([sw.lambda_high for sw in sws]),
                     _est([sw.lambda_low for sw in sws]), f"{higher} of {total}",
                     _est([sw.mean("stability", True) for sw in sws], 3),
                     _est([sw.mean("stability", False) for sw in sws], 3),
                     _est([sw.mean("loss", True) for sw in sws]), _est([sw.mean("loss", False) for sw in sws])])
        keyed = {(sw.run.seed if len({x.run.seed for x in sws}) == len(sws) else sw.run.run_id): sw for sw in sws}
        comparisons.append(seeds.Comparison(
            f"`{c.name}`: λ_max swings with the phase", "high-noise phases", "low-noise neighbours", "lambda_max",
            stats.compare_means({k: sw.lambda_high for k, sw in keyed.items()},
                                {k: sw.lambda_low for k, sw in keyed.items()})))
        for sw in sws:
            pooled_high[sw.run.run_id], pooled_low[sw.run.run_id] = sw.lambda_high, sw.lambda_low
    if len(swings) > 1:
        comparisons.append(seeds.Comparison(
            f"every cycling run ({len(pooled_high)}): λ_max swings with the phase", "high-noise phases",
            "low-noise neighbours", "lambda_max", stats.compare_means(pooled_high, pooled_low)))
    text = ("\n**λ_max by noise phase.** Runs whose schedule cycles, split into phases by the η/S each epoch logged "
            "(above the midpoint of the run's range: high noise; below: low noise; at it: neither). Each high-noise "
            "phase's mean λ_max is paired with the mean of the low-noise phases on either side of it, so a steady "
            "drift along training cancels; a run's value is the mean over its cycles, a condition's the mean over "
            "its seeds [95 % interval]:\n\n")
    text += table(["condition", "η/S high / low phases", "seeds", "cycles per run", "λ_max, high-noise phases",
                   "λ_max, adjacent low-noise phases", "cycles with λ_max higher in the high phase",
                   "stability, high-noise phases", "stability, low-noise phases", "training loss, high-noise phases",
                   "training loss, low-noise phases"], rows)
    text += "\nThe swing, tested (A − B: high-noise phases minus their low-noise neighbours, paired within each run):\n\n"
    text += comparisons_table(comparisons)
    peak = max((sw.mean("stability", True) for _, sws in swings for sw in sws), default=math.nan)
    if math.isfinite(peak):
        where = ("at the edge of stability" if peak >= sharpness.AT_EDGE else "below the edge of stability")
        text += (f"\nIn the high-noise phases stability reaches at most {num(peak, 3)} ({where}, {sharpness.AT_EDGE} "
                 "and above counts as at it)" + (": a swing there is not the stability cap.\n" if peak < sharpness.AT_EDGE
                                                  else ": a lower λ_max there may be the cap 2(1+β)/η.\n"))
    return text
