"""Markdown text of the report: tables and sentences built from computed numbers only.

Accuracies print as percentages with two decimals, gaps between accuracies in percentage
points (pp), correlations with two decimals; the paper's numbers come from
:mod:`tfminima.report.paper` and say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tfminima.report import numbers, paper
from tfminima.report.loading import Group, Run

DASH = "—"


# ------------------------------------------------------------------------------ formatting
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


# ------------------------------------------------------------------------------ runs table
def runs_table(group: Group) -> str:
    """Every run of the group, drawn or not, with its state; errors listed under the table."""
    with_noisy = any(r.final("noisy_accuracy") is not None for r in group.runs)
    header = ["run", "η", "S", "β", "η/S", "epochs", "train acc (%)", "val acc (%)", "test acc (%)", "λ_max", "Tr(H)"]
    header += ["noisy acc (%)"] if with_noisy else []
    header += ["state"]
    rows = []
    for r in group.runs:
        row = [f"`{r.run_id}`", num(r.lr), str(r.batch_size or DASH), num(r.momentum, 3), num(r.eta_over_s, 3),
               epoch(r.series("train", "loss").epochs[-1]) if len(r.series("train", "loss")) else "0",
               pct(r.final("train_accuracy")), pct(r.final("val_accuracy")), pct(r.final("test_accuracy")),
               num(r.final("lambda_max")), num(r.final("trace"))]
        row += [pct(r.final("noisy_accuracy"))] if with_noisy else []
        row += [r.state if r.plotted else f"**{r.state}** (not drawn)"]
        rows.append(row)
    text = table(header, rows)
    problems = [r for r in group.runs if r.error]
    if problems:
        text += "\n" + "".join(f"- `{r.run_id}` ({r.state}): {r.error.splitlines()[0][:300]}\n" for r in problems)
    return text


# ------------------------------------------------------------------------------ eta_over_s
SCALE_NAMES = {"eta_over_s": "η/S", "eta_over_s_momentum": "η/(S(1−β))"}
METRIC_NAMES = {"val_accuracy": "final val accuracy", "test_accuracy": "test accuracy",
                "lambda_max": "λ_max", "trace": "Tr(H)"}


def correlations_text(correlations: dict[tuple[str, str], numbers.Correlation | None]) -> str:
    """Spearman ρ of each metric with each noise scale."""
    rows = []
    for (metric, scale), corr in correlations.items():
        rows.append([METRIC_NAMES[metric], SCALE_NAMES[scale], rho(corr),
                     DASH if corr is None else f"{corr.pvalue:.2g}", DASH if corr is None else str(corr.n)])
    return "Spearman rank correlation with the noise scale (completed runs):\n\n" + table(
        ["metric", "against", "ρ", "p", "runs"], rows)


def iso_text(spreads: list[numbers.IsoSpread], scale: str = "η/S") -> str:
    """Mean and spread of the final val accuracy inside each η/S value: the paper's 'equal η/S, similar result'."""
    if not spreads:
        return ""
    rows = [[f"{s.ratio:.3g}", str(s.n), pct(s.mean), f"{s.spread * 100:.2f}"] for s in spreads]
    text = f"Final validation accuracy by {scale} (runs with equal {scale} grouped):\n\n" + table(
        [scale, "runs", "mean val acc (%)", "spread max−min (pp)"], rows)
    within = [s.spread for s in spreads if s.n > 1]
    if within and len(spreads) > 1:
        across = max(s.mean for s in spreads) - min(s.mean for s in spreads)
        text += (f"\nMean spread within equal-{scale} runs: {sum(within) / len(within) * 100:.2f} pp; "
                 f"range of the per-{scale} means: {across * 100:.2f} pp.\n")
    return text


def e1_paper_text(experiment: str) -> str:
    if not paper.is_experiment(experiment, "e1_resnet"):
        return ""
    ref = paper.E1_RESNET
    rows = [[f"{x:.3g}", f"{y:.1f}"] for x, y in zip(ref["eta_over_s"], ref["val_accuracy"])]
    return f"\nPaper ({ref['setting']}; {paper.cite('E1')}):\n\n" + table(["η/S", "val acc (%)"], rows)


# --------------------------------------------------------------------------------- heatmap
def heatmap_text(runs: list[Run]) -> str:
    etas = sorted({r.lr for r in runs if r.lr})
    sizes = sorted({r.batch_size for r in runs if r.batch_size})
    cells = {(r.lr, r.batch_size) for r in runs if r.lr and r.batch_size}
    ratios = numbers.iso_ratio_groups(runs)
    diag = ", ".join(f"{k:.3g} ({len(v)} run{'s' if len(v) > 1 else ''})" for k, v in ratios.items())
    return (f"Grid: {len(sizes)} batch sizes × {len(etas)} learning rates, {len(cells)} cells with completed runs. "
            f"Dashed diagonals are equal η/S: {diag}.\n")


# --------------------------------------------------------------------------- interpolation
def interpolation_text(results: list[dict]) -> str:
    """Loss at both minima and half a unit beyond each: the steeper rise marks the sharper minimum."""
    if not results:
        return "No interpolation results in `analysis/` (run `tfminima analyze GROUP --pairs`).\n"
    rows = []
    for res in results:
        for split in ("train", "val"):
            rise = numbers.interpolation_rise(res, split)
            if rise is None:
                continue
            sharper = res["run_a"] if rise.rise_a > rise.rise_b else res["run_b"]
            rows.append([f"`{res['run_a']}` → `{res['run_b']}`", split,
                         f"{num(res.get('eta_over_s_a'), 3)} / {num(res.get('eta_over_s_b'), 3)}",
                         num(rise.at_a), num(rise.at_b), f"{num(rise.beyond_a)} (α={-rise.d:g})",
                         f"{num(rise.beyond_b)} (α={1 + rise.d:g})", num(rise.rise_a), num(rise.rise_b), f"`{sharper}`"])
    return ("Loss at the two minima (α = 0: A, α = 1: B) and beyond them; the rise is loss(beyond) − loss(minimum), "
            "a steeper rise means a sharper minimum.\n\n"
            + table(["pair A → B", "split", "η/S A / B", "loss at A", "loss at B", "loss beyond A", "loss beyond B",
                     "rise A", "rise B", "sharper side"], rows))


# --------------------------------------------------------------------------- paired_curves
def paired_text(pairs: list[tuple[Run, Run]], unresolved: list[str], experiment: str) -> str:
    """Largest gaps between the paired curves and the test accuracies, with the paper's."""
    with_paper = paper.is_experiment(experiment, "e3_schedules")
    rows = []
    for a, b in pairs:
        val = numbers.largest_gap(a.series("eval", "accuracy", "val"), b.series("eval", "accuracy", "val"))
        loss = numbers.largest_gap(a.series("train", "loss"), b.series("train", "loss"))
        row = [f"`{a.name}` vs `{b.name}`",
               DASH if val is None else f"{val.value * 100:.2f} pp at epoch {epoch(val.epoch)}",
               DASH if loss is None else f"{num(loss.value)} at epoch {epoch(loss.epoch)}",
               f"{pct(a.final('test_accuracy'))} vs {pct(b.final('test_accuracy'))}"]
        if with_paper:
            ref = paper.E3_TEST_ACCURACY
            row.append(f"{ref.get(a.label, DASH)} vs {ref.get(b.label, DASH)}")
        rows.append(row)
    header = ["pair (A vs B)", "max |val acc A − B|", "max |train loss A − B|", "test acc A vs B (%)"]
    if with_paper:
        header.append(f"paper test acc (%) ({paper.E3_TEST_ACCURACY['setting']})")
    text = table(header, rows) if rows else ""
    if with_paper:
        text += f"\nPaper numbers: {paper.cite('E3')}.\n"
    for reason in unresolved:
        text += f"\n- pair not drawn: {reason}\n"
    return text


# ---------------------------------------------------------------------------- memorization
def memorization_text(runs: list[Run], experiment: str) -> str:
    """Per noise level the peak validation accuracy; per run the memorisation at its peak and at the end."""
    levels = sorted({r.label_noise for r in runs if numbers.memorization_summary(r)})
    if not levels:
        return "No memorisation measurements (add the `memorization` monitor).\n"
    with_paper = paper.is_experiment(experiment, "e4_memorization")
    out = []
    level_rows = []
    for level in levels:
        members = [(r, numbers.memorization_summary(r)) for r in runs if r.label_noise == level]
        members = [(r, m) for r, m in members if m is not None]
        best_run, best = max(members, key=lambda rm: rm[1].peak_val)
        corr = numbers.spearman([r.eta_over_s for r, _ in members], [m.final_mem for _, m in members])
        ref = paper.E4_PEAK_VAL.get(level)
        level_rows.append([f"{level:.0%}", pct(best.peak_val), f"`{best_run.name}`", epoch(best.peak_epoch),
                           pct(best.mem_at_peak), rho(corr), f"≈{ref:g}" if ref is not None else DASH])
    out.append(table(["label noise", "peak val acc (%)", "run", "epoch", "memorisation then (%)",
                      "ρ(η/S, final memorisation)", "paper peak val acc (%)"], level_rows))
    if with_paper:
        out.append(f"\nPaper ({paper.E4_PEAK_VAL['setting']}; {paper.cite('E4')}): validation accuracy peaks near "
                   f"{paper.E4_PEAK_VAL[0.25]:g} % (25 % noise) and {paper.E4_PEAK_VAL[0.5]:g} % (50 %), "
                   f"then falls as memorisation grows; {paper.E4_LOW_RATIO_MEMORIZATION}.\n")
    run_rows = []
    for r in runs:
        m = numbers.memorization_summary(r)
        if m is None:
            continue
        run_rows.append([f"`{r.run_id}`", f"{r.label_noise:.0%}", num(r.eta_over_s, 3), num(r.momentum, 3),
                         pct(m.peak_val), epoch(m.peak_epoch), pct(m.mem_at_peak), pct(m.final_val),
                         pct(m.final_mem), epoch(m.final_epoch)])
    out.append("\nPer run (memorisation = accuracy on the noisy-label subset against its noisy labels):\n\n")
    out.append(table(["run", "noise", "η/S", "β", "peak val acc (%)", "at epoch", "memorisation at peak (%)",
                      "final val acc (%)", "final memorisation (%)", "final epoch"], run_rows))
    return "".join(out)


# ---------------------------------------------------------------------------- beta_scaling
def beta_text(points: list[numbers.BetaPoint], experiment: str) -> str:
    """Validation accuracy per β and training-set size, the change from β = 1, and the paper's table."""
    if not points:
        return "No runs with a β (labels `b<β>` or several batch sizes).\n"
    rows = []
    base: dict = {}
    for p in points:
        base.setdefault(p.train_size, p)
    for p in points:
        val = p.run.final("val_accuracy")
        ref = base[p.train_size].run.final("val_accuracy")
        change = f"{(val - ref) * 100:+.2f}" if _ok(val) and _ok(ref) else DASH
        rows.append([str(p.train_size or DASH), f"{p.beta:g}", num(p.run.lr), str(p.run.batch_size),
                     num(p.run.eta_over_s, 3), pct(val), pct(p.run.final("best_val_accuracy")),
                     change, f"`{p.run.run_id}`"])
    text = table(["N (train size)", "β", "η", "S", "η/S", "final val acc (%)", "best val acc (%)",
                  "vs smallest β (pp)", "run"], rows)
    ref = paper.E5_VAL_ACCURACY
    sizes = [k for k in ref if isinstance(k, int)]
    paper_rows = [[f"{b:g}"] + [f"{ref[n][i]:.1f}" for n in sizes] for i, b in enumerate(paper.E5_BETAS)]
    label = "Paper" if paper.is_experiment(experiment, "e5_breaking_point") else "For reference, the paper"
    text += (f"\n{label} ({ref['setting']}; {paper.cite('E5')}), validation accuracy (%):\n\n"
             + table(["β"] + [f"N = {n}" for n in sizes], paper_rows))
    return text


# -------------------------------------------------------------------- sharpness_trajectory
def sharpness_text(runs: list[Run], experiment: str) -> str:
    """Final λ_max, its range along the run, and test accuracy, next to the paper's end points."""
    with_paper = paper.is_experiment(experiment, "e6_cyclic_sharpness")
    rows = []
    for r in runs:
        lam = r.series("sharpness", "lambda_max")
        if not len(lam):
            continue
        row = [f"`{r.name}`", num(r.eta_over_s, 3), num(r.final("lambda_max")),
               f"{num(float(lam.values.min()))} – {num(float(lam.values.max()))}", num(r.final("trace")),
               pct(r.final("test_accuracy"))]
        if with_paper:
            acc, norm = paper.E6_END.get(r.label or "", (None, None))
            row.append(DASH if acc is None else f"{acc:.2f} / {norm:g}")
        rows.append(row)
    if not rows:
        return "No sharpness measurements (add the `sharpness` monitor).\n"
    header = ["run", "base η/S", "final λ_max", "λ_max range along the run", "final Tr(H)", "test acc (%)"]
    if with_paper:
        header.append("paper test acc (%) / Hessian norm")
    text = table(header, rows)
    if with_paper:
        text += f"\nPaper: {paper.E6_END['setting']} ({paper.cite('E6')}).\n"
    return text


# ------------------------------------------------------------------------------------ svag
def svag_text(comparisons: list[numbers.SvagComparison]) -> str:
    """Per learning rate: final val accuracy for each l and the largest gap between l = 1 and the largest l."""
    rows = []
    for c in comparisons:
        finals = ", ".join(f"l={l}: {pct(r.final('val_accuracy'))}" for l, r in c.runs.items())
        rows.append([num(c.lr), finals, str(c.largest_l),
                     DASH if c.loss_gap is None else f"{num(c.loss_gap.value)} at epoch {epoch(c.loss_gap.epoch)}",
                     DASH if c.val_gap is None else f"{c.val_gap.value * 100:.2f} pp at epoch {epoch(c.val_gap.epoch)}"])
    if not rows:
        return "No SVAG runs.\n"
    return table(["η", "final val acc (%) by l", "largest l", "max |train loss l=1 − largest l|",
                  "max |val acc l=1 − largest l|"], rows)


# ----------------------------------------------------------------------- sharpness_vs_loss
def _rho_cell(corr: numbers.Correlation | None, n: int) -> str:
    if n < numbers.MIN_RUNS_FOR_RHO:
        return f"n/a (< {numbers.MIN_RUNS_FOR_RHO} runs)"
    return "n/a (no ranking)" if corr is None else f"{corr.rho:.2f}"


def sharpness_vs_loss_text(paths: list[numbers.LossPath], levels: numbers.LossLevels,
                           comparisons: list[numbers.LevelComparison], skipped: list[Run]) -> str:
    """λ_max per run at common training-loss levels, ρ(λ_max, η/S) per level, and the end points beside them."""
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
    groups = numbers.iso_ratio_groups([p.run for p in paths])
    if comparisons:
        with_groups = len(groups) <= 6
        header = ["training loss", "runs at this loss"]
        header += [f"mean λ_max, η/S={r:.3g}" for r in groups] if with_groups else []
        header += ["ρ(λ_max, η/S)", "p", "ρ(Tr(H), η/S)"]
        rows = []
        for c in comparisons:
            row = [num(c.level, 3), f"{c.n} of {len(paths)}"]
            if with_groups:
                for members in groups.values():
                    vals = [c.lambda_max[r.run_id] for r in members if r.run_id in c.lambda_max]
                    row.append(DASH if not vals else num(sum(vals) / len(vals)) + (f" (n={len(vals)})" if len(vals) > 1 else ""))
            row += [_rho_cell(c.rho_lambda, c.n), DASH if c.rho_lambda is None else f"{c.rho_lambda.pvalue:.2g}",
                    _rho_cell(c.rho_trace, len(c.trace))]
            rows.append(row)
        out.append("\nAt equal training loss:\n\n" + table(header, rows))
        few = [c for c in comparisons if c.n < numbers.MIN_RUNS_FOR_RHO]
        if few:
            out.append(f"\nLevels reached by fewer than {numbers.MIN_RUNS_FOR_RHO} runs (no correlation): "
                       + ", ".join(num(c.level, 3) for c in few) + ".\n")
    header = ["run", "η/S", "sharpness measurements", "training loss range"]
    header += [f"λ_max at loss {num(c.level, 3)}" for c in comparisons]
    header += ["final loss", "final λ_max"]
    rows = []
    for p in paths:
        lo, hi = p.loss_range
        rows.append([f"`{p.run.name}`", num(p.run.eta_over_s, 3), str(len(p.loss)),
                     num(lo, 3) if num(lo, 3) == num(hi, 3) else f"{num(lo, 3)} – {num(hi, 3)}"]
                    + [num(c.lambda_max.get(p.run.run_id)) for c in comparisons]
                    + [num(float(p.loss[-1]), 3), num(float(p.lambda_max[-1]))])
    out.append("\nPer run (— : the run never reaches that loss between its measurements):\n\n" + table(header, rows))
    end = numbers.spearman([p.run.eta_over_s for p in paths], [float(p.lambda_max[-1]) for p in paths])
    finals = [float(p.loss[-1]) for p in paths]
    out.append(f"\nAt the last measurements, for contrast: ρ(λ_max, η/S) = {rho(end)} over {len(paths)} runs, with "
               f"training losses from {num(min(finals), 3)} to {num(max(finals), 3)}.\n")
    if skipped:
        out.append("\nNot used (no sharpness measurement with a training loss of the same epoch): "
                   + ", ".join(f"`{r.name}`" for r in skipped) + ".\n")
    return "".join(out)
