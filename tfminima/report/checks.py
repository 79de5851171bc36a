"""Warnings about what a group's runs can show: checked before any figure is read.

A report can be formally complete and still unable to test its experiment: a schedule that never
changed within the epochs run (``--set epochs=3`` on E3's 5-epoch cycles), runs that ended at very
different training losses (so end points compare different depths), runs still going. These go to
the top of the group's section and back to the caller (the CLI prints them).
"""

from __future__ import annotations

from tfminima import schedules
from tfminima.report import seeds
from tfminima.report.loading import Group, Run

LOSS_SPREAD = 5.0  # warn when the final training losses of an experiment differ by more than this factor
NAMES_SHOWN = 4


def group_warnings(group: Group) -> list[str]:
    runs = group.plotted()
    files = list(group.warnings)  # corrupt runs, skipped metrics lines and analysis files (report.loading)
    return files + schedule_warnings(runs) + loss_spread_warnings(runs) + running_warnings(group.runs)


def _names(runs: list[Run]) -> str:
    shown = ", ".join(f"`{r.run_id}`" for r in runs[:NAMES_SHOWN])
    return shown + (f" and {len(runs) - NAMES_SHOWN} more" if len(runs) > NAMES_SHOWN else "")


def _epochs_run(run: Run) -> int:
    train = run.series("train", "loss")
    return int(train.epochs[-1]) if len(train) else 0


def _scheduled(run: Run) -> list[str]:
    """The schedules the config asks for that are not constant, described."""
    spec = run.spec
    out = []
    for name, sched in (("learning-rate", spec.lr_schedule), ("batch-size", spec.batch_size_schedule)):
        if sched.kind != "constant":
            out.append(f"{name} schedule `{sched.kind}`")
    if spec.schedule_conversion != "none" and out:
        out[-1] += f" (realised through `{spec.schedule_conversion}`)"
    return out


def _first_change(run: Run) -> int | None:
    """Epochs completed after which the planned (η, S) first differs from the first epoch's; None if never."""
    plan = schedules.plan(run.spec, run.spec.replicas_known() or 1)
    first = (plan[0].lr, plan[0].batch_size)
    for i, setting in enumerate(plan):
        if (setting.lr, setting.batch_size) != first:
            return i + 1  # the (i+1)-th epoch is the first to run at the new values
    return None


def _unchanged_within(run: Run, epochs: int) -> bool:
    """Whether η and S stayed at their first values in every epoch run (logged schedule events first)."""
    logged = [run.series("schedule", key) for key in ("lr", "batch_size")]
    if all(len(s) for s in logged):
        return all(len(set(s.values[s.epochs <= epochs].tolist())) <= 1 for s in logged)
    plan = schedules.plan(run.spec, run.spec.replicas_known() or 1)[:epochs]
    return len({(p.lr, p.batch_size) for p in plan}) <= 1


def schedule_warnings(runs: list[Run]) -> list[str]:
    """A schedule the config asks for that never changed within the epochs the run completed."""
    found: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.spec is None or not _scheduled(run):
            continue
        epochs = _epochs_run(run)
        if epochs and _unchanged_within(run, epochs):
            key = (" and ".join(_scheduled(run)), epochs, _first_change(run))
            found.setdefault(key, []).append(run)
    out = []
    for (what, epochs, change), members in found.items():
        when = (f"its first change comes in epoch {change}" if change is not None
                else f"it never changes within the configured {members[0].spec.epochs} epochs")
        out.append(f"the {what} never changed within the {epochs} epoch{'s' if epochs != 1 else ''} run ({when}) in "
                   f"{len(members)} run{'s' if len(members) != 1 else ''} ({_names(members)}): these runs trained at "
                   "constant η and S, so they cannot show what the schedule was meant to show.")
    return out


def loss_spread_warnings(runs: list[Run]) -> list[str]:
    """The experiment's finished conditions ended at training losses more than :data:`LOSS_SPREAD` apart."""
    finals = []
    for c in seeds.conditions(r for r in runs if r.state == "completed"):
        est = c.estimate("train_loss")
        if est is not None and est.mean > 0:
            finals.append((est.mean, c))
    if len(finals) < 2:
        return []
    (lo, low), (hi, high) = min(finals, key=lambda x: x[0]), max(finals, key=lambda x: x[0])
    if hi / lo <= LOSS_SPREAD:
        return []
    return [(f"the runs ended at very different training losses, from {lo:.3g} (`{low.name}`) to {hi:.3g} "
             f"(`{high.name}`), a factor of {hi / lo:.0f}: end-point numbers (λ_max, Tr(H), accuracy) compare minima "
             "at different depths. Compare sharpness at equal training loss (figure `sharpness_vs_loss`), or train "
             "the slower runs longer.")]


def running_warnings(runs: list[Run]) -> list[str]:
    active = [r for r in runs if r.state in ("running", "pending")]
    if not active:
        return []
    return [(f"{len(active)} run{'s are' if len(active) > 1 else ' is'} not finished ({_names(active)}): "
             "their numbers are provisional and end-point tables leave them out.")]
