"""The report's figures, one function per ``report.figures`` kind; each returns a Figure (or None).

Every function receives only runs that may be drawn (failed and diverged runs are filtered out
by the caller), grouped into conditions (runs equal up to the seed): a condition is drawn as its
mean over seeds with a band (min–max over the seeds) or an error bar (the 95 % bootstrap interval),
and the caption says which. None means nothing to draw, so a half-finished sweep still gets the
figures it can have. The caller saves the figure in each requested format. Sharpness figures are
in :mod:`tfminima.report.figures_sharpness`.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tfminima.formats import eta_over_s as ratio_text
from tfminima.report import numbers, paper, seeds, sharpness
from tfminima.report.loading import Run
from tfminima.report.seeds import Condition
from tfminima.report.style import (
    BAND_ALPHA,
    CMAP,
    ETA_S_LABEL,
    MARKERS,
    MAX_ENTRIES,
    PAIR_COLOURS,
    SVAG_CMAP,
    RunStyle,
    epoch_axis,
    epoch_limits,
    figure_legend,
    label_log_ticks,
    log_axis,
    new_figure,
    schedule_xy,
)

METRIC_LABELS = {
    "val_accuracy": "final validation accuracy (%)",
    "test_accuracy": "test accuracy (%)",
    "lambda_max": "λ_max, largest Hessian eigenvalue",
    "trace": "Tr(H), Hessian trace",
}
PERCENT = {"val_accuracy", "test_accuracy", "train_accuracy", "noisy_accuracy"}
BAND_NOTE = "band: min–max over seeds"
CI_NOTE = "error bar: 95 % bootstrap interval over seeds"


def _shown(metric: str, value: float | None) -> float | None:
    """Accuracies are drawn in percent."""
    if value is None:
        return None
    return value * 100 if metric in PERCENT else value


def plot_mean(ax, cond: Condition, kind: str, key: str, split: str | None, style: RunStyle, *,
              scale: float = 1.0, label: str | None = None, colour=None, lw: float = 1.2, band: bool = True) -> bool:
    """A condition's mean curve over its seeds, with the seeds' min–max as a band; False if it has no points."""
    curve = seeds.mean_curve(cond, kind, key, split)
    if not len(curve):
        return False
    colour = style.colour if colour is None else colour
    marker = style.marker if len(curve) <= 30 else None
    ax.plot(curve.epochs, curve.mean * scale, color=colour, linestyle=style.linestyle, marker=marker, markersize=3,
            lw=lw, label=label)
    if band and (curve.count > 1).any():
        ax.fill_between(curve.epochs, curve.lo * scale, curve.hi * scale, color=colour, alpha=BAND_ALPHA, lw=0)
    return True


def condition_label(cond: Condition) -> str:
    seeds_note = f", {cond.n} seeds" if cond.n > 1 else ""
    return f"{cond.name}  (η/S={ratio_text(cond.eta_over_s)}{seeds_note})"


def _last_epoch(conds: list[Condition], kind: str = "train", key: str = "loss") -> float:
    ends = [r.series(kind, key).epochs[-1] for c in conds for r in c.runs if len(r.series(kind, key))]
    return max(ends, default=1.0)


def _seed_note(conds: list[Condition]) -> str:
    n = seeds.max_seeds(conds)
    return f"; mean over up to {n} seeds, {BAND_NOTE}" if n > 1 else ""


# ----------------------------------------------------------------------------------- curves
def curves(conds: list[Condition], styles: dict[str, RunStyle], norm: LogNorm, title: str) -> Figure | None:
    """Train and validation loss and accuracy against epoch, one mean line per condition, coloured by η/S."""
    if not any(len(r.series("train", "loss")) for c in conds for r in c.runs):
        return None
    fig, axes = new_figure(2, 2, sharex=True)
    panels = [
        (axes[0, 0], "train", "loss", None, "training loss (cross-entropy)"),
        (axes[0, 1], "eval", "loss", "val", "validation loss (cross-entropy)"),
        (axes[1, 0], "train", "accuracy", None, "training accuracy (%)"),
        (axes[1, 1], "eval", "accuracy", "val", "validation accuracy (%)"),
    ]
    for ax, kind, key, split, ylabel in panels:
        for c in conds:
            label = condition_label(c) if ax is axes[0, 0] else None
            plot_mean(ax, c, kind, key, split, styles[c.first.run_id], scale=100.0 if key == "accuracy" else 1.0,
                      label=label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        epoch_axis(ax)
        if key == "loss":
            log_axis(ax)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    handles = axes[0, 0].get_legend_handles_labels()[0]
    if 0 < len(handles) <= MAX_ENTRIES:
        figure_legend(fig, axes, [("runs (colour = η/S)", handles)])
    else:
        figure_legend(fig, axes, [], norm=norm, ratios=[c.eta_over_s for c in conds])
    fig.suptitle(f"{title}: training curves, colour = η/S{_seed_note(conds)}", wrap=True)
    return fig


# ------------------------------------------------------------------------------- eta_over_s
FACTORS = (  # what else may differ between conditions with equal η/S: (label, value of a run)
    ("S", lambda r: r.batch_size, lambda v: f"S={v}"),
    ("β", lambda r: r.momentum, lambda v: f"β={v:g}"),
    ("noise", lambda r: r.label_noise, lambda v: f"noise={v:.0%}"),
    ("N", lambda r: r.train_size, lambda v: f"N={v}"),
)


def factor_keys(runs: list[Run]) -> dict[str, str]:
    """Per run, the factors that vary across ``runs`` besides η/S (``S=32, β=0.9``): its marker's name."""
    varying = [(get, fmt) for _, get, fmt in FACTORS if numbers.varies(get(r) for r in runs)]
    return {r.run_id: ", ".join(fmt(get(r)) for get, fmt in varying) for r in runs}


def eta_over_s(conds: list[Condition], metrics: list[str], norm: LogNorm, title: str,
               correlations: list[tuple[str, dict[tuple[str, str], numbers.Correlation | None]]]) -> Figure | None:
    """Final metrics against η/S (and η/(S(1−β)) when β varies), a marker per condition.

    ``correlations`` holds each stratum's (:func:`seeds.strata`) name and its ρ per (metric, scale): a
    panel's title gives ρ within each stratum, never pooled over strata.

    A condition's marker sits at its mean over seeds with the 95 % interval as an error bar and its
    seeds as small dots; marker shape tells apart conditions sharing an η/S (batch size, momentum,
    ...), nudged sideways so none hides another; the dashed line joins the mean of each η/S value.
    λ_max panels mark each condition's edge of stability 2(1+β)/η with a short bar in its colour.
    """
    if not conds or not metrics:
        return None
    runs = [r for c in conds for r in c.runs]
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
        families = _families(conds, scale)
        _ratio_panel(ax, families, scale, metric, norm, key_of, marker_of)
        log_axis(ax, "x", list(families), ratio=True)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(alpha=0.3, which="both")
        ax.set_title(_rho_title([(name, corr.get((metric, scale_name))) for name, corr in correlations]), fontsize=9)
    marks = [Line2D([], [], marker=marker_of[k], color="0.4", linestyle="", label=k) for k in keys if k]
    summary = [Line2D([], [], color="0.55", lw=3, alpha=0.45, label="conditions with equal η/S (range)"),
               Line2D([], [], color="0.35", ls="--", label="mean per η/S")]
    if seeds.max_seeds(conds) > 1:
        summary += [Line2D([], [], color="0.3", marker="o", ls="", markersize=2.5, label="one seed"),
                    Line2D([], [], color="0.3", marker="|", ls="", markersize=8, label=CI_NOTE)]
    if any(m == "lambda_max" for m in metrics):
        summary.append(Line2D([], [], color="0.3", marker="_", ls="", markersize=12, mew=2,
                              label="2(1+β)/η: edge of stability"))
    figure_legend(fig, axes, [("condition", marks), ("marks", summary)], norm=norm,
                  ratios=[c.eta_over_s for c in conds])
    fig.suptitle(f"{title}: end-point metrics against the noise scale", wrap=True)
    return fig


def _rho_title(correlations: list[tuple[str, numbers.Correlation | None]]) -> str:
    """``Spearman ρ = 0.95 (n=6)``; with strata ``Spearman ρ: noise=25% 1.00 (n=4), noise=50% 0.80 (n=4)``."""
    text = lambda corr: f"{corr.rho:.2f} (n={corr.n})" if corr else "n/a"
    if len(correlations) == 1 and not correlations[0][0]:
        return "Spearman ρ = " + text(correlations[0][1])
    return "Spearman ρ: " + ", ".join(f"{name} {text(corr)}" for name, corr in correlations)


def _families(conds: list[Condition], scale) -> dict[float, list[Condition]]:
    families: dict[float, list[Condition]] = {}
    for c in conds:
        value = scale(c.first)
        if value is not None:
            families.setdefault(numbers.ratio_key(value), []).append(c)
    return dict(sorted(families.items()))


def _ratio_panel(ax, families: dict[float, list[Condition]], scale, metric: str, norm: LogNorm, key_of: dict,
                 marker_of: dict) -> None:
    """One metric against one noise scale: a marker per condition, a bar per iso-ratio family, the means joined."""
    means_x, means_y = [], []
    for x, members in families.items():
        points = []
        for c in members:
            est = c.estimate(metric)
            if est is not None:
                points.append((c, est))
        if not points:
            continue
        vals = [_shown(metric, e.mean) for _, e in points]
        if len(points) > 1:
            ax.vlines(x, min(vals), max(vals), color="0.55", lw=3, alpha=0.45, zorder=1)
        means_x.append(x)
        means_y.append(float(np.mean(vals)))
        for i, (c, est) in enumerate(points):
            xi = x * (1.0 + 0.07 * (i - (len(points) - 1) / 2))  # multiplicative nudge: the axis is logarithmic
            colour = CMAP(norm(c.eta_over_s))
            if est.n > 1:
                ax.scatter([xi] * est.n, [_shown(metric, v) for v in est.values], color=colour, s=6, alpha=0.7,
                           zorder=2, lw=0)
            if est.has_interval:
                ax.errorbar([xi], [_shown(metric, est.mean)], yerr=[[_shown(metric, est.mean - est.lo)],
                                                                     [_shown(metric, est.hi - est.mean)]],
                            fmt="none", ecolor=colour, elinewidth=1.2, capsize=2, zorder=2)
            ax.scatter([xi], [_shown(metric, est.mean)], color=colour, marker=marker_of[key_of[c.first.run_id]],
                       edgecolor="black", linewidth=0.5, s=42, zorder=3)
            if metric == "lambda_max":
                edge = sharpness.run_edge(c.first)
                if edge:
                    ax.plot([xi], [edge], marker="_", markersize=12, mew=2, color=colour, ls="", zorder=3)
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


def heatmap(runs: list[Run], metrics: list[str], norm: LogNorm, title: str) -> Figure | None:
    """The η × S grid (rows S, columns η, log axes) of end-point metrics, iso-ratio lines drawn over it.

    On log axes a line of constant η/S is a diagonal; its colour is the η/S colour of every figure.
    Cells with several runs (seeds, other axes) show the mean and the count; λ_max cells also the
    stability λ_max·η/(2(1+β)) of that mean (1 = the edge of stability).
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
        edges = np.full_like(cells, np.nan)
        for i, s in enumerate(sizes):
            for j, eta in enumerate(etas):
                members = [r for r in grid_runs if r.batch_size == s and r.lr == eta]
                vals = [_shown(metric, r.final(metric)) for r in members]
                vals = [v for v in vals if v is not None and math.isfinite(v)]
                if vals:
                    cells[i, j], counts[i, j] = float(np.mean(vals)), len(vals)
                    edges[i, j] = sharpness.run_edge(members[0]) or np.nan
        sharp = metric in ("lambda_max", "trace")
        finite = cells[np.isfinite(cells)]
        cnorm = LogNorm(finite.min(), finite.max()) if sharp and len(finite) and finite.min() > 0 else None
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(cells), cmap="magma_r" if sharp else "RdYlGn",
                             norm=cnorm, shading="flat")
        bar = fig.colorbar(mesh, ax=ax, label=METRIC_LABELS[metric], shrink=0.9)
        if cnorm is not None:
            label_log_ticks(bar.ax.yaxis)
        for i, s in enumerate(sizes):
            for j, eta in enumerate(etas):
                if counts[i, j]:
                    text = f"{cells[i, j]:.1f}" if not sharp else f"{cells[i, j]:.3g}"
                    if metric == "lambda_max" and math.isfinite(edges[i, j]):
                        text += f"\nstab. {cells[i, j] / edges[i, j]:.2f}"
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
    figure_legend(fig, axes, [], norm=norm, ratios=list(numbers.iso_ratio_groups(grid_runs)),
                  ratio_label="η/S of the dashed diagonals", where="bottom")
    fig.suptitle(f"{title}: η × S grid (dashed: equal η/S)", wrap=True)
    return fig


# ---------------------------------------------------------------------------- interpolation
def interpolation(results: list[dict], norm: LogNorm, title: str) -> Figure | None:
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
                row[0].plot(alphas, _floats(loss), style, color="black")
            if acc:
                row[1].plot(alphas, _floats(acc) * 100, style, color="black")
        for ax in row:
            for alpha, side in ((0.0, "a"), (1.0, "b")):
                ratio = res.get(f"eta_over_s_{side}")
                ax.axvline(alpha, color=CMAP(norm(ratio)) if ratio else "0.5", lw=2, alpha=0.8)
            ax.set_xlabel("α   (0: run A, 1: run B)")
            ax.grid(alpha=0.3)
        log_axis(row[0])
        row[0].set_ylabel("cross-entropy loss (log)")
        row[1].set_ylabel("accuracy (%)")
        row[0].set_title(f"A = {res['run_a']} (η/S={_g(res.get('eta_over_s_a'))})\n"
                         f"B = {res['run_b']} (η/S={_g(res.get('eta_over_s_b'))})", fontsize=8, loc="left")
    lines = [Line2D([], [], color="black", ls="-", label="training set"),
             Line2D([], [], color="black", ls="--", label="validation set")]
    ratios = [res.get(f"eta_over_s_{side}") for res in results for side in "ab"]
    figure_legend(fig, axes, [("split", lines)], norm=norm, ratios=[r for r in ratios if r],
                  ratio_label="η/S of the end points (vertical lines)")
    fig.suptitle(f"{title}: interpolation between minima", wrap=True)
    return fig


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _g(value) -> str:
    return ratio_text(value) if isinstance(value, (int, float)) else "?"


# ---------------------------------------------------------------------------- paired_curves
def paired_curves(pairs: list[tuple[Condition, Condition]], title: str) -> Figure | None:
    """Each pair's accuracy and loss overlaid (train solid, val dashed), its schedules beneath.

    Paired conditions share η/S by design, so here colour tells the two apart (blue A, red B); the
    η/S row below shows the schedules really are equal. Every panel starts at epoch 0, so the
    columns and rows line up.
    """
    if not pairs:
        return None
    fig, axes = new_figure(4, len(pairs), width=4.8, height=2.6, sharex=True)
    last = _last_epoch([c for pair in pairs for c in pair])
    for col, (a, b) in enumerate(pairs):
        acc, loss, ratio, lr = axes[:, col]
        for cond, colour in zip((a, b), PAIR_COLOURS):
            for kind, split, ls in (("train", None, "-"), ("eval", "val", "--")):
                style = RunStyle(colour, ls, "o")
                plot_mean(acc, cond, kind, "accuracy", split, style, scale=100.0, colour=colour)
                plot_mean(loss, cond, kind, "loss", split, style, colour=colour)
            run = cond.first  # the schedule is part of the config: equal for every seed
            width, alpha = (3.5, 0.6) if cond is a else (1.5, 1.0)
            ratio.step(*schedule_xy(run.series("schedule", "eta_over_s")), where="pre", color=colour, lw=width,
                       alpha=alpha)
            lr.step(*schedule_xy(run.series("schedule", "lr")), where="pre", color=colour, lw=width, alpha=alpha)
        twin = lr.twinx()
        for cond, colour in zip((a, b), PAIR_COLOURS):
            twin.step(*schedule_xy(cond.first.series("schedule", "batch_size")), where="pre", color=colour,
                      ls=":", lw=1.5)
        twin.set_ylabel("batch size S (dotted)")
        log_axis(twin, values=_schedule_values((a.first, b.first), "batch_size"))
        acc.set_title(f"A: {a.name}  vs  B: {b.name}", fontsize=9)
        acc.set_ylabel("accuracy (%)")
        loss.set_ylabel("loss (log)")
        log_axis(loss)
        ratio.set_ylabel("η/S schedule")
        log_axis(ratio, values=_schedule_values((a.first, b.first), "eta_over_s"), ratio=True)
        lr.set_ylabel("learning rate η (solid)")
        log_axis(lr, values=_schedule_values((a.first, b.first), "lr"))
        lr.set_xlabel("epoch")
        for ax in (acc, loss, ratio, lr):
            ax.grid(alpha=0.3)
            epoch_axis(ax)
            epoch_limits(ax, last)
    runs = [Line2D([], [], color=PAIR_COLOURS[0], lw=2, label="A (first of each pair)"),
            Line2D([], [], color=PAIR_COLOURS[1], lw=2, label="B (second)")]
    lines = [Line2D([], [], color="0.3", ls="-", label="train"), Line2D([], [], color="0.3", ls="--", label="validation")]
    if seeds.max_seeds([c for pair in pairs for c in pair]) > 1:
        lines.append(Patch(color="0.3", alpha=BAND_ALPHA, label=BAND_NOTE))
    figure_legend(fig, axes, [("pair", runs), ("curves", lines)])
    fig.suptitle(f"{title}: paired runs with equal η/S at every epoch (train solid, val dashed)", wrap=True)
    return fig


def _schedule_values(runs, key: str) -> list[float]:
    return [float(v) for r in runs for v in r.series("schedule", key).values]


# ----------------------------------------------------------------------------- memorization
def memorization(runs: list[Run], styles: dict[str, RunStyle], norm: LogNorm, title: str) -> Figure | None:
    """Clean validation accuracy against memorisation, a point per epoch, one panel per noise level.

    A run's points are joined in epoch order; its validation peak is ringed in black. Seeds are
    drawn one by one (a mean over seeds would mix different memorisation levels).
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
    ring = Line2D([], [], marker="o", ls="", mfc="none", mec="black", ms=8, label="peak validation accuracy of a run")
    figure_legend(fig, axes, [("marks", [ring])], norm=norm, ratios=[r.eta_over_s for r in runs])
    fig.suptitle(f"{title}: generalisation against memorisation (a point per epoch)", wrap=True)
    return fig


# ----------------------------------------------------------------------------- beta_scaling
def beta_scaling(points: list[numbers.BetaPoint], conds: dict[str, Condition], title: str) -> Figure | None:
    """Validation accuracy against β (η = η₀β, S = S₀β) per training-set size, the paper's beside it.

    A point per condition (mean over seeds, error bar: 95 % bootstrap interval).
    """
    drawn = [p for p in points if p.run.final("val_accuracy") is not None]
    if not drawn:
        return None
    fig, axes = new_figure(1, 2, width=5.0, height=3.8)
    ours, theirs = axes[0]
    sizes = sorted({p.train_size or 0 for p in drawn})
    for i, n in enumerate(sizes):
        xs, ys, lo, hi = [], [], [], []
        for p in drawn:
            if (p.train_size or 0) != n or (xs and p.beta == xs[-1]):
                continue  # one point per β: the condition's mean over its seeds
            est = conds[p.run.run_id].estimate("val_accuracy")
            xs.append(p.beta)
            ys.append(est.mean * 100)
            lo.append((est.mean - (est.lo if est.has_interval else est.mean)) * 100)
            hi.append(((est.hi if est.has_interval else est.mean) - est.mean) * 100)
        ours.errorbar(xs, ys, yerr=[lo, hi], marker=MARKERS[i % len(MARKERS)], color=f"C{i}", capsize=2,
                      label=f"N = {n}")
    ratios = sorted({numbers.ratio_key(p.run.eta_over_s) for p in drawn})
    ours.set_title(f"this run: η/S = {', '.join(ratio_text(r) for r in ratios)}", fontsize=9)
    for i, (n, accs) in enumerate((k, v) for k, v in paper.E5_VAL_ACCURACY.items() if isinstance(k, int)):
        theirs.plot(paper.E5_BETAS, accs, marker=MARKERS[i], color="0.3" if i == 0 else "0.6", label=f"paper, N = {n}")
    theirs.set_title(f"paper: {paper.E5_VAL_ACCURACY['setting']}", fontsize=9)
    for ax in (ours, theirs):
        ax.set_xlabel("β   (η = η₀β, S = S₀β: η/S fixed)")
        ax.set_ylabel("final validation accuracy (%)")
        ax.grid(alpha=0.3)
    sections = [("these runs" + (f" ({CI_NOTE})" if seeds.max_seeds(conds.values()) > 1 else ""),
                 ours.get_legend_handles_labels()[0]), ("the paper", theirs.get_legend_handles_labels()[0])]
    figure_legend(fig, axes, sections)
    fig.suptitle(f"{title}: where the η/S rule breaks", wrap=True)
    return fig


# --------------------------------------------------------------------------------------- svag
def svag(comparisons: list[numbers.SvagComparison], conds: dict[str, Condition], title: str) -> Figure | None:
    """Per learning rate, train loss and val accuracy for each SVAG l (l = 1 is plain SGD), means over seeds."""
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
            style = RunStyle(colour_of[l], "-", "o")
            plot_mean(loss_ax, conds[run.run_id], "train", "loss", None, style, lw=1.4)
            plot_mean(val_ax, conds[run.run_id], "eval", "accuracy", "val", style, scale=100.0, lw=1.4)
        any_run = next(iter(comp.runs.values()))
        loss_ax.set_title(f"η = {comp.lr:g}, S = {any_run.batch_size}, η/S = {ratio_text(any_run.eta_over_s)}", fontsize=9)
        log_axis(loss_ax)
        epoch_axis(val_ax)
        loss_ax.set_ylabel("training loss (log)")
        val_ax.set_ylabel("validation accuracy (%)")
        val_ax.set_xlabel("epoch (SDE time: l× steps at η/l)")
        for ax in (loss_ax, val_ax):
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colour_of[l], lw=2, label="l = 1 (SGD)" if l == 1 else f"l = {l}") for l in ls]
    if seeds.max_seeds(conds.values()) > 1:
        handles.append(Patch(color="0.3", alpha=BAND_ALPHA, label=BAND_NOTE))
    figure_legend(fig, axes, [("SVAG l", handles)])
    fig.suptitle(f"{title}: SVAG — does SGD follow its SDE limit?", wrap=True)
    return fig
