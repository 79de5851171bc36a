"""Assemble the report: per group its warnings, figures and markdown section, then ``REPORT.md`` indexing them.

Each ``report.figures`` kind maps to one ``_section_<kind>`` function that draws its figure (through
:mod:`figures` / :mod:`figures_sharpness`) and writes its text (through the markdown modules) from
the same computed numbers. Runs equal up to the seed are aggregated into conditions everywhere.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from tfminima.report import (
    checks,
    critical,
    figures,
    figures_critical,
    figures_sharpness,
    markdown,
    markdown_critical,
    markdown_sections,
    markdown_sharpness,
    numbers,
    seeds,
    sharpness,
)
from tfminima.report.loading import Group, Run, load_groups, slug
from tfminima.report.style import parse_formats, ratio_norm, run_styles, save
from tfminima.rundir import atomic_write_text
from tfminima.runfiles import CORRUPT


class NoRunsError(Exception):
    """The directory holds no run directories (nothing with config.yaml and status.json)."""


class NoReadableRunsError(NoRunsError):
    """Every run directory is corrupt; ``warnings`` says what is wrong with each."""

    def __init__(self, message: str, warnings: list[str]):
        super().__init__(message)
        self.warnings = warnings


@dataclasses.dataclass
class Context:
    """What every section needs: the group, its drawable runs and conditions, colours, and where files go."""

    group: Group
    runs: list[Run]  # drawable: not failed, not diverged
    completed: list[Run]  # for end-point figures: final numbers exist
    out: Path
    norm: object
    styles: dict
    formats: tuple[str, ...] = ("png",)
    kept: dict[str, Figure] | None = None  # figures by kind, when the caller wants to inspect them
    kinds: tuple[str, ...] = ()  # the sections this report has

    @property
    def full_equal_loss_elsewhere(self) -> bool:
        """The sharpness_vs_loss section tabulates every level: other sections only summarise."""
        return "sharpness_vs_loss" in self.kinds

    @property
    def title(self) -> str:
        return self.group.experiment

    @property
    def conds(self) -> list[seeds.Condition]:
        return seeds.conditions(self.runs)

    @property
    def completed_conds(self) -> list[seeds.Condition]:
        return seeds.conditions(self.completed)

    def save(self, kind: str, fig: Figure | None) -> Path | None:
        """Write ``fig`` in every format; returns the file REPORT.md links (the first format)."""
        if fig is None:
            return None
        if self.kept is not None:
            self.kept[kind] = fig
        return save(fig, self.out / kind, self.formats)


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
    warnings: list[str] = dataclasses.field(default_factory=list)

    def markdown(self, prefix: str = "") -> str:
        """The group's section; image links are ``prefix`` + file name."""
        g = self.group
        states = Counter(r.state for r in g.runs)
        lines = [f"## {g.name}\n"]
        if self.warnings:
            lines.append(markdown.warnings_text(self.warnings))
        lines.append(f"Experiment `{g.experiment}`, {len(g.runs)} runs ("
                     + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + f"), folder `{g.path}`.\n")
        spec = g.spec
        if spec is not None and spec.description:
            lines.append(spec.description.strip() + "\n")
        skipped = [r for r in g.runs if not r.plotted]
        if skipped:
            lines.append("Not drawn (no trustworthy numbers): "
                         + ", ".join(f"`{r.run_id}` ({r.state})" for r in skipped) + ".\n")
        conds = seeds.conditions(g.plotted())
        lines.append(markdown.seed_note(conds))
        for s in self.sections:
            lines.append(f"### {s.title}\n")
            if s.figure is not None:
                lines.append(markdown.image(prefix + s.figure.name, s.title))
            lines.append(s.text)
        analyses = markdown.analyses_text(g.runs)
        if analyses:
            lines.append("### Hessian analyses (`tfminima analyze`)\n")
            lines.append(analyses)
        if seeds.max_seeds(conds) > 1:
            lines.append("### Conditions (means over seeds)\n")
            lines.append(markdown.conditions_table(conds))
        lines.append("### Runs\n")
        lines.append(markdown.runs_table(g))
        return "\n".join(lines)


# --------------------------------------------------------------------------------- sections
def _section_curves(ctx: Context) -> Section:
    fig = ctx.save("curves", figures.curves(ctx.conds, ctx.styles, ctx.norm, ctx.title))
    text = ("Loss (log scale) and accuracy against epoch for every drawn condition; colour = η/S, line style tells "
            "apart conditions with equal η/S.")
    if seeds.max_seeds(ctx.conds) > 1:
        text += " Each line is the mean over the condition's seeds; the shaded band spans their min–max."
    return Section("curves", "Training curves", fig, text + "\n" if fig else "No training events yet.\n")


def _end_metrics(runs: list[Run]) -> list[str]:
    """The end-point metrics at least one run has (λ_max and Tr(H) only with the sharpness monitor)."""
    return [m for m in ("val_accuracy", "test_accuracy", "lambda_max", "trace") if any(r.final(m) is not None for r in runs)]


def correlations(runs: list[Run], metrics: list[str]) -> dict[tuple[str, str], numbers.Correlation | None]:
    """Spearman ρ of each metric with η/S (and with η/(S(1−β)) when the momentum varies), over conditions."""
    conds = seeds.conditions(runs)
    scales = {"eta_over_s": lambda c: c.first.eta_over_s}
    if numbers.varies(r.momentum for r in runs):
        scales["eta_over_s_momentum"] = lambda c: c.first.eta_over_s_momentum
    return {(m, name): seeds.rank_correlation(conds, scale, m) for name, scale in scales.items() for m in metrics}


def _runs_of(conds: list[seeds.Condition]) -> list[Run]:
    return [r for c in conds for r in c.runs]


def by_stratum(conds: list[seeds.Condition], render: Callable[[list[seeds.Condition]], str]) -> str:
    """``render`` of each stratum's conditions (:func:`seeds.strata`) under its name; the text alone when
    nothing but the noise scale differs. Comparisons across η/S never mix runs that train on different data."""
    layers = seeds.strata(conds)
    if len(layers) == 1:
        return render(layers[0][1])
    names = ", ".join(f"`{name}`" for name, _ in layers)
    text = (f"The conditions differ in more than the noise scale ({names}): each comparison across η/S below is "
            "made within one of these, never between runs of different ones.\n")
    for name, members in layers:
        text += f"\n#### {name}\n\n" + render(members)
    return text


def _section_eta_over_s(ctx: Context) -> Section:
    runs, conds = ctx.completed, ctx.completed_conds
    metrics = _end_metrics(runs)
    corr = [(name, correlations(_runs_of(members), metrics)) for name, members in seeds.strata(conds)]
    fig = ctx.save("eta_over_s", figures.eta_over_s(conds, metrics, ctx.norm, ctx.title, corr))
    if not metrics:
        return Section("eta_over_s", "End-point metrics against η/S", None, "No completed runs with final metrics.\n")
    momentum_varies = numbers.varies(r.momentum for r in runs)

    def ends(members: list[seeds.Condition]) -> str:
        text = markdown.correlations_text(correlations(_runs_of(members), metrics))
        scales = [(lambda r: r.eta_over_s, "η/S")]
        if momentum_varies:
            scales.append((lambda r: r.eta_over_s_momentum, "η/(S(1−β))"))
        comparisons = []
        for scale, name in scales:
            text += "\n" + markdown.families_text(members, "val_accuracy", scale, name)
            comparisons += markdown.family_comparisons(members, "val_accuracy", scale, name)
        if comparisons:
            text += ("\nThe claims, tested (A − B of the final validation accuracy):\n\n"
                     + markdown.comparisons_table(comparisons))
        return text

    def sharp(members: list[seeds.Condition]) -> str:
        return markdown_sharpness.equal_loss_summary(sharpness.equal_loss(_runs_of(members)),
                                                     table_too=not ctx.full_equal_loss_elsewhere)

    text = by_stratum(conds, ends) + markdown_sections.e1_paper_text(ctx.group.experiment)
    if "lambda_max" in metrics:
        text += ("\n**Sharpness.** The λ_max and Tr(H) rows above compare end points, which the runs reach at "
                 "different training losses.\n\n" + by_stratum(conds, sharp))
    return Section("eta_over_s", "End-point metrics against η/S", fig, text)


def _section_heatmap(ctx: Context) -> Section:
    metrics = [m for m in _end_metrics(ctx.completed) if m in ("val_accuracy", "lambda_max")]
    fig = ctx.save("heatmap", figures.heatmap(ctx.completed, metrics, ctx.norm, ctx.title))
    text = markdown_sections.heatmap_text(ctx.completed) if fig else "No completed runs on the η × S grid.\n"
    return Section("heatmap", "η × S grid", fig, text)


def _ordered_interpolations(ctx: Context) -> list[dict]:
    """The group's interpolation results, those of ``report.pairs`` first and in their order."""
    pairs, _ = resolved_pairs(ctx.group)
    cond_of = seeds.condition_of(ctx.group.runs)

    def rank(res: dict) -> int:
        a, b = cond_of.get(res["run_a"]), cond_of.get(res["run_b"])
        for i, (ca, cb) in enumerate(pairs):
            if a is not None and b is not None and (a.key, b.key) == (ca.key, cb.key):
                return i
        return len(pairs)

    return sorted(ctx.group.interpolations, key=rank)


def _section_interpolation(ctx: Context) -> Section:
    results = _ordered_interpolations(ctx)
    fig = ctx.save("interpolation", figures.interpolation(results, ctx.norm, ctx.title))
    text = (markdown_sections.interpolation_text(results)
            + markdown_sections.interpolation_seeds_text(results, ctx.group.plotted()))
    return Section("interpolation", "Interpolation between minima", fig, text)


def resolve_condition(group: Group, name: str) -> seeds.Condition | str:
    """A condition by run id, label, or id stem (``const-lr`` for ``const-lr-...-s0``); a reason when there is no
    single match. All seeds of a condition match together."""
    conds = seeds.conditions(group.runs)
    for c in conds:
        if any(r.run_id == name for r in c.runs):
            return c
    matches = ([c for c in conds if c.first.label == name] or [c for c in conds if c.name == name]
               or [c for c in conds if any(r.run_id.startswith(f"{name}-") for r in c.runs)])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        return f"no run {name!r}"
    return f"{name!r} is ambiguous ({', '.join(c.name for c in matches)})"


def resolved_pairs(group: Group) -> tuple[list[tuple[seeds.Condition, seeds.Condition]], list[str]]:
    """``report.pairs`` as conditions (every seed); a pair with a missing, ambiguous or undrawable side is explained."""
    pairs, unresolved = [], []
    for a, b in group.report.pairs:
        ca, cb = resolve_condition(group, a), resolve_condition(group, b)
        problems = [x for x in (ca, cb) if isinstance(x, str)]
        for c in (ca, cb):
            if isinstance(c, seeds.Condition) and not any(r.plotted for r in c.runs):
                problems.append(f"`{c.name}` is {', '.join(sorted({r.state for r in c.runs}))}")
        if problems:
            unresolved.append(f"{a} vs {b}: " + "; ".join(problems))
        else:
            drawable = lambda c: seeds.Condition(c.key, [r for r in c.runs if r.plotted])
            pairs.append((drawable(ca), drawable(cb)))
    return pairs, unresolved


def _section_paired_curves(ctx: Context) -> Section:
    pairs, unresolved = resolved_pairs(ctx.group)
    fig = ctx.save("paired_curves", figures.paired_curves(pairs, ctx.title))
    text = markdown_sections.paired_text(pairs, unresolved, ctx.group.experiment)
    if not ctx.group.report.pairs:
        text = "The experiment names no `report.pairs`.\n"
    return Section("paired_curves", "Paired runs (equal η/S at every epoch)", fig, text)


def _section_memorization(ctx: Context) -> Section:
    fig = ctx.save("memorization", figures.memorization(ctx.runs, ctx.styles, ctx.norm, ctx.title))
    return Section("memorization", "Memorisation of random labels", fig,
                   markdown_sections.memorization_text(ctx.runs, ctx.group.experiment))


def _section_beta_scaling(ctx: Context) -> Section:
    points = numbers.beta_points(ctx.completed)
    cond_of = seeds.condition_of(ctx.completed)
    fig = ctx.save("beta_scaling", figures.beta_scaling(points, cond_of, ctx.title))
    return Section("beta_scaling", "Scaling η and S together (β)", fig,
                   markdown_sections.beta_text(points, cond_of, ctx.group.experiment))


def _section_sharpness_trajectory(ctx: Context) -> Section:
    fig = ctx.save("sharpness_trajectory",
                   figures_sharpness.sharpness_trajectory(ctx.conds, ctx.styles, ctx.norm, ctx.title))
    pairs, _ = resolved_pairs(ctx.group)

    def render(members: list[seeds.Condition]) -> str:
        inside = [(a, b) for a, b in pairs if a.key in {c.key for c in members} and b.key in {c.key for c in members}]
        return markdown_sharpness.sharpness_text(members, sharpness.equal_loss(_runs_of(members)),
                                                 ctx.group.experiment, inside,
                                                 table_too=not ctx.full_equal_loss_elsewhere)

    text = by_stratum(ctx.conds, render) + markdown_sharpness.phase_swing_text(ctx.conds)
    return Section("sharpness_trajectory", "Sharpness along training", fig, text)


def _section_sharpness_vs_loss(ctx: Context) -> Section:
    eq = sharpness.equal_loss(ctx.runs)
    fig = ctx.save("sharpness_vs_loss", figures_sharpness.sharpness_vs_loss(eq, ctx.styles, ctx.norm, ctx.title))
    render = lambda members: markdown_sharpness.sharpness_vs_loss_text(sharpness.equal_loss(_runs_of(members)))
    text = by_stratum(ctx.conds, render)
    if "sharpness_trajectory" not in ctx.kinds:  # else that section has the phase swing
        text += markdown_sharpness.phase_swing_text(ctx.conds)
    return Section("sharpness_vs_loss", "Sharpness at equal training loss", fig, text)


def _section_svag(ctx: Context) -> Section:
    comparisons = numbers.svag_comparisons(ctx.runs)
    cond_of = seeds.condition_of(ctx.runs)
    fig = ctx.save("svag", figures.svag(comparisons, cond_of, ctx.title))
    return Section("svag", "SVAG: SGD against its SDE limit", fig, markdown_sections.svag_text(comparisons, cond_of))


def _section_steps_to_target(ctx: Context) -> Section:
    # every run that ended, diverged ones too: a batch size none of whose runs reached the target is shown
    cb = critical.critical_batch(ctx.group.runs)
    fig = ctx.save("steps_to_target", figures_critical.steps_to_target(cb, ctx.title))
    return Section("steps_to_target", "Steps to the target against the batch size (critical batch size)", fig,
                   markdown_critical.critical_text(cb))


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
    "steps_to_target": _section_steps_to_target,
}


# ------------------------------------------------------------------------------------ build
def section_kinds(group: Group) -> list[str]:
    """The experiment's ``report.figures``, plus ``interpolation`` when ``tfminima analyze`` left results."""
    kinds = list(dict.fromkeys(group.report.figures))
    if group.interpolations and "interpolation" not in kinds:
        kinds.append("interpolation")
    return kinds


@matplotlib.rc_context({"text.parse_math": False})  # run ids and labels are text from run files, never TeX
def report_group(group: Group, out: Path, formats: Sequence[str] = ("png",),
                 kept: dict[str, Figure] | None = None) -> GroupReport:
    """Draw the group's figures into ``out`` (each in every format) and write ``out/report.md``.

    Pass a dict as ``kept`` to receive the drawn figures by kind (tests inspect their artists).
    """
    out.mkdir(parents=True, exist_ok=True)
    runs = group.plotted()
    norm = ratio_norm([r.eta_over_s for r in runs])
    kinds = tuple(section_kinds(group))
    ctx = Context(group, runs, [r for r in runs if r.state == "completed"], out, norm,
                  run_styles(seeds.conditions(runs), norm), tuple(formats), kept, kinds)
    sections = [SECTIONS[kind](ctx) for kind in kinds]
    rep = GroupReport(group, out, sections, checks.group_warnings(group))
    atomic_write_text(out / "report.md", f"# {group.name}\n\n" + rep.markdown())
    return rep


@dataclasses.dataclass
class Report:
    """What ``build_report`` wrote: REPORT.md's path, and the warnings as ``group: message``."""

    path: Path
    warnings: list[str]
    groups: list[GroupReport]


def build_report(runs_dir: str | Path, out: str | Path | None = None, formats: str | Sequence[str] = ("png",)) -> Report:
    """Write the report of every group under ``runs_dir`` to ``out`` (default ``runs_dir/report``).

    ``formats`` (``"png,pdf"`` or a sequence; png, pdf, svg) are written for every figure; REPORT.md
    links the first. Raises :class:`NoRunsError` without runs, ValueError for an unknown format.
    """
    formats = parse_formats(formats)
    runs_dir = Path(runs_dir)
    groups = load_groups(runs_dir)
    if not groups:
        raise NoRunsError(f"{runs_dir} holds no runs (no folder with config.yaml and status.json)")
    if all(r.state == CORRUPT for g in groups for r in g.runs):
        raise NoReadableRunsError(f"{runs_dir} holds no readable run (every run directory is corrupt)",
                                  [f"{g.name}: {w}" for g in groups for w in g.warnings])
    out = Path(out) if out else runs_dir / "report"
    reports = []
    used: set[str] = set()
    for group in groups:
        folder = slug(group.name)
        while folder in used:
            folder += "_"
        used.add(folder)
        reports.append((folder, report_group(group, out / folder, formats)))
    path = out / "REPORT.md"
    atomic_write_text(path, _index(runs_dir, reports))  # renamed into place: never half a file, never a FIFO's wait
    warnings = [f"{rep.group.name}: {w}" for _, rep in reports for w in rep.warnings]
    return Report(path, warnings, [rep for _, rep in reports])


def _index(runs_dir: Path, reports: list[tuple[str, GroupReport]]) -> str:
    """REPORT.md: a table of the groups, then every group's section (image links into its folder)."""
    when = datetime.datetime.now().isoformat(timespec="seconds")
    rows = []
    for folder, rep in reports:
        g = rep.group
        states = Counter(r.state for r in g.runs)
        figs = ", ".join(f"[{s.kind}]({folder}/{s.figure.name})" for s in rep.sections if s.figure) or markdown.DASH
        rows.append([f"[{g.name}](#{_anchor(g.name)})", f"`{g.experiment}`", str(len(g.runs)),
                     ", ".join(f"{n} {s}" for s, n in sorted(states.items())), str(len(rep.warnings)), figs])
    head = (f"# tfminima report\n\nRuns in `{runs_dir}`, read {when}. Every number below is computed from the run "
            "files except the paper's, which are cited.\n\n"
            + markdown.table(["group", "experiment", "runs", "states", "warnings", "figures"], rows))
    return head + "\n" + "\n".join(rep.markdown(prefix=f"{folder}/") for folder, rep in reports)


def _anchor(name: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, most punctuation dropped."""
    return "".join(c for c in name.lower().replace(" ", "-") if c.isalnum() or c in "-_")
