"""The ``steps_to_target`` figure (E8): steps and examples to the target against the batch size.

Left, log-log: steps to the target at the best η per S (the seed mean, with the 95 % bootstrap interval over
seeds as an error bar), the other η as small grey marks, a batch size that never
reached the target as a red triangle on the top edge; the perfect-scaling line (steps ∝ 1/S through
the smallest reached S), the fit S_min·(1 + B_crit/S), its B_crit with the bootstrap interval (band) and
the prediction B_simple (its median, the quartiles as a band). Right: the same runs in examples
(S × steps), where perfect scaling is flat and the plateau rises as S — the cost side of the trade.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullLocator

from tfminima.report.critical import BatchPoint, CriticalBatch, count, reached
from tfminima.report.style import BAND_ALPHA, figure_legend, log_axis, new_figure

BEST, OTHER, MISSED, FIT, PERFECT, MEASURED, PREDICTED = (
    "black", "0.65", "tab:red", "tab:blue", "0.35", "tab:blue", "tab:orange")


def _draw(ax, points: list[BatchPoint], key: str) -> None:
    """The best-η means with their intervals, and every seed of the other η."""
    for p in points:
        for c in p.candidates:
            if c is not p.best:
                vals = [count(r, key) for r in c.cond.runs if reached(r)]
                ax.plot([p.batch_size] * len(vals), vals, "_", color=OTHER, ms=7)
        est = p.counts.get(key)
        if est is None:
            continue
        err = [[est.mean - est.lo], [est.hi - est.mean]] if est.has_interval else None
        ax.errorbar([p.batch_size], [est.mean], yerr=err, fmt="o", color=BEST, ms=5, capsize=3, zorder=4)


def _missed(ax, points: list[BatchPoint]) -> None:
    for p in points:
        if not p.reached:
            ax.plot([p.batch_size], [0.97], "^", color=MISSED, ms=8, transform=ax.get_xaxis_transform(),
                    clip_on=False, zorder=5)


def _vertical(ax, cb: CriticalBatch) -> None:
    if cb.fit is not None:
        ax.axvline(cb.fit.b_crit, color=MEASURED, lw=1, ls="--")
        if cb.fit.b_crit_lo is not None:
            ax.axvspan(cb.fit.b_crit_lo, cb.fit.b_crit_hi, color=MEASURED, alpha=BAND_ALPHA, lw=0)
    if cb.noise is not None:
        ax.axvline(cb.noise.median, color=PREDICTED, lw=1.5, ls=":")
        ax.axvspan(cb.noise.q1, cb.noise.q3, color=PREDICTED, alpha=BAND_ALPHA, lw=0)


def steps_to_target(cb: CriticalBatch, title: str) -> Figure | None:
    """The figure, or None when no run was trained to a target."""
    points = cb.points
    if not points:
        return None
    fig, axes = new_figure(1, 2, width=5.2, height=4.0)
    ax_steps, ax_examples = axes[0]
    s_all = np.array([p.batch_size for p in points], dtype=float)
    grid = np.geomspace(s_all.min(), s_all.max(), 200)
    for ax, key in ((ax_steps, "steps_to_target"), (ax_examples, "examples_to_target")):
        _draw(ax, points, key)
        _missed(ax, points)
        _vertical(ax, cb)
        log_axis(ax, "y")
        ax.set_xscale("log")
        ax.set_xticks(s_all, [f"{s:g}" for s in s_all])  # the batch sizes of the sweep, as plain numbers
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        ax.set_xlabel("batch size S")
    first = next((p for p in points if p.reached), None)
    if first is not None:
        y0 = first.counts["steps_to_target"].mean
        ax_steps.plot(grid, y0 * first.batch_size / grid, color=PERFECT, lw=1, ls="-.")
        ax_examples.axhline(y0 * first.batch_size, color=PERFECT, lw=1, ls="-.")
    if cb.fit is not None:
        ax_steps.plot(grid, cb.fit.steps(grid), color=FIT, lw=1.5)
        ax_examples.plot(grid, cb.fit.steps(grid) * grid, color=FIT, lw=1.5)
    ax_steps.set_ylabel(f"steps to {cb.target}")
    ax_examples.set_ylabel(f"examples to {cb.target} (S × steps)")
    ax_steps.set_title("steps: 1/S while noise dominates, flat beyond B_crit", fontsize=9)
    ax_examples.set_title("examples: flat while noise dominates, ∝ S beyond", fontsize=9)
    handles = [Line2D([], [], marker="o", color=BEST, ls="", label="best η per S (mean, 95 % interval over seeds)"),
               Line2D([], [], marker="_", color=OTHER, ls="", ms=9, label="other η (each seed)"),
               Line2D([], [], color=PERFECT, ls="-.", label="perfect scaling (steps ∝ 1/S)")]
    if any(not p.reached for p in points):
        handles.append(Line2D([], [], marker="^", color=MISSED, ls="", label="target never reached at this S"))
    if cb.fit is not None:
        handles.append(Line2D([], [], color=FIT, label=f"fit S_min(1 + B_crit/S): S_min = {cb.fit.s_min:.3g}"))
        band = (f" [{cb.fit.b_crit_lo:.3g}, {cb.fit.b_crit_hi:.3g}]" if cb.fit.b_crit_lo is not None else "")
        handles.append(Patch(color=MEASURED, alpha=0.4, label=f"B_crit = {cb.fit.b_crit:.3g}{band} (fit)"))
    if cb.noise is not None:
        handles.append(Patch(color=PREDICTED, alpha=0.4, label=f"B_simple = {cb.noise.median:.3g} "
                             f"[{cb.noise.q1:.3g}, {cb.noise.q3:.3g}] (median, quartiles: prediction)"))
    figure_legend(fig, axes[0], [(None, handles)], where="bottom")
    fig.suptitle(f"{title}: steps to the target against the batch size")
    return fig
