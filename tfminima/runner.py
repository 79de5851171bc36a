"""Run a sweep: one run directory per run, statuses kept honest, a failure never stops the sweep.

``run_sweep(spec, out)`` expands the spec, creates ``out/<name>/<run-id>/`` for each run, writes
the HParams config at ``out/<name>/`` (so TensorBoard's HParams dashboard sees the sweep) and
trains the runs one after another in this process. ``resume_run(path)`` continues a killed run
from its last checkpoint with the config stored in its directory.

Sharing: a new group folder is made by atomic mkdir (``name``, ``name-2``, ...); in a shared
folder (``--group``, ``--shard``, ``--only``) each run directory is claimed by atomic mkdir, so an
existing run is never overwritten; a run is trained under its lock (:mod:`tfminima.locks`), so
two processes never train (or resume) the same run.

Multi-worker: every worker runs the same sweep; only the chief writes. What the chief decides
from the file system (the group folder, whether a run may start) reaches the others through
:func:`tfminima.distribute.agree`, so no worker is left waiting in a collective.

Storage: when the run directory cannot be written (disk full, read-only, no permission) the run
is marked failed where that is still possible, its last good checkpoint stays, and
:class:`tfminima.rundir.StorageError` ends the sweep: every later run would fail the same way.

Nothing here prints: what the caller should hear of (a run skipped because another process trains
it, a skipped analysis, a final state the disk refused) goes to the ``on_notice`` callback it passes.
A run's files are written through its :class:`tfminima.recorder.RunRecorder`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import traceback
from pathlib import Path
from typing import Callable, Sequence

from tfminima import cluster, interrupt, paths
from tfminima import config as config_lib
from tfminima import rundir as rd
from tfminima import sweep as sweep_lib
from tfminima.locks import RunBusy, RunLock
from tfminima.resume import refusal, refused, resumable  # noqa: F401 (resumable: API)


@dataclasses.dataclass
class RunOutcome:
    """One run's end: where it is, its state, and its final numbers."""

    run_dir: rd.RunDir
    state: str
    hparams: dict
    final: dict
    error: str = ""


Notice = Callable[[str], None]  # receives what the caller should be told (a skipped run, ...)


class RunExists(FileExistsError):
    """A run directory to be created already exists in a shared group folder."""


class WorkerStopped(RuntimeError):
    """Multi-worker: the chief refused to go on (its own message says why); the others follow."""


def group_name(name: str, index: int) -> str:
    return name if index == 1 else f"{name}-{index}"


def new_group_index(out: str | Path, name: str) -> int:
    """Make ``out/name`` (index 1), or ``out/name-2``, ``-3``, ... if taken; atomic mkdir."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        try:
            (out / group_name(name, i)).mkdir()
            return i
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run directory name under {out} for {name!r}")


def prepare_runs(
    spec: config_lib.ExperimentSpec, group: Path, plans: Sequence[sweep_lib.RunPlan], *, exclusive: bool = False
) -> list[rd.RunDir]:
    """Create the run directories of ``plans`` under ``group`` (config + pending status).

    ``exclusive`` (a group folder other processes may share): every run directory must be new;
    if one exists, nothing is created and :class:`RunExists` names it.
    """
    if exclusive:
        taken = [p.run_id for p in plans if (group / p.run_id).exists()]
        if taken:
            raise RunExists(_exists_message(group, taken))
    dirs, made = [], []
    try:
        for plan in plans:
            path = group / plan.run_id
            if exclusive:
                try:
                    path.mkdir(parents=True)
                except FileExistsError:
                    raise RunExists(_exists_message(group, [plan.run_id])) from None
                made.append(path)
            dirs.append(rd.create(group.parent, group.name, plan.run_id, config_lib.to_yaml(plan.spec), plan.hparams()))
    except RunExists:
        for path in made:  # another process claimed one of ours meanwhile: leave no half-made sweep
            _remove_fresh_run(path)
        raise
    return dirs


def _exists_message(group: Path, run_ids: list[str]) -> str:
    states = [rd.RunDir(group / r).status().get("state", "?") for r in run_ids]
    listed = ", ".join(f"{r} ({s})" for r, s in zip(run_ids, states))
    return (f"{group} already holds {listed}; continue with  tfminima run --resume {group / run_ids[0]}  "
            "(or the whole folder), or write to another --group")


def _remove_fresh_run(path: Path) -> None:
    for name in ("config.yaml", "status.json"):
        (path / name).unlink(missing_ok=True)
    for sub in (path / "checkpoints", path):
        try:
            sub.rmdir()
        except OSError:
            pass


def train_run(
    run_dir: rd.RunDir,
    spec: config_lib.ExperimentSpec,
    hparams: dict,
    *,
    resume: bool = False,
    callbacks: Sequence = (),
    stop_event: threading.Event | None = None,
    on_notice: Notice | None = None,
) -> RunOutcome:
    """Train one run into ``run_dir`` and leave a final status (completed/diverged/failed/cancelled).

    Raises :class:`tfminima.locks.RunBusy` if another process trains the run, and
    :class:`tfminima.rundir.StorageError` if the run directory cannot be written. What could not be
    recorded (a best-effort final status on a refusing disk) goes to ``on_notice``.
    """
    me = cluster.role(spec.distribution)
    lock = RunLock(run_dir.path)
    _chief_decides(spec, lock.acquire)
    try:
        # the long phases before the first step hear it too (not under multi-worker: see watching)
        with interrupt.watching(stop_event, lockstep=me.workers > 1):
            if not me.chief:
                return _train_as_worker(run_dir, spec, hparams, resume, callbacks, stop_event)
            return _train_as_chief(run_dir, spec, hparams, resume, callbacks, stop_event, on_notice)
    except interrupt.Interrupted as err:  # before the run began (importing TensorFlow): files as they were
        if me.chief and run_dir.status().get("state") not in rd.FINAL_STATES:
            with interrupt.ctrl_c_held():
                run_dir.write_status("cancelled", error=str(err))
        return RunOutcome(run_dir, "cancelled", hparams, {}, str(err))
    finally:
        lock.release()


def _train_as_chief(run_dir, spec, hparams, resume, callbacks, stop_event, on_notice) -> RunOutcome:
    with interrupt.abortable("importing TensorFlow"):
        from tfminima.data import DataNotPrepared
        from tfminima.distribute import DistributionError
        from tfminima.recorder import RunRecorder
        from tfminima.train import Trainer

    recorder = RunRecorder(run_dir, hparams, resume=resume)
    distribution = None
    try:
        recorder.begin(spec.epochs)
        trainer = Trainer(spec, recorder=recorder, callbacks=callbacks, stop_event=stop_event)
        distribution = trainer.distribution_info()
        recorder.started(distribution)
        result = trainer.fit()
        final = dict(result.final, distribution=distribution)
        return _finish(recorder, on_notice, result.status, final, result.reason)
    except OSError as err:
        if not rd.is_storage_error(err):
            return _finish(recorder, on_notice, "failed", {}, _describe(err), traceback.format_exc())
        storage = rd.StorageError.from_os_error(err, run_dir.path)
        _finish(recorder, on_notice, "failed", {}, str(storage))
        raise storage from None
    except (DataNotPrepared, DistributionError, ValueError) as err:
        return _finish(recorder, on_notice, "failed", {}, str(err))
    except interrupt.Interrupted as err:  # a stop heard before the first step: nothing to checkpoint
        return _finish(recorder, on_notice, "cancelled", {"distribution": distribution} if distribution else {},
                       str(err))
    except KeyboardInterrupt:
        if run_dir.status().get("state") not in rd.FINAL_STATES:  # not already recorded by _finish
            _finish(recorder, on_notice, "cancelled", {}, "interrupted")
        raise
    except Exception as err:  # a crash of one run must not end the sweep
        return _finish(recorder, on_notice, "failed", {}, _describe(err), traceback.format_exc())


def _train_as_worker(run_dir, spec, hparams, resume, callbacks, stop_event) -> RunOutcome:
    """A non-chief worker: trains in step with the chief, reads checkpoints, writes nothing."""
    from tfminima.recorder import RunRecorder
    from tfminima.train import Trainer

    try:
        trainer = Trainer(spec, recorder=RunRecorder(run_dir, hparams, resume=resume), callbacks=callbacks,
                          stop_event=stop_event)
        result = trainer.fit()
    except interrupt.Interrupted as err:
        return RunOutcome(run_dir, "cancelled", hparams, {}, str(err))
    except Exception as err:
        return RunOutcome(run_dir, "failed", hparams, {}, _describe(err))
    return RunOutcome(run_dir, result.status, hparams, dict(result.final), result.reason)


def _describe(err: BaseException) -> str:
    return f"{err.__class__.__name__}: {err}"


def _finish(recorder, on_notice, state, final, error="", trace=None) -> RunOutcome:
    """Record the run's end; best effort when the disk refuses (the outcome is returned anyway).

    A Ctrl-C that arrives meanwhile takes effect once the end is recorded: a run left ``running``
    by a second Ctrl-C would look alive to every reader.
    """
    with interrupt.ctrl_c_held():
        for problem in recorder.finish(state, final, error, trace):
            _notify(on_notice, problem)
        return RunOutcome(recorder.run_dir, state, recorder.hparams, final, error)


def _notify(on_notice: Notice | None, text: str) -> None:
    if on_notice is not None:
        on_notice(text)


def _chief_decides(spec: config_lib.ExperimentSpec, decide: Callable[[], object], value: Callable[[object], int] = lambda r: 0) -> object:
    """Run ``decide`` on the chief only; under multi-worker, the other workers learn its outcome.

    Returns ``decide()``'s result on the chief and, on the others, ``value(result)`` as the chief
    computed it (a non-negative int). If the chief's ``decide`` raises, every worker raises: the chief
    its own error, the others :class:`tfminima.locks.RunBusy` when the chief's was one (a run another
    process trains: every worker skips it alike) and :class:`WorkerStopped` otherwise.
    """
    me = cluster.role(spec.distribution)
    if me.workers <= 1:
        return decide()
    from tfminima import distribute

    strategy = distribute.make_strategy(spec.distribution)
    result, error, code = None, None, 0
    if me.chief:
        try:
            result = decide()
            code = value(result) + 1
        except Exception as err:  # re-raised below, after the others heard of it
            error = err
    (chief_code, busy), _ = distribute.agree(strategy, [code, int(isinstance(error, RunBusy))])
    if error is not None:
        raise error
    if busy:
        raise RunBusy("the chief worker found this run trained by another process (its output names it)")
    if chief_code == 0:
        raise WorkerStopped("the chief worker stopped (its output says why)")
    return result if me.chief else chief_code - 1


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
    on_notice: Notice | None = None,
) -> list[RunOutcome]:
    """Expand and train the runs of ``spec``; returns the outcomes in sweep order.

    ``shard=(i, n)`` keeps every n-th run from the i-th; ``only`` keeps the named run ids;
    ``group`` is the folder the run directories go in (default: a new ``out/<name>[-k]``; shards
    share ``out/<name>``). In a shared folder an existing run directory is an error
    (:class:`RunExists`, before anything is trained); a run another process is training is
    skipped, and ``on_notice`` told so.
    """
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
        if not plans:  # a job array with more tasks than runs: this one has nothing to do
            _notify(on_notice, f"shard {shard[0]}/{shard[1]} holds none of the sweep's {len(all_plans)} "
                               f"run{'s' if len(all_plans) != 1 else ''}: nothing to train")
            return []
    out = Path(out or spec.output_dir)
    shared = group is not None or shard is not None or bool(only)
    me = cluster.role(spec.distribution)

    def make_group() -> int:
        if group is not None or shared:
            return 0
        return new_group_index(out, spec.name)

    index = _chief_decides(spec, make_group, value=lambda i: i)
    group = Path(group) if group is not None else out / (spec.name if shared else group_name(spec.name, index))

    def make_runs() -> list[rd.RunDir]:
        paths.check_inside(group, *(group / p.run_id for p in plans))  # no run folder resolves outside its group
        group.mkdir(parents=True, exist_ok=True)
        dirs = prepare_runs(spec, group, plans, exclusive=shared)
        from tfminima import tblog

        tblog.write_sweep_hparams_config(group, [p.hparams() for p in all_plans])
        return dirs

    made = _chief_decides(spec, make_runs)
    dirs = made if me.chief else [rd.RunDir(group / p.run_id) for p in plans]
    outcomes = []
    for i, (plan, run_dir) in enumerate(zip(plans, dirs)):
        if on_run_start:
            on_run_start(i, len(plans), run_dir, plan)
        extra = callbacks_for(run_dir, plan) if callbacks_for else ()
        try:
            outcome = train_run(run_dir, plan.spec, plan.hparams(), callbacks=extra, stop_event=stop_event,
                                on_notice=on_notice)
        except RunBusy as err:
            _notify(on_notice, f"{plan.run_id}: skipped: {err}")
            continue
        outcomes.append(outcome)
        if (stop_event is not None and stop_event.is_set()) or outcome.state == "cancelled":
            return outcomes
    if me.chief and sweep_finished(group, all_plans):
        run_report_analyses(spec, group, on_notice)
    return outcomes


def sweep_finished(group: Path, plans: Sequence[sweep_lib.RunPlan]) -> bool:
    """Whether every run of the whole sweep in ``group`` has ended (completed, failed, diverged): the moment its
    end-of-sweep analyses can run. A plain sweep gets there when its loop ends; in a shared folder (``--group``,
    ``--shard``, ``--only``) the process that ends the sweep's last run does, so both paths do the same work."""
    ended = ("completed", "failed", "diverged")
    return all(rd.effective_state(rd.RunDir(group / p.run_id).status()) in ended for p in plans)


def run_report_analyses(spec: config_lib.ExperimentSpec, group: Path, on_notice: Notice | None = None) -> list[dict]:
    """Measurements the experiment's report needs beyond the runs (interpolation between pairs).

    A pair whose runs did not finish is skipped, and ``on_notice`` told why; analyses never fail
    the sweep.
    """
    if "interpolation" not in spec.report.figures or not spec.report.pairs:
        return []
    from tfminima import analysis

    try:
        return analysis.interpolate_pairs(group, spec)
    except (FileNotFoundError, ValueError) as err:
        _notify(on_notice, f"interpolation skipped: {err}")
        return []


def resume_run(run_dir: rd.RunDir, spec: config_lib.ExperimentSpec | None = None, **kwargs) -> RunOutcome:
    """Continue ``run_dir`` from its latest checkpoint with the config stored there.

    Raises :class:`tfminima.resume.ResumeRefused`, before any file is touched, when the run cannot
    be continued faithfully (:func:`tfminima.resume.refusal`).
    """
    spec = spec or config_lib.load(run_dir.config_path)
    problem = refusal(run_dir, spec)
    if problem:
        raise refused(run_dir, problem)
    hparams = run_dir.status().get("hparams") or {}
    if not hparams:
        plan = sweep_lib.RunPlan(run_dir.run_id, spec.model_dump(mode="json"), {}, spec)
        hparams = plan.hparams()
    return train_run(run_dir, spec, hparams, resume=True, **kwargs)


def resume_runs(
    targets: Sequence,
    *,
    single: bool,
    on_run_start: Callable[[int, int, rd.RunDir, config_lib.ExperimentSpec], None] | None = None,
    callbacks_for: Callable[[rd.RunDir], Sequence] | None = None,
    stop_event: threading.Event | None = None,
    on_notice: Notice | None = None,
) -> list[RunOutcome]:
    """Resume ``targets`` (:class:`tfminima.resume.ResumeTarget`) one after another.

    A run that another process is training is refused (:class:`RunBusy` propagates) when it is the
    one run asked for (``single``), and skipped (``on_notice`` is told) when it is one run of a
    folder, so several processes resuming one folder share its runs out between them.
    """
    if not targets:
        return []
    ids = "\n".join(str(t.run_dir.path) for t in targets)
    _workers_agree(targets[0].spec, [len(targets), int(hashlib.sha256(ids.encode()).hexdigest()[:16], 16)],
                   "the runs to resume (do all workers see the same run directories?)")
    outcomes = []
    for i, t in enumerate(targets):
        if on_run_start:
            on_run_start(i, len(targets), t.run_dir, t.spec)
        extra = callbacks_for(t.run_dir) if callbacks_for else ()
        try:
            outcome = resume_run(t.run_dir, t.spec, callbacks=extra, stop_event=stop_event, on_notice=on_notice)
        except RunBusy as err:
            if single:
                raise
            _notify(on_notice, f"{t.run_dir.run_id}: skipped: {err}")
            continue
        outcomes.append(outcome)
        if (stop_event is not None and stop_event.is_set()) or outcome.state == "cancelled":
            break
    return outcomes


def _workers_agree(spec: config_lib.ExperimentSpec, values: list[int], what: str) -> None:
    """Multi-worker: raise on every worker unless all of them hold the same ``values``."""
    if cluster.role(spec.distribution).workers <= 1:
        return
    from tfminima import distribute

    _, same = distribute.agree(distribute.make_strategy(spec.distribution), values)
    if not same:
        raise WorkerStopped(f"workers disagree on {what}")
