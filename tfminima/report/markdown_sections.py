"""Markdown of the end-point, pairing, memorisation, β and SVAG sections, from computed numbers only.

Conditions (runs equal up to the seed) are the unit: a value is a mean over seeds with its
interval, and every claim a section makes comes with the test that decided it and a verdict
("within seed noise" when the interval of the difference contains 0). The paper's numbers come
from :mod:`tfminima.report.paper` and say so.
"""

from __future__ import annotations

from tfminima.report import numbers, paper, seeds, sharpness, stats
from tfminima.report.loading import Run
from tfminima.report.markdown import (
    DASH,
    comparisons_table,
    correlation,
    epoch,
    estimate,
    num,
    pct,
    pvalue,
    ratio,
    table,
)
from tfminima.report.seeds import Condition


def _pct_est(est: stats.Estimate | None) -> str:
    return estimate(est, pct)


def e1_paper_text(experiment: str) -> str:
    if not paper.is_experiment(experiment, "e1_resnet"):
        return ""
    ref = paper.E1_RESNET
    rows = [[ratio(x), f"{y:.1f}"] for x, y in zip(ref["eta_over_s"], ref["val_accuracy"])]
    return f"\nPaper ({ref['setting']}; {paper.cite('E1')}):\n\n" + table(["η/S", "val acc (%)"], rows)


# --------------------------------------------------------------------------------- heatmap
def heatmap_text(runs) -> str:
    etas = sorted({r.lr for r in runs if r.lr})
    sizes = sorted({r.batch_size for r in runs if r.batch_size})
    cells = {(r.lr, r.batch_size) for r in runs if r.lr and r.batch_size}
    ratios = numbers.iso_ratio_groups(runs)
    diag = ", ".join(f"{ratio(k)} ({len(v)} run{'s' if len(v) > 1 else ''})" for k, v in ratios.items())
    return (f"Grid: {len(sizes)} batch sizes × {len(etas)} learning rates, {len(cells)} cells with completed runs. "
            f"Dashed diagonals are equal η/S: {diag}. A cell shows the mean over its runs (n when more than one); "
            "λ_max cells also the stability λ_max·η/(2(1+β)) of that mean (1 = the edge of stability). λ_max here "
            "is each run's end point, at its own final training loss; the comparison at equal loss is in the "
            "sharpness sections.\n")


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
                         f"{ratio(res.get('eta_over_s_a'))} / {ratio(res.get('eta_over_s_b'))}",
                         num(rise.at_a), num(rise.at_b), f"{num(rise.beyond_a)} (α={-rise.d:g})",
                         f"{num(rise.beyond_b)} (α={1 + rise.d:g})", num(rise.rise_a), num(rise.rise_b), f"`{sharper}`"])
    text = ("Loss at the two minima (α = 0: A, α = 1: B) and beyond them; the rise is loss(beyond) − loss(minimum), "
            "a steeper rise means a sharper minimum. Each line is one pair of runs (one seed each): the rises "
            "carry no interval over seeds, and the sharper side can differ from seed to seed.\n\n"
            + table(["pair A → B", "split", "η/S A / B", "loss at A", "loss at B", "loss beyond A", "loss beyond B",
                     "rise A", "rise B", "sharper side"], rows))
    deep = [res for res in results if (rise := numbers.interpolation_rise(res, "train")) is not None
            and min(rise.at_a, rise.at_b) > 0 and max(rise.at_a, rise.at_b) / min(rise.at_a, rise.at_b) > DEPTH_RATIO]
    if deep:
        text += ("\n**Width is not compared at equal training loss here:** the minima of "
                 + ", ".join(f"`{r['run_a']}` → `{r['run_b']}`" for r in deep)
                 + f" sit at training losses more than {DEPTH_RATIO:g}× apart, so the rises compare minima of different "
                 "depth (a line between two end points cannot be moved to a common loss). The section on sharpness "
                 "at equal training loss (`sharpness_vs_loss`, with the sharpness monitor) makes that comparison.\n")
    return text


DEPTH_RATIO = 2.0  # minima whose training losses differ by more than this are of different depth


def interpolation_seeds_text(results: list[dict], runs: list[Run]) -> str:
    """The pairs over seeds: each pair of conditions (one interpolation per seed, A and B of the same seed) with
    its rises and, where the runs measured it, λ_max and the stability at both ends, as means over seeds
    [95 % interval], and A − B tested paired over the seeds. Empty when no pair of conditions has two seeds."""
    cond_of, run_of = seeds.condition_of(runs), {r.run_id: r for r in runs}
    grouped: dict[tuple[str, str], tuple[Condition, Condition, list[dict]]] = {}
    for res in results:
        a, b = cond_of.get(res["run_a"]), cond_of.get(res["run_b"])
        if a is not None and b is not None:
            grouped.setdefault((a.key, b.key), (a, b, []))[2].append(res)
    if not any(len(items) > 1 for _, _, items in grouped.values()):
        return ""
    rows, comparisons = [], []
    for a, b, items in grouped.values():
        ends = {}  # seed -> (run A, run B, train rise, val rise)
        for res in items:
            ra, rb = run_of[res["run_a"]], run_of[res["run_b"]]
            ends[ra.seed if ra.seed == rb.seed else res["run_a"]] = (
                ra, rb, numbers.interpolation_rise(res, "train"), numbers.interpolation_rise(res, "val"))
        rises = {k: v[2] for k, v in ends.items() if v[2] is not None}
        steeper_b = sum(r.rise_b > r.rise_a for r in rises.values())
        side = lambda get: [v for v in (get(e) for e in ends.values()) if v is not None]
        rows.append([f"`{a.name}` → `{b.name}`", str(len(ends)),
                     _est([r.rise_a for r in rises.values()]), _est([r.rise_b for r in rises.values()]),
                     f"{steeper_b} of {len(rises)}", _est(side(lambda e: e[0].final("lambda_max"))),
                     _est(side(lambda e: e[1].final("lambda_max"))),
                     _est(side(lambda e: sharpness.final_stability(e[0])), 3),
                     _est(side(lambda e: sharpness.final_stability(e[1])), 3)])
        for split, index in (("train", 2), ("val", 3)):
            got = {k: v[index] for k, v in ends.items() if v[index] is not None}
            if got:
                comparisons.append(seeds.Comparison(f"{split}-loss rise, A − B", a.name, b.name, f"{split}_rise",
                                                    stats.compare_means({k: r.rise_a for k, r in got.items()},
                                                                        {k: r.rise_b for k, r in got.items()})))
        lam = {k: (v[0].final("lambda_max"), v[1].final("lambda_max")) for k, v in ends.items()}
        lam = {k: v for k, v in lam.items() if None not in v}
        if lam:
            comparisons.append(seeds.Comparison("λ_max where the runs stopped, A − B", a.name, b.name, "lambda_max",
                                                stats.compare_means({k: v[0] for k, v in lam.items()},
                                                                    {k: v[1] for k, v in lam.items()})))
    text = ("\nThe pairs over seeds (each line: one pair of conditions, interpolated within each seed; means over seeds "
            "[95 % interval]; λ_max and stability = λ_max·η/(2(1+β)) at each run's last sharpness measurement, "
            "where it stopped):\n\n"
            + table(["pair A → B", "seeds", "train-loss rise A", "train-loss rise B", "B steeper", "λ_max A",
                     "λ_max B", "stability A", "stability B"], rows))
    return text + "\nThe rises and λ_max, tested (A − B, paired over seeds):\n\n" + comparisons_table(comparisons)


def _est(values: list[float | None], digits: int = 4) -> str:
    values = [v for v in values if v is not None and v == v]
    return DASH if not values else estimate(stats.mean_ci(values), lambda v: num(v, digits)).rsplit(" (n=", 1)[0]


# --------------------------------------------------------------------------- paired_curves
def _end_metric(a: Condition, b: Condition) -> str:
    both = lambda m: a.final(m) and b.final(m)
    return "test_accuracy" if both("test_accuracy") else "val_accuracy"


def paired_text(pairs: list[tuple[Condition, Condition]], unresolved: list[str], experiment: str) -> str:
    """Largest gaps between the paired mean curves, the end accuracies with intervals, the paper's, and a
    test per pair of whether the two differ beyond seed noise."""
    with_paper = paper.is_experiment(experiment, "e3_schedules")
    rows = []
    comparisons = []
    for a, b in pairs:
        curve = lambda c, kind, key, split=None: seeds.mean_curve(c, kind, key, split).as_series()
        val = numbers.largest_gap(curve(a, "eval", "accuracy", "val"), curve(b, "eval", "accuracy", "val"))
        loss = numbers.largest_gap(curve(a, "train", "loss"), curve(b, "train", "loss"))
        row = [f"`{a.name}` vs `{b.name}`",
               DASH if val is None else f"{val.value * 100:.2f} pp at epoch {epoch(val.epoch)}",
               DASH if loss is None else f"{num(loss.value)} at epoch {epoch(loss.epoch)}",
               f"{_pct_est(a.estimate('test_accuracy'))} vs {_pct_est(b.estimate('test_accuracy'))}"]
        if with_paper:
            ref = paper.E3_TEST_ACCURACY
            row.append(f"{ref.get(a.first.label, DASH)} vs {ref.get(b.first.label, DASH)}")
        rows.append(row)
        comparisons.append(seeds.compare_conditions("pair alike", a, b, _end_metric(a, b)))
        comparisons.append(seeds.compare_conditions("pair alike", a, b, "train_loss"))
    header = ["pair (A vs B)", "max |val acc A − B| (mean curves)", "max |train loss A − B|", "test acc A vs B (%)"]
    if with_paper:
        header.append(f"paper test acc (%) ({paper.E3_TEST_ACCURACY['setting']})")
    text = table(header, rows) if rows else ""
    comparisons = [c for c in comparisons if c is not None]
    if comparisons:
        text += "\nDo the paired runs end alike? (A − B at the end of training)\n\n" + comparisons_table(comparisons)
    across = _pairs_against_the_first(pairs)
    if across:
        text += ("\nDo the schedules differ? Each pair (both of its runs, every seed) against the first pair "
                 "(A − B at the end of training, unpaired):\n\n" + comparisons_table(across))
    if with_paper:
        text += f"\nPaper numbers: {paper.cite('E3')}.\n"
    for reason in unresolved:
        text += f"\n- pair not drawn: {reason}\n"
    return text


def _pairs_against_the_first(pairs: list[tuple[Condition, Condition]]) -> list[seeds.Comparison]:
    """Every later pair against the first of ``report.pairs`` (E3: the cyclic and step pairs against the constant
    one), the two runs of a pair pooled: a pair is one schedule in two forms."""
    if len(pairs) < 2:
        return []
    (a0, b0), out = pairs[0], []
    metric = _end_metric(a0, b0)
    for a, b in pairs[1:]:
        cmp = seeds.compare_runs("schedules differ", f"{a.name} + {b.name}", a.runs + b.runs,
                                 f"{a0.name} + {b0.name}", a0.runs + b0.runs, metric)
        if cmp is not None:
            out.append(cmp)
    return out


# ---------------------------------------------------------------------------- memorization
def memorization_text(runs, experiment: str) -> str:
    """Per noise level the peak validation accuracy and ρ(η/S, final memorisation) over conditions;
    per run the memorisation at its peak and at the end."""
    levels = sorted({r.label_noise for r in runs if numbers.memorization_summary(r)})
    if not levels:
        return "No memorisation measurements (add the `memorization` monitor).\n"
    with_paper = paper.is_experiment(experiment, "e4_memorization")
    out = []
    level_rows = []
    final_mem = lambda r: (m.final_mem if (m := numbers.memorization_summary(r)) else None)
    for level in levels:
        members = [(r, numbers.memorization_summary(r)) for r in runs if r.label_noise == level]
        members = [(r, m) for r, m in members if m is not None]
        best_run, best = max(members, key=lambda rm: rm[1].peak_val)
        corr = seeds.rank_correlation(seeds.conditions([r for r, _ in members]), lambda c: c.eta_over_s, final_mem)
        ref = paper.E4_PEAK_VAL.get(level)
        level_rows.append([f"{level:.0%}", pct(best.peak_val), f"`{best_run.name}`", epoch(best.peak_epoch),
                           pct(best.mem_at_peak), correlation(corr), pvalue(corr),
                           f"≈{ref:g}" if ref is not None else DASH])
    out.append(table(["label noise", "peak val acc (%)", "run", "epoch", "memorisation then (%)",
                      "ρ(η/S, final memorisation) over conditions", "p", "paper peak val acc (%)"], level_rows))
    if with_paper:
        out.append(f"\nPaper ({paper.E4_PEAK_VAL['setting']}; {paper.cite('E4')}): validation accuracy peaks near "
                   f"{paper.E4_PEAK_VAL[0.25]:g} % (25 % noise) and {paper.E4_PEAK_VAL[0.5]:g} % (50 %), "
                   f"then falls as memorisation grows; {paper.E4_LOW_RATIO_MEMORIZATION}.\n")
    run_rows = []
    for r in runs:
        m = numbers.memorization_summary(r)
        if m is None:
            continue
        run_rows.append([f"`{r.run_id}`", f"{r.label_noise:.0%}", ratio(r.eta_over_s), num(r.momentum, 3),
                         pct(m.peak_val), epoch(m.peak_epoch), pct(m.mem_at_peak), pct(m.final_val),
                         pct(m.final_mem), epoch(m.final_epoch)])
    out.append("\nPer run (memorisation = accuracy on the noisy-label subset against its noisy labels):\n\n")
    out.append(table(["run", "noise", "η/S", "β", "peak val acc (%)", "at epoch", "memorisation at peak (%)",
                      "final val acc (%)", "final memorisation (%)", "final epoch"], run_rows))
    return "".join(out)


# ---------------------------------------------------------------------------- beta_scaling
def beta_text(points: list[numbers.BetaPoint], conds: dict[str, Condition], experiment: str) -> str:
    """Validation accuracy per β and training-set size (means over seeds), the change from the smallest β
    with its test, and the paper's table."""
    if not points:
        return "No runs with a β (labels `b<β>` or several batch sizes)."
    rows = []
    base: dict = {}
    seen: set[str] = set()
    for p in points:
        base.setdefault(p.train_size, conds[p.run.run_id])
    comparisons = []
    for p in points:
        cond = conds[p.run.run_id]
        if cond.key in seen:
            continue
        seen.add(cond.key)
        ref = base[p.train_size]
        cmp = None if cond is ref else seeds.compare_conditions(f"β={p.beta:g} vs β={_beta_of(points, ref):g}, "
                                                               f"N={p.train_size}", cond, ref, "val_accuracy")
        change = DASH
        if cmp is not None:
            comparisons.append(cmp)
            change = f"{cmp.diff.diff * 100:+.2f}"
        rows.append([str(p.train_size or DASH), f"{p.beta:g}", num(p.run.lr), str(p.run.batch_size),
                     ratio(p.run.eta_over_s), str(cond.n), _pct_est(cond.estimate("val_accuracy")),
                     _pct_est(cond.estimate("best_val_accuracy")), change, f"`{cond.name}`"])
    text = table(["N (train size)", "β", "η", "S", "η/S", "seeds", "final val acc (%)", "best val acc (%)",
                  "vs smallest β (pp)", "condition"], rows)
    if comparisons:
        text += "\nChange from the smallest β at the same N:\n\n" + comparisons_table(comparisons)
    ref = paper.E5_VAL_ACCURACY
    sizes = [k for k in ref if isinstance(k, int)]
    paper_rows = [[f"{b:g}"] + [f"{ref[n][i]:.1f}" for n in sizes] for i, b in enumerate(paper.E5_BETAS)]
    label = "Paper" if paper.is_experiment(experiment, "e5_breaking_point") else "For reference, the paper"
    text += (f"\n{label} ({ref['setting']}; {paper.cite('E5')}), validation accuracy (%):\n\n"
             + table(["β"] + [f"N = {n}" for n in sizes], paper_rows))
    return text


def _beta_of(points: list[numbers.BetaPoint], cond: Condition) -> float:
    return next(p.beta for p in points if p.run in cond.runs)


# ------------------------------------------------------------------------------------ svag
def svag_text(comparisons: list[numbers.SvagComparison], conds: dict[str, Condition]) -> str:
    """Per learning rate: final val accuracy for each l (means over seeds), the largest gap between the
    mean curves of l = 1 and the largest l, and a test of their end values."""
    rows = []
    tests = []
    for c in comparisons:
        finals = ", ".join(f"l={l}: {_pct_est(conds[r.run_id].estimate('val_accuracy'))}" for l, r in c.runs.items())
        rows.append([num(c.lr), finals, str(c.largest_l),
                     DASH if c.loss_gap is None else f"{num(c.loss_gap.value)} at epoch {epoch(c.loss_gap.epoch)}",
                     DASH if c.val_gap is None else f"{c.val_gap.value * 100:.2f} pp at epoch {epoch(c.val_gap.epoch)}"])
        one, top = c.runs.get(1), c.runs[c.largest_l]
        if one is not None and top is not one:
            for metric in ("train_loss", "val_accuracy"):
                tests.append(seeds.compare_conditions(f"η={c.lr:g}: l=1 alike l={c.largest_l}", conds[one.run_id],
                                                      conds[top.run_id], metric))
    if not rows:
        return "No SVAG runs.\n"
    text = table(["η", "final val acc (%) by l", "largest l", "max |train loss l=1 − largest l|",
                  "max |val acc l=1 − largest l|"], rows)
    tests = [t for t in tests if t is not None]
    if tests:
        text += "\nEnd of training, l = 1 against the largest l:\n\n" + comparisons_table(tests)
    return text
