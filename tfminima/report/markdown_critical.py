"""The text of the ``steps_to_target`` section (E8): the measured critical batch size, B_simple's prediction,
whether they agree, and the tables of steps, epochs and examples to the target per batch size."""

from __future__ import annotations

from tfminima.report.critical import CriticalBatch, count, reached
from tfminima.report.markdown import DASH, estimate, num, table

HOW_TO_READ = (
    "How to read it: on the left each black point is the fewest steps to {target} any η of the grid reached "
    "at that batch size (the seed mean, error bar: 95 % bootstrap interval over seeds; grey marks: the other "
    "η's seeds). While the gradient noise dominates, doubling S halves the steps and the points follow the "
    "dash-dotted perfect-scaling line; past the critical batch size B_crit they flatten towards S_min, the "
    "fewest steps any batch can take. The blue curve is the fit S_min·(1 + B_crit/S) and the blue band its "
    "B_crit interval; the orange band is the prediction, the gradient noise scale B_simple measured along "
    "training. On the right the same runs in examples: flat (E_min = S_min·B_crit) while scaling is perfect, "
    "growing as S beyond B_crit, where a larger batch buys little time and costs data.\n"
)


def _interval(value: float, lo: float | None, hi: float | None) -> str:
    return f"{num(value, 3)}" + (f" [{num(lo, 3)}, {num(hi, 3)}]" if lo is not None else "")


def summary_text(cb: CriticalBatch) -> str:
    lines = []
    fit, noise = cb.fit, cb.noise
    if fit is not None:
        used = sum(p.reached for p in cb.points)
        lines.append(f"**Measured.** The fit over {used} batch sizes gives **B_crit = "
                     f"{_interval(fit.b_crit, fit.b_crit_lo, fit.b_crit_hi)}** and S_min = "
                     f"{_interval(fit.s_min, fit.s_min_lo, fit.s_min_hi)} steps (E_min = S_min·B_crit = "
                     f"{num(fit.s_min * fit.b_crit, 3)} examples); root-mean-square residual {fit.rms_log:.3f} in "
                     "log steps" + (f"; intervals: bootstrap over seeds ({fit.resamples} resamples, the best η "
                                    "chosen again in each)." if fit.resamples else " (one seed: no interval)."))
    else:
        lines.append("**Measured.** No fit: fewer than two batch sizes reached the target.")
    if noise is not None:
        lines.append(f"**Predicted.** B_simple = Tr(C)/‖G‖² along training: median **{num(noise.median, 3)}**, "
                     f"quartiles [{num(noise.q1, 3)}, {num(noise.q3, 3)}], range [{num(noise.lo, 3)}, "
                     f"{num(noise.hi, 3)}] over {noise.n_values} measurements in {noise.n_runs} runs.")
    else:
        lines.append("**Predicted.** No B_simple: no run measured it (add the `noise` monitor).")
    if cb.agreement is not None:
        ratio = fit.b_crit / noise.median
        lines.append(f"**Agreement.** B_crit / B_simple = {ratio:.2f}: the fit's interval and B_simple's quartiles "
                     + ("overlap — the noise scale predicts the critical batch size here."
                        if cb.agreement == "agree" else "do not overlap — the prediction misses the measured "
                        "critical batch size by more than the seeds and the training-time spread explain."))
    return "\n\n".join(lines) + "\n"


def best_table(cb: CriticalBatch) -> str:
    rows = []
    for p in cb.points:
        tried = len(p.candidates)
        if p.best is None:
            rows.append([str(p.batch_size), DASH, f"0/{sum(c.cond.n for c in p.candidates)}", "not reached",
                         "not reached", "not reached", str(tried)])
            continue
        c = p.candidates[p.candidates.index(p.best)]
        rows.append([str(p.batch_size), f"{c.lr:g}", f"{c.n_reached}/{len(c.steps)}",
                     estimate(p.counts["steps_to_target"], lambda v: num(v, 4)),
                     estimate(p.counts["epochs_to_target"], lambda v: num(v, 3)),
                     estimate(p.counts["examples_to_target"], lambda v: num(v, 4)), str(tried)])
    return table(["S", "best η", "seeds reached", "steps to target", "epochs to target", "examples to target",
                  "η tried"], rows)


def all_table(cb: CriticalBatch) -> str:
    """Every (S, η): each seed's steps, or why it has none."""
    rows = []
    for p in cb.points:
        for c in p.candidates:
            cells = []
            for r in c.cond.runs:
                if r.state == "diverged":
                    cells.append(f"s{r.seed}: diverged")
                elif reached(r):
                    cells.append(f"s{r.seed}: {num(count(r, 'steps_to_target'), 6)}")
                else:
                    cells.append(f"s{r.seed}: not reached ({r.summary.get('epochs_done', '?')} epochs)")
            rows.append([str(p.batch_size), f"{c.lr:g}", "yes" if c is p.best else "", "; ".join(cells)])
    return table(["S", "η", "best", "steps to target per seed"], rows)


def critical_text(cb: CriticalBatch) -> str:
    if not cb.points:
        return "No run of this group was trained to a target (`until:`).\n"
    return (summary_text(cb) + "\n" + HOW_TO_READ.format(target=cb.target) + "\n"
            + f"Best η per batch size (target {cb.target}; mean [95 % interval] (n) over the seeds that reached it):\n\n"
            + best_table(cb) + "\nEvery learning rate tried:\n\n" + all_table(cb))
