"""Sharpness figures: λ_max along training, and λ_max against the training loss.

Both draw the edge of stability λ = 2(1+β)/η (Cohen et al. 2021): a run whose λ_max meets it is
held flat by its step size, whatever its η/S. Where η is constant the edge is a labelled grey
line per (η, β); where a schedule moves η it is a dashed line in the run's colour.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tfminima.report import seeds, sharpness
from tfminima.report.figures import BAND_NOTE, condition_label, plot_mean
from tfminima.report.seeds import Condition
from tfminima.report.style import (
    BAND_ALPHA,
    ETA_S_LABEL,
    MAX_ENTRIES,
    RunStyle,
    epoch_axis,
    epoch_limits,
    figure_legend,
    log_axis,
    new_figure,
    schedule_xy,
)

EDGE_COLOUR = "0.35"
EDGE_LABEL = "λ = 2(1+β)/η: edge of stability"


def _edges(conds: list[Condition], epochs_of) -> tuple[dict[float, str], list[Condition]]:
    """{edge: label} of the conditions whose η is constant at their measurements (``epochs_of``), and
    the conditions whose η moves there."""
    constant: dict[float, str] = {}
    moving = []
    for c in conds:
        run = c.first
        epochs = list(epochs_of(c))
        values = np.array([sharpness.run_edge(run, e) or np.nan for e in epochs], dtype=float)
        if not np.isfinite(values).any():
            continue
        if np.nanmax(values) <= np.nanmin(values) * (1 + 1e-9):
            beta = f", β={run.momentum:g}" if run.momentum else ""
            constant.setdefault(float(f"{np.nanmin(values):.6g}"), f"η={run.lr_at(epochs[0]):g}{beta}")
        else:
            moving.append(c)
    return constant, moving


def _edge_hlines(ax, constant: dict[float, str]) -> None:
    """A grey dashed line per constant edge, labelled just outside the right spine."""
    for value, label in sorted(constant.items()):
        ax.axhline(value, color=EDGE_COLOUR, ls=(0, (5, 3)), lw=1.0, zorder=1)
        ax.annotate(f"{label}: {value:.3g}", xy=(1.0, value), xycoords=("axes fraction", "data"), xytext=(3, 0),
                    textcoords="offset points", fontsize=6.5, color=EDGE_COLOUR, va="center", ha="left",
                    annotation_clip=False)


# --------------------------------------------------------------------- sharpness_trajectory
def sharpness_trajectory(conds: list[Condition], styles: dict[str, RunStyle], norm: LogNorm,
                         title: str) -> Figure | None:
    """λ_max (and Tr(H)) against epoch per condition (mean over seeds), the η/S schedule beneath."""
    conds = [c for c in conds if any(len(r.series("sharpness", "lambda_max")) for r in c.runs)]
    if not conds:
        return None
    with_trace = any(len(r.series("sharpness", "trace")) for c in conds for r in c.runs)
    rows = [("lambda_max", "λ_max (log)")] + ([("trace", "Tr(H) (log)")] if with_trace else [])
    fig, axes = new_figure(len(rows) + 1, 1, width=8.5, height=2.8, sharex=True)
    last = max(float(r.series("sharpness", "lambda_max").epochs.max()) for c in conds for r in c.runs
               if len(r.series("sharpness", "lambda_max")))
    for ax, (key, ylabel) in zip(axes[:, 0], rows):
        for c in conds:
            plot_mean(ax, c, "sharpness", key, None, styles[c.first.run_id],
                      label=condition_label(c) if key == "lambda_max" else None)
        log_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    lam_ax = axes[0, 0]
    constant, moving = _edges(conds, lambda c: seeds.mean_curve(c, "sharpness", "lambda_max").epochs)
    _edge_hlines(lam_ax, constant)
    for c in moving:  # the edge moves with the scheduled η: a step line over every epoch run
        lr = c.first.series("schedule", "lr")
        epochs = lr.epochs if len(lr) else c.first.series("train", "loss").epochs
        values = np.array([sharpness.run_edge(c.first, e) or np.nan for e in epochs], dtype=float)
        lam_ax.step(*schedule_xy(_Series(epochs, values)), where="pre", color=styles[c.first.run_id].colour,
                    ls=(0, (5, 3)), lw=1.0, zorder=1)
    sched = axes[-1, 0]
    for i, c in enumerate(conds):  # earlier conditions drawn wider, so equal schedules stay visible
        st = styles[c.first.run_id]
        sched.step(*schedule_xy(c.first.series("schedule", "eta_over_s")), where="pre", color=st.colour,
                   linestyle=st.linestyle, lw=max(3.0 - 0.6 * i, 1.0), alpha=0.85)
    log_axis(sched, values=[float(v) for c in conds for v in c.first.series("schedule", "eta_over_s").values],
             ratio=True)
    epoch_axis(sched)
    sched.set_ylabel("η/S schedule (log)")
    sched.set_xlabel("epoch")
    sched.grid(alpha=0.3, which="both")
    for ax in axes[:, 0]:
        epoch_limits(ax, last)
    marks = [Line2D([], [], color=EDGE_COLOUR, ls=(0, (5, 3)), label=EDGE_LABEL + (" (run colour: η scheduled)"
                                                                                  if moving else ""))]
    if seeds.max_seeds(conds) > 1:
        marks.append(Patch(color="0.3", alpha=BAND_ALPHA, label=BAND_NOTE))
    handles = lam_ax.get_legend_handles_labels()[0]
    if len(handles) <= MAX_ENTRIES:
        figure_legend(fig, axes, [("runs (colour = base η/S)", handles), ("marks", marks)])
    else:
        figure_legend(fig, axes, [("marks", marks)], norm=norm, ratios=[c.eta_over_s for c in conds],
                      ratio_label="base " + ETA_S_LABEL)
    fig.suptitle(f"{title}: sharpness along training", wrap=True)
    return fig


class _Series:
    """The two arrays :func:`schedule_xy` reads."""

    def __init__(self, epochs, values):
        self.epochs, self.values = np.asarray(epochs), np.asarray(values)

    def __len__(self) -> int:
        return len(self.epochs)


# ------------------------------------------------------------------------ sharpness_vs_loss
LOSS_AXIS_LABEL = "training loss (mean over the epoch, log scale)"


def sharpness_vs_loss(eq: sharpness.EqualLoss, styles: dict[str, RunStyle], norm: LogNorm,
                      title: str) -> Figure | None:
    """λ_max (and Tr(H) ± s.e.) against training loss, one line per run along its trajectory.

    Training moves each line from right (high loss) to left; the last measurement is ringed in
    black. The grey band is the loss range the runs are compared over, the dotted lines the
    levels of the report's table: at one of them, colour (η/S) should order the heights. Seeds of
    one condition share its colour and line style (trajectories are not averaged: each seed
    reaches a loss at its own epoch).
    """
    paths, levels = eq.paths, eq.levels
    if not paths:
        return None
    with_trace = any(np.isfinite(p.trace).any() for p in paths)
    panels = [("lambda_max", "λ_max, largest Hessian eigenvalue (log)")]
    if with_trace:
        panels.append(("trace", "Tr(H), Hessian trace (log, bars ±1 s.e.)"))
    fig, axes = new_figure(1, len(panels), width=5.6, height=4.4, sharex=True)
    cond_of = seeds.condition_of([p.run for p in paths])
    labelled: set[str] = set()
    for ax, (key, ylabel) in zip(axes[0], panels):
        if levels.span is not None:
            ax.axvspan(*levels.span, color="0.88", zorder=0, lw=0)
            for level in levels.levels:
                ax.axvline(level, color="0.45", ls=":", lw=1.0, zorder=1)
        for p in paths:
            st = styles[p.run.run_id]
            y = getattr(p, key)
            ok = np.isfinite(y) & (y > 0)
            if not ok.any():
                continue
            x, y = p.loss[ok], y[ok]
            cond = cond_of[p.run.run_id]
            label = None
            if key == "lambda_max" and cond.key not in labelled:
                labelled.add(cond.key)
                label = condition_label(cond)
            ax.plot(x, y, color=st.colour, linestyle=st.linestyle, marker=st.marker, markersize=4, lw=1.4,
                    label=label, zorder=3)
            if key == "trace":
                err = p.trace_stderr[ok]
                has = np.isfinite(err)
                if has.any():
                    ax.errorbar(x[has], y[has], yerr=err[has], fmt="none", ecolor=st.colour, elinewidth=0.9,
                                capsize=2, zorder=2)
            ax.scatter(x[-1:], y[-1:], s=70, facecolor="none", edgecolor="black", linewidth=1.1, zorder=4)
        log_axis(ax, "x")
        log_axis(ax)
        ax.set_xlabel(LOSS_AXIS_LABEL)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    lam_ax = axes[0, 0]
    first_path: dict[str, sharpness.LossPath] = {}
    for p in paths:
        first_path.setdefault(cond_of[p.run.run_id].key, p)
    conds = list({cond_of[p.run.run_id].key: cond_of[p.run.run_id] for p in paths}.values())
    constant, moving = _edges(conds, lambda c: first_path[c.key].epochs)
    _edge_hlines(lam_ax, constant)
    for p in paths:  # a scheduled η moves the edge along the trajectory: drawn against the same losses
        if cond_of[p.run.run_id] in moving:
            lam_ax.plot(p.loss, p.edge, color=styles[p.run.run_id].colour, ls=(0, (5, 3)), lw=1.0, zorder=1)
    extra = [Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=8, label="last measurement"),
             Line2D([], [], color=EDGE_COLOUR, ls=(0, (5, 3)), label=EDGE_LABEL + (" (run colour: η scheduled)"
                                                                                  if moving else ""))]
    if levels.span is not None:
        extra.append(Patch(color="0.88", label="loss range compared" + ("" if levels.common else
                                                                          f" (≥ {levels.min_runs} runs)")))
        extra.append(Line2D([], [], color="0.45", ls=":", label="levels in the table"))
    handles = lam_ax.get_legend_handles_labels()[0]
    if len(handles) > MAX_ENTRIES:  # too many conditions to name: the η/S key tells them apart
        figure_legend(fig, axes, [("marks", extra)], norm=norm, ratios=[p.run.eta_over_s for p in paths],
                      where="bottom")
    else:
        figure_legend(fig, axes, [("runs (colour = η/S)", handles), ("marks", extra)], where="bottom")
    fig.suptitle(f"{title}: sharpness at equal training loss (training runs right → left)", wrap=True)
    return fig
