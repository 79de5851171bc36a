"""The report's figures, one function per ``report.figures`` kind; each writes one PNG and returns its path.

Every function receives only runs that may be drawn (failed and diverged runs are filtered out
by the caller) and returns None when there is nothing to draw, so a half-finished sweep still
gets the figures it can have.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tfminima.report import numbers, paper
from tfminima.report.loading import Run
from tfminima.report.style import (
    CMAP,
    ETA_S_LABEL,
    MARKERS,
    PAIR_COLOURS,
    SVAG_CMAP,
    PlainLogFormatter,
    RunStyle,
    colourbar,
    epoch_axis,
    legend,
    log_axis,
    new_figure,
    save,
    schedule_xy,
)

METRIC_LABELS = {
    "val_accuracy": "final validation accuracy (%)",
    "test_accuracy": "test accuracy (%)",
    "lambda_max": "λ_max, largest Hessian eigenvalue",
    "trace": "Tr(H), Hessian trace",
}
PERCENT = {"val_accuracy", "test_accuracy", "train_accuracy", "noisy_accuracy"}


def _shown(metric: str, value: float | None) -> float | None:
    """Accuracies are drawn in percent."""
    if value is None:
        return None
    return value * 100 if metric in PERCENT else value


def _plot_series(ax, series, style: RunStyle, label: str | None, scale: float = 1.0, **kwargs) -> None:
    if len(series):
        marker = style.marker if len(series) <= 30 else None
        ax.plot(series.epochs, series.values * scale, color=style.colour, linestyle=style.linestyle,
                marker=marker, markersize=3, label=label, **kwargs)


# ----------------------------------------------------------------------------------- curves
def curves(runs: list[Run], styles: dict[str, RunStyle], norm: LogNorm, title: str, path: Path) -> Path | None:
    """Train and validation loss and accuracy against epoch, one line per run, coloured by η/S."""
    if not any(len(r.series("train", "loss")) for r in runs):
        return None
    fig, axes = new_figure(2, 2, sharex=True)
    panels = [
        (axes[0, 0], "train", "loss", None, "training loss (cross-entropy)"),
        (axes[0, 1], "eval", "loss", "val", "validation loss (cross-entropy)"),
        (axes[1, 0], "train", "accuracy", None, "training accuracy (%)"),
        (axes[1, 1], "eval", "accuracy", "val", "validation accuracy (%)"),
    ]
    for ax, kind, key, split, ylabel in panels:
        for r in runs:
            scale = 100.0 if key == "accuracy" else 1.0
            label = f"{r.name}  (η/S={r.eta_over_s:.3g})" if ax is axes[0, 0] else None
            _plot_series(ax, r.series(kind, key, split), styles[r.run_id], label, scale, lw=1.2)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        epoch_axis(ax)
        if key == "loss":
            log_axis(ax)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    legend(axes[0, 0], loc="upper right")
    colourbar(fig, axes, norm)
    fig.suptitle(f"{title}: training curves, colour = η/S")
    return save(fig, path)


# ------------------------------------------------------------------------------- eta_over_s
FACTORS = (  # what else may differ between runs with equal η/S: (label, value of a run)
    ("S", lambda r: r.batch_size, lambda v: f"S={v}"),
    ("β", lambda r: r.momentum, lambda v: f"β={v:g}"),
    ("noise", lambda r: r.label_noise, lambda v: f"noise={v:.0%}"),
    ("N", lambda r: r.train_size, lambda v: f"N={v}"),
)


def factor_keys(runs: list[Run]) -> dict[str, str]:
    """Per run, the factors that vary across ``runs`` besides η/S (``S=32, β=0.9``): its marker's name."""
    varying = [(get, fmt) for _, get, fmt in FACTORS if numbers.varies(get(r) for r in runs)]
    return {r.run_id: ", ".join(fmt(get(r)) for get, fmt in varying) for r in runs}


def eta_over_s(runs: list[Run], metrics: list[str], norm: LogNorm, title: str, path: Path,
               correlations: dict[tuple[str, str], numbers.Correlation | None]) -> Path | None:
    """Final metrics against η/S (and η/(S(1−β)) when β varies); iso-ratio runs joined by a bar.

    Marker shape tells apart the runs sharing an η/S (by batch size, momentum, ...), nudged
    sideways so none hides another; the dashed line joins the mean of each η/S value, so the
    trend the paper claims is visible at a glance.
    """
    if not runs or not metrics:
        return None
    key_of = factor_keys(runs)
    scales = [("eta_over_s", lambda r: r.eta_over_s, ETA_S_LABEL)]
    if numbers.varies(r.momentum for r in runs):
        scales.append(("eta_over_s_momentum", lambda r: r.eta_over_s_momentum, "η/(S(1−β)), momentum-corrected"))
    keys = sorted(set(key_of.values()))
    marker_of = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(keys)}
    panels = [(scale, metric) for scale in scales for metric in metrics]
    ncols = len(metrics) if len(scales) > 1 or len(metrics) <= 2 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(nrows, ncols, width=4.6, height=3.6)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, ((scale_name, scale, xlabel), metric) in zip(axes.flat, panels):
        groups = numbers.iso_ratio_groups(runs, scale)
        _ratio_panel(ax, groups, metric, norm, key_of, marker_of)
        log_axis(ax, "x", list(groups))
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(alpha=0.3, which="both")
        corr = correlations.get((metric, scale_name))
        ax.set_title("Spearman ρ = " + (f"{corr.rho:.2f} (n={corr.n})" if corr else "n/a"), fontsize=9)
    handles = [Line2D([], [], marker=marker_of[k], color="0.4", linestyle="", label=k) for k in keys if k]
    handles.append(Line2D([], [], color="0.55", lw=3, alpha=0.45, label="runs with equal η/S (range)"))
    handles.append(Line2D([], [], color="0.35", ls="--", label="mean per η/S"))
    axes[0, 0].legend(handles=handles, fontsize=7, loc="best")
    colourbar(fig, axes, norm)
    fig.suptitle(f"{title}: end-point metrics against the noise scale")
    return save(fig, path)


def _ratio_panel(ax, groups: dict[float, list[Run]], metric: str, norm: LogNorm, key_of: dict, marker_of: dict) -> None:
    """One metric against one noise scale: a marker per run, a bar per iso-ratio group, the means joined."""
    means_x, means_y = [], []
    for x, members in groups.items():
        pts = [(r, _shown(metric, r.final(metric))) for r in members]
        pts = [(r, y) for r, y in pts if y is not None and math.isfinite(y)]
        if not pts:
            continue
        vals = [y for _, y in pts]
        if len(pts) > 1:
            ax.vlines(x, min(vals), max(vals), color="0.55", lw=3, alpha=0.45, zorder=1)
        means_x.append(x)
        means_y.append(float(np.mean(vals)))
        for i, (r, y) in enumerate(pts):
            nudge = 1.0 + 0.04 * (i - (len(pts) - 1) / 2)  # multiplicative: the axis is logarithmic
            ax.scatter([x * nudge], [y], color=CMAP(norm(r.eta_over_s)), marker=marker_of[key_of[r.run_id]],
                       edgecolor="black", linewidth=0.5, s=42, zorder=3)
    if means_x:
        ax.plot(means_x, means_y, "--", color="0.35", lw=1, zorder=2)
    if metric in ("lambda_max", "trace") and means_y and min(means_y) > 0:
        log_axis(ax)


# ---------------------------------------------------------------------------------- heatmap
def _edges(values: list[float]) -> np.ndarray:
    """Cell edges on a log axis: geometric midpoints, a factor √2 beyond a lone value."""
    v = np.log(np.asarray(values, dtype=float))
    if len(v) == 1:
        mids = np.array([v[0] - 0.35, v[0] + 0.35])
    else:
        inner = (v[:-1] + v[1:]) / 2
        mids = np.concatenate([[v[0] - (inner[0] - v[0])], inner, [v[-1] + (v[-1] - inner[-1])]])
    return np.exp(mids)


def heatmap(runs: list[Run], metrics: list[str], norm: LogNorm, title: str, path: Path) -> Path | None:
    """The η × S grid (rows S, columns η, log axes) of end-point metrics, iso-ratio lines drawn over it.

    On log axes a line of constant η/S is a diagonal; its colour is the η/S colour of every figure.
    Cells with several runs (seeds, other axes) show the mean and the count.
    """
    grid_runs = [r for r in runs if r.lr and r.batch_size]
    if not grid_runs or not metrics:
        return None
    etas = sorted({r.lr for r in grid_runs})
    sizes = sorted({r.batch_size for r in grid_runs})
    xe, ye = _edges(etas), _edges(sizes)
    fig, axes = new_figure(1, len(metrics), width=5.4, height=5.0)
    for ax, metric in zip(axes[0], metrics):
        cells = np.full((len(sizes), len(etas)), np.nan)
        counts = np.zeros_like(cells, dtype=int)
        for i, s in enumerate(sizes):
            for j, eta in enumerate(etas):
                vals = [_shown(metric, r.final(metric)) for r in grid_runs if r.batch_size == s and r.lr == eta]
                vals = [v for v in vals if v is not None and math.isfinite(v)]
                if vals:
                    cells[i, j], counts[i, j] = float(np.mean(vals)), len(vals)
        sharp = metric in ("lambda_max", "trace")
        finite = cells[np.isfinite(cells)]
        cnorm = LogNorm(finite.min(), finite.max()) if sharp and len(finite) and finite.min() > 0 else None
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(cells), cmap="magma_r" if sharp else "RdYlGn",
                             norm=cnorm, shading="flat")
        bar = fig.colorbar(mesh, ax=ax, label=METRIC_LABELS[metric], shrink=0.9)
        if cnorm is not None:
            bar.ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
            bar.ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))
        for i, s in enumerate(sizes):
            for j, eta in enumerate(etas):
                if counts[i, j]:
                    text = f"{cells[i, j]:.1f}" if not sharp else f"{cells[i, j]:.3g}"
                    if counts[i, j] > 1:
                        text += f"\nn={counts[i, j]}"
                    ax.text(math.sqrt(xe[j] * xe[j + 1]), math.sqrt(ye[i] * ye[i + 1]), text,
                            ha="center", va="center", fontsize=7, color="black",
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.6, "lw": 0})
        for ratio in numbers.iso_ratio_groups(grid_runs):
            xs = np.array([xe[0], xe[-1]])
            ax.plot(xs, xs / ratio, "--", color=CMAP(norm(ratio)), lw=1.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
        ax.set_xticks(etas, [f"{e:g}" for e in etas])
        ax.set_yticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("learning rate η")
        ax.set_ylabel("batch size S")
        ax.set_title(METRIC_LABELS[metric], fontsize=9)
    colourbar(fig, axes, norm, label="η/S of the dashed iso-ratio diagonals", location="bottom")
    fig.suptitle(f"{title}: η × S grid (dashed: equal η/S)")
    return save(fig, path)


# ---------------------------------------------------------------------------- interpolation
def interpolation(results: list[dict], norm: LogNorm, title: str, path: Path) -> Path | None:
    """Loss (log) and accuracy along (1−α)θ_A + αθ_B for each pair; train solid, validation dashed.

    The vertical lines at α = 0 and 1 carry the η/S colours of A and B.
    """
    if not results:
        return None
    fig, axes = new_figure(len(results), 2, width=5.0, height=3.3)
    for row, res in zip(axes, results):
        alphas = np.asarray(res["alphas"], dtype=float)
        for split, style in (("train", "-"), ("val", "--")):
            loss, acc = res.get(f"{split}_loss"), res.get(f"{split}_accuracy")
            if loss:
                row[0].plot(alphas, _floats(loss), style, color="black", label=split)
            if acc:
                row[1].plot(alphas, _floats(acc) * 100, style, color="black", label=split)
        for ax in row:
            for alpha, side in ((0.0, "a"), (1.0, "b")):
                ratio = res.get(f"eta_over_s_{side}")
                ax.axvline(alpha, color=CMAP(norm(ratio)) if ratio else "0.5", lw=2, alpha=0.8)
            ax.set_xlabel("α   (0: run A, 1: run B)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        log_axis(row[0])
        row[0].set_ylabel("cross-entropy loss (log)")
        row[1].set_ylabel("accuracy (%)")
        row[0].set_title(f"A = {res['run_a']} (η/S={_g(res.get('eta_over_s_a'))})\n"
                         f"B = {res['run_b']} (η/S={_g(res.get('eta_over_s_b'))})", fontsize=8, loc="left")
    colourbar(fig, axes, norm, label="η/S of the end points (vertical lines)")
    fig.suptitle(f"{title}: interpolation between minima")
    return save(fig, path)


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _g(value) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "?"


# ---------------------------------------------------------------------------- paired_curves
def paired_curves(pairs: list[tuple[Run, Run]], title: str, path: Path) -> Path | None:
    """Each pair's accuracy and loss overlaid (train solid, val dashed), its schedules beneath.

    Paired runs share η/S by design, so here colour tells the two runs apart (blue A, red B);
    the η/S row below shows the schedules really are equal.
    """
    if not pairs:
        return None
    fig, axes = new_figure(4, len(pairs), width=4.8, height=2.6, sharex="col")
    for col, (a, b) in enumerate(pairs):
        acc, loss, ratio, lr = axes[:, col]
        for run, colour in zip((a, b), PAIR_COLOURS):
            for kind, split, ls, what in (("train", None, "-", "train"), ("eval", "val", "--", "val")):
                s = run.series(kind, "accuracy", split)
                acc.plot(s.epochs, s.values * 100, ls, color=colour, label=f"{run.name} {what}")
                s = run.series(kind, "loss", split)
                loss.plot(s.epochs, s.values, ls, color=colour)
            width, alpha = (3.5, 0.6) if run is a else (1.5, 1.0)
            ratio.step(*schedule_xy(run.series("schedule", "eta_over_s")), where="pre", color=colour, lw=width,
                       alpha=alpha, label=run.name)
            lr.step(*schedule_xy(run.series("schedule", "lr")), where="pre", color=colour, lw=width, alpha=alpha)
        twin = lr.twinx()
        for run, colour in zip((a, b), PAIR_COLOURS):
            twin.step(*schedule_xy(run.series("schedule", "batch_size")), where="pre", color=colour, ls=":", lw=1.5)
        twin.set_ylabel("batch size S (dotted)")
        log_axis(twin, values=_schedule_values((a, b), "batch_size"))
        acc.set_title(f"{a.name}  vs  {b.name}", fontsize=9)
        acc.set_ylabel("accuracy (%)")
        loss.set_ylabel("loss (log)")
        log_axis(loss)
        ratio.set_ylabel("η/S schedule")
        log_axis(ratio, values=_schedule_values((a, b), "eta_over_s"))
        lr.set_ylabel("learning rate η (solid)")
        log_axis(lr, values=_schedule_values((a, b), "lr"))
        lr.set_xlabel("epoch")
        for ax in (acc, loss, ratio, lr):
            ax.grid(alpha=0.3)
            epoch_axis(ax)
        acc.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title}: paired runs with equal η/S at every epoch (train solid, val dashed)")
    return save(fig, path)


def _schedule_values(runs, key: str) -> list[float]:
    return [float(v) for r in runs for v in r.series("schedule", key).values]


# ----------------------------------------------------------------------------- memorization
def memorization(runs: list[Run], styles: dict[str, RunStyle], norm: LogNorm, title: str, path: Path) -> Path | None:
    """Clean validation accuracy against memorisation, a point per epoch, one panel per noise level.

    A run's points are joined in epoch order; its validation peak is ringed in black.
    """
    levels = sorted({r.label_noise for r in runs if len(numbers.memorization_points(r)[0])})
    if not levels:
        return None
    fig, axes = new_figure(1, len(levels), width=5.2, height=4.4, sharey=True)
    for ax, level in zip(axes[0], levels):
        for r in (r for r in runs if r.label_noise == level):
            epochs, mem, val = numbers.memorization_points(r)
            if not len(epochs):
                continue
            colour = styles[r.run_id].colour
            ax.plot(mem * 100, val * 100, "-", color=colour, lw=0.8, alpha=0.5)
            ax.scatter(mem * 100, val * 100, color=colour, marker=styles[r.run_id].marker, s=12, zorder=3)
            peak = numbers.memorization_summary(r)
            ax.scatter([peak.mem_at_peak * 100], [peak.peak_val * 100], s=70, facecolor="none",
                       edgecolor="black", linewidth=1.2, zorder=4)
        ax.set_title(f"label noise {level:.0%}", fontsize=10)
        ax.set_xlabel("memorisation: accuracy on the noisy-label subset (%)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("clean validation accuracy (%)")
    axes[0, 0].legend(handles=[Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=8,
                                      label="peak validation accuracy of a run")], fontsize=7, loc="lower left")
    colourbar(fig, axes, norm)
    fig.suptitle(f"{title}: generalisation against memorisation (a point per epoch)")
    return save(fig, path)


# ----------------------------------------------------------------------------- beta_scaling
def beta_scaling(points: list[numbers.BetaPoint], title: str, path: Path) -> Path | None:
    """Validation accuracy against β (η = η₀β, S = S₀β) per training-set size, the paper's beside it."""
    drawn = [p for p in points if p.run.final("val_accuracy") is not None]
    if not drawn:
        return None
    fig, axes = new_figure(1, 2, width=5.0, height=3.8)
    ours, theirs = axes[0]
    sizes = sorted({p.train_size or 0 for p in drawn})
    for i, n in enumerate(sizes):
        pts = [p for p in drawn if (p.train_size or 0) == n]
        ours.plot([p.beta for p in pts], [p.run.final("val_accuracy") * 100 for p in pts],
                  marker=MARKERS[i % len(MARKERS)], color=f"C{i}", label=f"N = {n}")
    ratios = sorted({numbers.ratio_key(p.run.eta_over_s) for p in drawn})
    ours.set_title(f"this run: η/S = {', '.join(f'{r:.3g}' for r in ratios)}", fontsize=9)
    for i, (n, accs) in enumerate((k, v) for k, v in paper.E5_VAL_ACCURACY.items() if isinstance(k, int)):
        theirs.plot(paper.E5_BETAS, accs, marker=MARKERS[i], color="0.3" if i == 0 else "0.6", label=f"N = {n}")
    theirs.set_title(f"paper: {paper.E5_VAL_ACCURACY['setting']}", fontsize=9)
    for ax in (ours, theirs):
        ax.set_xlabel("β   (η = η₀β, S = S₀β: η/S fixed)")
        ax.set_ylabel("final validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: where the η/S rule breaks")
    return save(fig, path)


# --------------------------------------------------------------------- sharpness_trajectory
def sharpness_trajectory(runs: list[Run], styles: dict[str, RunStyle], norm: LogNorm, title: str,
                         path: Path) -> Path | None:
    """λ_max (and Tr(H)) against epoch per run, the η/S schedule beneath on the same epoch axis."""
    runs = [r for r in runs if len(r.series("sharpness", "lambda_max"))]
    if not runs:
        return None
    with_trace = any(len(r.series("sharpness", "trace")) for r in runs)
    rows = [("lambda_max", "λ_max (log)")] + ([("trace", "Tr(H) (log)")] if with_trace else [])
    fig, axes = new_figure(len(rows) + 1, 1, width=8.5, height=2.8, sharex=True)
    for ax, (key, ylabel) in zip(axes[:, 0], rows):
        for r in runs:
            _plot_series(ax, r.series("sharpness", key), styles[r.run_id], r.name if key == "lambda_max" else None)
        log_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    sched = axes[-1, 0]
    for i, r in enumerate(runs):  # earlier runs drawn wider, so equal schedules stay visible
        st = styles[r.run_id]
        sched.step(*schedule_xy(r.series("schedule", "eta_over_s")), where="pre", color=st.colour,
                   linestyle=st.linestyle, lw=max(3.0 - 0.6 * i, 1.0), alpha=0.85)
    log_axis(sched, values=_schedule_values(runs, "eta_over_s"))
    epoch_axis(sched)
    sched.set_ylabel("η/S schedule (log)")
    sched.set_xlabel("epoch")
    sched.grid(alpha=0.3, which="both")
    legend(axes[0, 0], loc="best")
    colourbar(fig, axes, norm, label="base " + ETA_S_LABEL)
    fig.suptitle(f"{title}: sharpness along training")
    return save(fig, path)


# --------------------------------------------------------------------------------------- svag
def svag(comparisons: list[numbers.SvagComparison], title: str, path: Path) -> Path | None:
    """Per learning rate, train loss and val accuracy for each SVAG l (l = 1 is plain SGD)."""
    comparisons = [c for c in comparisons if c.runs]
    if not comparisons:
        return None
    ls = sorted({l for c in comparisons for l in c.runs})
    colour_of = {l: SVAG_CMAP(i / max(len(ls) - 1, 1) * 0.85) for i, l in enumerate(ls)}
    fig, axes = new_figure(2, len(comparisons), width=4.6 if len(comparisons) > 1 else 6.0, height=3.2,
                           sharex="col")
    for col, comp in enumerate(comparisons):
        loss_ax, val_ax = axes[:, col]
        for l, run in comp.runs.items():
            label = "l = 1 (SGD)" if l == 1 else f"l = {l}"
            s = run.series("train", "loss")
            loss_ax.plot(s.epochs, s.values, color=colour_of[l], lw=1.4, label=label)
            s = run.series("eval", "accuracy", "val")
            val_ax.plot(s.epochs, s.values * 100, color=colour_of[l], lw=1.4, label=label)
        any_run = next(iter(comp.runs.values()))
        loss_ax.set_title(f"η = {comp.lr:g}, S = {any_run.batch_size}, η/S = {any_run.eta_over_s:.3g}", fontsize=9)
        log_axis(loss_ax)
        epoch_axis(val_ax)
        loss_ax.set_ylabel("training loss (log)")
        val_ax.set_ylabel("validation accuracy (%)")
        val_ax.set_xlabel("epoch (SDE time: l× steps at η/l)")
        for ax in (loss_ax, val_ax):
            ax.grid(alpha=0.3)
        loss_ax.legend(fontsize=7)
    fig.suptitle(f"{title}: SVAG — does SGD follow its SDE limit?")
    return save(fig, path)


# ------------------------------------------------------------------------ sharpness_vs_loss
LOSS_AXIS_LABEL = "training loss (mean over the epoch, log scale)"


def sharpness_vs_loss(paths: list[numbers.LossPath], levels: numbers.LossLevels, styles: dict[str, RunStyle],
                      norm: LogNorm, title: str, path: Path) -> Path | None:
    """λ_max (and Tr(H) ± s.e.) against training loss, one line per run along its trajectory.

    Training moves each line from right (high loss) to left; the last measurement is ringed in
    black. The grey band is the loss range the runs are compared over, the dotted lines the
    levels of the report's table: at one of them, colour (η/S) should order the heights.
    """
    if not paths:
        return None
    with_trace = any(np.isfinite(p.trace).any() for p in paths)
    panels = [("lambda_max", "λ_max, largest Hessian eigenvalue (log)")]
    if with_trace:
        panels.append(("trace", "Tr(H), Hessian trace (log, bars ±1 s.e.)"))
    fig, axes = new_figure(1, len(panels), width=5.6, height=4.4, sharex=True)
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
            label = f"{p.run.name}  (η/S={p.run.eta_over_s:.3g})" if key == "lambda_max" else None
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
    extra = [Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=8, label="last measurement")]
    if levels.span is not None:
        extra.append(Patch(color="0.88", label="loss range compared" + ("" if levels.common else
                                                                          f" (≥ {levels.min_runs} runs)")))
        extra.append(Line2D([], [], color="0.45", ls=":", label="levels in the table"))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if len(handles) > 18:  # too many runs to name: the colour bar tells η/S
        handles, labels = [], []
    handles += extra
    # Below the panels: trajectories fill the whole plot area, a legend inside would hide some.
    fig.legend(handles, labels + [h.get_label() for h in extra], fontsize=7, loc="outside lower center",
               ncol=min(4, len(handles)), frameon=False)
    colourbar(fig, axes, norm)
    fig.suptitle(f"{title}: sharpness at equal training loss (training runs right → left)")
    return save(fig, path)
