"""Run a sweep: one run directory per run, statuses kept honest, a failure never stops the sweep.

``run_sweep(spec, out)`` expands the spec, creates ``out/<name>/<run-id>/`` for each run, writes
the HParams config at ``out/<name>/`` (so TensorBoard's HParams dashboard sees the sweep) and
trains the runs one after another in this process. ``resume_run(path)`` continues a killed run
from its last checkpoint with the config stored in its directory.
"""

from __future__ import annotations

import dataclasses
import threading
import traceback
from pathlib import Path
from typing import Callable, Sequence

from tfminima import config as config_lib
from tfminima import rundir as rd
from tfminima import sweep as sweep_lib


@dataclasses.dataclass
class RunOutcome:
    """One run's end: where it is, its state, and its final numbers."""

    run_dir: rd.RunDir
    state: str
    hparams: dict
    final: dict
    error: str = ""


def new_group_dir(out: str | Path, name: str) -> Path:
    """``out/name``, or ``out/name-2``, ``-3``, ... if taken (atomic mkdir: no two processes share one)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = out / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run directory name under {out} for {name!r}")


def prepare_runs(spec: config_lib.ExperimentSpec, group: Path, plans: Sequence[sweep_lib.RunPlan]) -> list[rd.RunDir]:
    """Create the run directories of ``plans`` under ``group`` (config + pending status)."""
    dirs = []
    for plan in plans:
        dirs.append(rd.create(group.parent, group.name, plan.run_id, config_lib.to_yaml(plan.spec), plan.hparams()))
    return dirs


def train_run(
    run_dir: rd.RunDir,
    spec: config_lib.ExperimentSpec,
    hparams: dict,
    *,
    resume: bool = False,
    callbacks: Sequence = (),
    stop_event: threading.Event | None = None,
) -> RunOutcome:
    """Train one run into ``run_dir`` and leave a final status (completed/diverged/failed/cancelled)."""
    from tfminima import tblog
    from tfminima.data import DataNotPrepared
    from tfminima.train import Trainer

    if resume:
        last = _checkpoint_epoch(run_dir)
        run_dir.truncate_events_after(last - 1)
    run_dir.write_status("running", epochs=spec.epochs, hparams=hparams, error=None)
    writer = rd.MetricsWriter(run_dir.metrics_path, run_dir.run_id)
    writer.write("status", None, None, state="running", resumed=bool(resume))
    try:
        trainer = Trainer(spec, run_dir=run_dir, callbacks=callbacks, resume=resume, writer=writer,
                          stop_event=stop_event)
        if trainer.chief:
            tblog.write_run_hparams(run_dir.tb_dir, hparams)
        result = trainer.fit()
    except (DataNotPrepared, ValueError) as err:
        return _finish(run_dir, writer, "failed", hparams, {}, str(err))
    except KeyboardInterrupt:
        _finish(run_dir, writer, "cancelled", hparams, {}, "interrupted")
        raise
    except Exception as err:  # a crash of one run must not end the sweep
        tb = traceback.format_exc()
        return _finish(run_dir, writer, "failed", hparams, {}, f"{err.__class__.__name__}: {err}", tb)
    final = dict(result.final)
    return _finish(run_dir, writer, result.status, hparams, final, result.reason)


def _checkpoint_epoch(run_dir: rd.RunDir) -> int:
    from tfminima import checkpoint

    path = checkpoint.latest(run_dir.checkpoints_dir)
    return int(checkpoint.read_state(path)["epochs_done"]) if path else 0


def _finish(run_dir, writer, state, hparams, final, error="", trace=None) -> RunOutcome:
    summary = dict(final, state=state, hparams=hparams, run_id=run_dir.run_id)
    if error:
        summary["error"] = error
    run_dir.write_summary(summary)
    writer.write("status", final.get("epochs_done"), None, state=state, error=error or None)
    writer.close()
    fields = {"error": error or None, "epochs_done": final.get("epochs_done", run_dir.status().get("epochs_done"))}
    if trace:
        fields["traceback"] = trace
    run_dir.write_status(state, **fields)
    return RunOutcome(run_dir, state, hparams, final, error)


def run_sweep(
    spec: config_lib.ExperimentSpec,
    out: str | Path | None = None,
    *,
    shard: tuple[int, int] | None = None,
    on_run_start: Callable[[int, int, rd.RunDir, sweep_lib.RunPlan], None] | None = None,
    callbacks_for: Callable[[rd.RunDir, sweep_lib.RunPlan], Sequence] | None = None,
    stop_event: threading.Event | None = None,
    group: Path | None = None,
    only: Sequence[str] = (),
) -> list[RunOutcome]:
    """Expand and train the runs of ``spec``; returns the outcomes in sweep order.

    ``shard=(i, n)`` keeps every n-th run from the i-th; ``only`` keeps the named run ids;
    ``group`` is the folder the run directories go in (default: a new ``out/<name>[-k]``; shards
    share ``out/<name>``).
    """
    from tfminima import tblog

    all_plans = sweep_lib.expand(spec)
    plans = all_plans
    if only:
        unknown = sorted(set(only) - {p.run_id for p in plans})
        if unknown:
            raise sweep_lib.SweepError(
                f"no run {', '.join(unknown)} in this sweep; its runs: {', '.join(p.run_id for p in plans)}"
            )
        plans = [p for p in plans if p.run_id in set(only)]
    if shard is not None:
        plans = sweep_lib.select_shard(plans, *shard)
    out = Path(out or spec.output_dir)
    if group is None:
        group = new_group_dir(out, spec.name) if shard is None and not only else _shard_group(out, spec.name)
    group = Path(group)
    group.mkdir(parents=True, exist_ok=True)
    dirs = prepare_runs(spec, group, plans)
    tblog.write_sweep_hparams_config(group, [p.hparams() for p in all_plans])
    outcomes = []
    for i, (plan, run_dir) in enumerate(zip(plans, dirs)):
        if on_run_start:
            on_run_start(i, len(plans), run_dir, plan)
        extra = callbacks_for(run_dir, plan) if callbacks_for else ()
        outcomes.append(train_run(run_dir, plan.spec, plan.hparams(), callbacks=extra, stop_event=stop_event))
        if stop_event is not None and stop_event.is_set():
            return outcomes
    if shard is None and not only:
        run_report_analyses(spec, group)
    return outcomes


def run_report_analyses(spec: config_lib.ExperimentSpec, group: Path) -> list[dict]:
    """Measurements the experiment's report needs beyond the runs (interpolation between pairs).

    A pair whose runs did not finish is skipped with a message; analyses never fail the sweep.
    """
    if "interpolation" not in spec.report.figures or not spec.report.pairs:
        return []
    from tfminima import analysis

    try:
        return analysis.interpolate_pairs(group, spec)
    except (FileNotFoundError, ValueError) as err:
        print(f"interpolation skipped: {err}", flush=True)
        return []


def _shard_group(out: Path, name: str) -> Path:
    """Shards of one sweep share a group folder (they write disjoint run ids)."""
    path = out / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def resumable(path: str | Path) -> list[rd.RunDir]:
    """The run directories to resume under ``path``: one run, or the unfinished runs of a sweep."""
    path = Path(path)
    if (path / "status.json").exists():
        return [rd.RunDir(path)]
    return [r for r in rd.find_runs(path) if r.status().get("state") not in ("completed", "diverged")]


def resume_run(run_dir: rd.RunDir, **kwargs) -> RunOutcome:
    """Continue ``run_dir`` from its latest checkpoint with the config stored there."""
    spec = config_lib.load(run_dir.config_path)
    hparams = run_dir.status().get("hparams") or {}
    if not hparams:
        plan = sweep_lib.RunPlan(run_dir.run_id, spec.model_dump(mode="json"), {}, spec)
        hparams = plan.hparams()
    return train_run(run_dir, spec, hparams, resume=True, **kwargs)
