"""Assemble the report: per group its figures and markdown section, then ``REPORT.md`` indexing them all.

Each ``report.figures`` kind maps to one ``_section_<kind>`` function that draws its PNG (through
:mod:`figures`) and writes its text (through :mod:`markdown`) from the same computed numbers.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tfminima.report import figures, markdown, numbers
from tfminima.report.loading import Group, Run, load_groups, slug
from tfminima.report.style import ratio_norm, run_styles


class NoRunsError(Exception):
    """The directory holds no run directories (nothing with config.yaml and status.json)."""


@dataclasses.dataclass
class Context:
    """What every section needs: the group, its drawable runs, colours, and where files go."""

    group: Group
    runs: list[Run]  # drawable: not failed, not diverged
    completed: list[Run]  # for end-point figures: final numbers exist
    out: Path
    norm: object
    styles: dict

    @property
    def title(self) -> str:
        return self.group.experiment

    def path(self, kind: str) -> Path:
        return self.out / f"{kind}.png"


@dataclasses.dataclass
class Section:
    kind: str
    title: str
    figure: Path | None
    text: str


@dataclasses.dataclass
class GroupReport:
    group: Group
    out: Path
    sections: list[Section]

    def markdown(self, prefix: str = "") -> str:
        """The group's section; image links are ``prefix`` + file name."""
        g = self.group
        states = Counter(r.state for r in g.runs)
        lines = [f"## {g.name}\n",
                 f"Experiment `{g.experiment}`, {len(g.runs)} runs ("
                 + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + f"), folder `{g.path}`.\n"]
        spec = g.spec
        if spec is not None and spec.description:
            lines.append(spec.description.strip() + "\n")
        skipped = [r for r in g.runs if not r.plotted]
        if skipped:
            lines.append("Not drawn (no trustworthy numbers): "
                         + ", ".join(f"`{r.run_id}` ({r.state})" for r in skipped) + ".\n")
        for s in self.sections:
            lines.append(f"### {s.title}\n")
            if s.figure is not None:
                lines.append(markdown.image(prefix + s.figure.name, s.title))
            lines.append(s.text)
        lines.append("### Runs\n")
        lines.append(markdown.runs_table(g))
        return "\n".join(lines)


# --------------------------------------------------------------------------------- sections
def _section_curves(ctx: Context) -> Section:
    fig = figures.curves(ctx.runs, ctx.styles, ctx.norm, ctx.title, ctx.path("curves"))
    text = "Loss (log scale) and accuracy against epoch for every drawn run; colour = η/S, " \
           "line style tells apart runs with equal η/S.\n"
    return Section("curves", "Training curves", fig, text if fig else "No training events yet.\n")


def _end_metrics(runs: list[Run]) -> list[str]:
    """The end-point metrics at least one run has (λ_max and Tr(H) only with the sharpness monitor)."""
    return [m for m in ("val_accuracy", "test_accuracy", "lambda_max", "trace") if any(r.final(m) is not None for r in runs)]


def correlations(runs: list[Run], metrics: list[str]) -> dict[tuple[str, str], numbers.Correlation | None]:
    """Spearman ρ of each metric with η/S, and with η/(S(1−β)) when the momentum varies."""
    scales = {"eta_over_s": lambda r: r.eta_over_s}
    if numbers.varies(r.momentum for r in runs):
        scales["eta_over_s_momentum"] = lambda r: r.eta_over_s_momentum
    return {(m, name): numbers.spearman([scale(r) for r in runs], [r.final(m) for r in runs])
            for name, scale in scales.items() for m in metrics}


def _section_eta_over_s(ctx: Context) -> Section:
    runs = ctx.completed
    metrics = _end_metrics(runs)
    corr = correlations(runs, metrics)
    fig = figures.eta_over_s(runs, metrics, ctx.norm, ctx.title, ctx.path("eta_over_s"), corr)
    if not metrics:
        return Section("eta_over_s", "End-point metrics against η/S", None, "No completed runs with final metrics.\n")
    text = markdown.correlations_text(corr) + "\n" + markdown.iso_text(numbers.iso_spreads(runs, "val_accuracy"))
    if numbers.varies(r.momentum for r in runs):
        spreads = numbers.iso_spreads(runs, "val_accuracy", lambda r: r.eta_over_s_momentum)
        text += "\n" + markdown.iso_text(spreads, "η/(S(1−β))")
    text += markdown.e1_paper_text(ctx.group.experiment)
    return Section("eta_over_s", "End-point metrics against η/S", fig, text)


def _section_heatmap(ctx: Context) -> Section:
    metrics = [m for m in _end_metrics(ctx.completed) if m in ("val_accuracy", "lambda_max")]
    fig = figures.heatmap(ctx.completed, metrics, ctx.norm, ctx.title, ctx.path("heatmap"))
    text = markdown.heatmap_text(ctx.completed) if fig else "No completed runs on the η × S grid.\n"
    return Section("heatmap", "η × S grid", fig, text)


def _ordered_interpolations(ctx: Context) -> list[dict]:
    """The group's interpolation results, those of ``report.pairs`` first and in their order."""
    results = list(ctx.group.interpolations)
    order = []
    for a, b in ctx.group.report.pairs:
        ra, rb = ctx.group.resolve(a), ctx.group.resolve(b)
        if isinstance(ra, Run) and isinstance(rb, Run):
            order.append((ra.run_id, rb.run_id))
    rank = lambda res: order.index((res["run_a"], res["run_b"])) if (res["run_a"], res["run_b"]) in order else len(order)
    return sorted(results, key=rank)


def _section_interpolation(ctx: Context) -> Section:
    results = _ordered_interpolations(ctx)
    fig = figures.interpolation(results, ctx.norm, ctx.title, ctx.path("interpolation"))
    return Section("interpolation", "Interpolation between minima", fig, markdown.interpolation_text(results))


def resolved_pairs(group: Group) -> tuple[list[tuple[Run, Run]], list[str]]:
    """``report.pairs`` as runs; pairs with a missing, ambiguous or undrawable run are explained instead."""
    pairs, unresolved = [], []
    for a, b in group.report.pairs:
        ra, rb = group.resolve(a), group.resolve(b)
        problems = [x for x in (ra, rb) if isinstance(x, str)]
        problems += [f"`{x.run_id}` is {x.state}" for x in (ra, rb) if isinstance(x, Run) and not x.plotted]
        if problems:
            unresolved.append(f"{a} vs {b}: " + "; ".join(problems))
        else:
            pairs.append((ra, rb))
    return pairs, unresolved


def _section_paired_curves(ctx: Context) -> Section:
    pairs, unresolved = resolved_pairs(ctx.group)
    fig = figures.paired_curves(pairs, ctx.title, ctx.path("paired_curves"))
    text = markdown.paired_text(pairs, unresolved, ctx.group.experiment)
    if not ctx.group.report.pairs:
        text = "The experiment names no `report.pairs`.\n"
    return Section("paired_curves", "Paired runs (equal η/S at every epoch)", fig, text)


def _section_memorization(ctx: Context) -> Section:
    fig = figures.memorization(ctx.runs, ctx.styles, ctx.norm, ctx.title, ctx.path("memorization"))
    return Section("memorization", "Memorisation of random labels", fig,
                   markdown.memorization_text(ctx.runs, ctx.group.experiment))


def _section_beta_scaling(ctx: Context) -> Section:
    points = numbers.beta_points(ctx.completed)
    fig = figures.beta_scaling(points, ctx.title, ctx.path("beta_scaling"))
    return Section("beta_scaling", "Scaling η and S together (β)", fig, markdown.beta_text(points, ctx.group.experiment))


def _section_sharpness_trajectory(ctx: Context) -> Section:
    fig = figures.sharpness_trajectory(ctx.runs, ctx.styles, ctx.norm, ctx.title, ctx.path("sharpness_trajectory"))
    return Section("sharpness_trajectory", "Sharpness along training", fig,
                   markdown.sharpness_text(ctx.runs, ctx.group.experiment))


def _section_sharpness_vs_loss(ctx: Context) -> Section:
    paths = {r.run_id: numbers.loss_path(r) for r in ctx.runs}
    drawn = [p for p in paths.values() if p is not None]
    levels = numbers.loss_levels(drawn)
    comparisons = numbers.compare_at_loss(drawn, levels.levels)
    fig = figures.sharpness_vs_loss(drawn, levels, ctx.styles, ctx.norm, ctx.title, ctx.path("sharpness_vs_loss"))
    skipped = [r for r in ctx.runs if paths[r.run_id] is None]
    return Section("sharpness_vs_loss", "Sharpness at equal training loss", fig,
                   markdown.sharpness_vs_loss_text(drawn, levels, comparisons, skipped))


def _section_svag(ctx: Context) -> Section:
    comparisons = numbers.svag_comparisons(ctx.runs)
    fig = figures.svag(comparisons, ctx.title, ctx.path("svag"))
    return Section("svag", "SVAG: SGD against its SDE limit", fig, markdown.svag_text(comparisons))


SECTIONS: dict[str, Callable[[Context], Section]] = {
    "curves": _section_curves,
    "eta_over_s": _section_eta_over_s,
    "heatmap": _section_heatmap,
    "interpolation": _section_interpolation,
    "paired_curves": _section_paired_curves,
    "memorization": _section_memorization,
    "beta_scaling": _section_beta_scaling,
    "sharpness_trajectory": _section_sharpness_trajectory,
    "sharpness_vs_loss": _section_sharpness_vs_loss,
    "svag": _section_svag,
}


# ------------------------------------------------------------------------------------ build
def report_group(group: Group, out: Path) -> GroupReport:
    """Draw the group's ``report.figures`` into ``out`` and write ``out/report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    runs = group.plotted()
    norm = ratio_norm([r.eta_over_s for r in runs])
    ctx = Context(group, runs, [r for r in runs if r.state == "completed"], out, norm, run_styles(runs, norm))
    sections = [SECTIONS[kind](ctx) for kind in dict.fromkeys(group.report.figures)]
    rep = GroupReport(group, out, sections)
    (out / "report.md").write_text(f"# {group.name}\n\n" + rep.markdown())
    return rep


def build_report(runs_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of every group under ``runs_dir`` to ``out`` (default ``runs_dir/report``); returns REPORT.md."""
    runs_dir = Path(runs_dir)
    groups = load_groups(runs_dir)
    if not groups:
        raise NoRunsError(f"{runs_dir} holds no runs (no folder with config.yaml and status.json)")
    out = Path(out) if out else runs_dir / "report"
    reports = []
    used: set[str] = set()
    for group in groups:
        folder = slug(group.name)
        while folder in used:
            folder += "_"
        used.add(folder)
        reports.append((folder, report_group(group, out / folder)))
    path = out / "REPORT.md"
    path.write_text(_index(runs_dir, reports))
    return path


def _index(runs_dir: Path, reports: list[tuple[str, GroupReport]]) -> str:
    """REPORT.md: a table of the groups, then every group's section (image links into its folder)."""
    when = datetime.datetime.now().isoformat(timespec="seconds")
    rows = []
    for folder, rep in reports:
        g = rep.group
        states = Counter(r.state for r in g.runs)
        figs = ", ".join(f"[{s.kind}]({folder}/{s.figure.name})" for s in rep.sections if s.figure) or markdown.DASH
        rows.append([f"[{g.name}](#{_anchor(g.name)})", f"`{g.experiment}`", str(len(g.runs)),
                     ", ".join(f"{n} {s}" for s, n in sorted(states.items())), figs])
    head = (f"# tfminima report\n\nRuns in `{runs_dir}`, read {when}. Every number below is computed from the run "
            "files except the paper's, which are cited.\n\n"
            + markdown.table(["group", "experiment", "runs", "states", "figures"], rows))
    return head + "\n" + "\n".join(rep.markdown(prefix=f"{folder}/") for folder, rep in reports)


def _anchor(name: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, most punctuation dropped."""
    return "".join(c for c in name.lower().replace(" ", "-") if c.isalnum() or c in "-_")
