"""What ``tfminima run --resume`` continues, and the rule that a resumed run keeps its config. No TensorFlow.

A run directory's ``config.yaml`` is the run: resuming it with another config would train the
first epochs with one setting and the rest with another, and the run directory would claim a
single config for both. So the stored config wins; a config file or ``--set`` given along with
``--resume`` is accepted only if it resolves to the same run config (useful in scripts that pass
the same arguments every time), and refused with the differing keys otherwise.

The run's other files are read with :mod:`tfminima.runfiles` before anything is trained. What the
resume cannot continue from faithfully refuses it (:class:`ResumeRefused`, naming the run and the
file, before any write; :func:`refusal` says why): a stored config that does not validate
(file:line, like any config), a metrics.jsonl that is no file or is over the reading limit
(rewriting it would lose what was not read), a checkpoint that cannot be chosen or read
(``checkpoints/latest`` broken, dangling, or naming a damaged folder), or a log holding more
trained epochs past the checkpoint than a kill can leave there (the checkpoints were deleted: a
resume would train from epoch 0 and drop them). ``--restart`` (:func:`start_over`) is the way to
train such a run again from epoch 0 with its stored config. Lines of metrics.jsonl that are no
event, or a status or summary that cannot be read, become warnings naming the file and line (the
resume drops such lines and rewrites those files).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from tfminima import config as config_lib
from tfminima import rundir as rd
from tfminima import runfiles
from tfminima import sweep as sweep_lib

# Not the run: where runs go, how a sweep or its profiles were written, the words and figures around it.
IGNORED = ("output_dir", "sweep", "profiles", "profile", "description", "report")


class ResumeRefused(ValueError):
    """A run cannot be resumed faithfully from its files; the message names the file and why."""


class ResumeConflict(ResumeRefused):
    """The command asks to resume a run with a config other than its stored one."""


class AlreadyComplete(ResumeRefused):
    """Nothing to resume: the run (or every run of the folder) is complete. Not an error (exit 0):
    resuming again must change nothing, so that a script may resume until everything is done."""

    exit_code = 0


@dataclasses.dataclass
class ResumeTarget:
    run_dir: rd.RunDir
    spec: config_lib.ExperimentSpec
    warnings: list[str] = dataclasses.field(default_factory=list)  # what the resume drops or rewrites


def resumable(path: str | Path) -> list[rd.RunDir]:
    """The run directories to resume under ``path``: one run, or the unfinished runs of a sweep."""
    path = Path(path)
    if (path / "config.yaml").exists():
        return [rd.RunDir(path)]
    runs = rd.find_runs(path)
    # killed between writing config.yaml and status.json: pending, resumable from scratch
    known = {r.path for r in runs}
    runs += [rd.RunDir(p.parent) for p in path.rglob("config.yaml") if p.parent not in known]
    runs = sorted(runs, key=lambda r: str(r.path))
    return [r for r in runs if r.status().get("state") not in ("completed", "diverged")]


def file_warnings(run_dir: rd.RunDir) -> list[str]:
    """What a resume of ``run_dir`` will drop or rewrite because it cannot be read."""
    out = []
    for reader, what in ((runfiles.read_status, "rewritten"), (runfiles.read_summary, "replaced at the run's end")):
        try:
            reader(run_dir.path)
        except runfiles.CorruptFile as err:
            out.append(f"{run_dir.path}: {err}; it is {what} by the resume")
    events = runfiles.read_events(run_dir.metrics_path)
    if events.skipped_count:
        out.append(events.skipped_summary() + "; the resume drops them")
    return out


def refusal(run_dir: rd.RunDir, spec: config_lib.ExperimentSpec) -> str | None:
    """Why ``run_dir`` cannot be resumed faithfully (None when it can).

    Its log cannot be read whole (rewritten to match the checkpoint, it would lose what was not
    read); its checkpoint cannot be chosen or read (``checkpoints/latest`` or the folder it names is
    broken); or its log holds more trained epochs past the checkpoint than a kill can leave there
    (``checkpoint_every``: the epochs logged before the next checkpoint is written), so the
    checkpoints were deleted or replaced and a resume would drop epochs it cannot redo from them.
    """
    events = runfiles.read_events(run_dir.metrics_path)
    if events.problem:
        return events.problem
    occupied = _occupied(run_dir)
    if occupied:
        return occupied
    from tfminima import checkpoint  # numpy only

    try:
        path = checkpoint.latest(run_dir.checkpoints_dir)
        done = checkpoint.verify(path)["epochs_done"] if path is not None else 0
    except runfiles.CorruptFile as err:
        broken = err.path.parent.name if err.path is not None else ""
        return str(err) + _others(run_dir, checkpoint, broken)
    except OSError as err:
        return f"checkpoints/ cannot be listed ({err.strerror or err})"
    logged = len({e["epoch"] for e in events.events if e.get("kind") == "train" and e.get("epoch") is not None})
    past = logged - done
    if past <= spec.checkpoint_every:
        return None
    epochs = f"{logged} trained epoch{'s' if logged != 1 else ''}"
    if path is None:
        return (f"metrics.jsonl logs {epochs} and there is no checkpoint to continue from (checkpoints/latest is "
                "missing); a resume would train from epoch 0 and drop them")
    return (f"metrics.jsonl logs {epochs}, and the checkpoint checkpoints/latest names ({path.name}) holds {done}; "
            f"a resume would drop the {past} after it")


def _occupied(run_dir: rd.RunDir) -> str | None:
    """A name the resume writes that holds something it cannot write over: status.json or summary.json
    as a folder (a file, even a FIFO, is replaced by a rename; a folder is not), tb/ as anything but a
    folder (TensorBoard's writer fails inside TensorFlow)."""
    for name in ("status.json", "summary.json"):
        if _is_folder(run_dir.path / name):
            return f"{name} is a folder, which the resume cannot replace with the file"
    tb = run_dir.tb_dir
    if os.path.lexists(tb) and not _is_folder(tb):
        return "tb is not a folder, and the resume writes TensorBoard's events into tb/"
    return None


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _others(run_dir: rd.RunDir, checkpoint, broken: str) -> str:
    """The checkpoints a person could choose instead of the ``broken`` one (none: nothing to add)."""
    try:
        names = [n for n in checkpoint.complete_folders(run_dir.checkpoints_dir) if n != broken]
    except OSError:
        return ""
    if not names:
        return ""
    return (f" (checkpoints/ also holds {', '.join(names)}: to continue from one, check it and write its name "
            f"into {run_dir.checkpoints_dir / 'latest'})")


def restart_hint(run_dir: rd.RunDir) -> str:
    return (f"to train it again from epoch 0 with its stored config, discarding its log and checkpoints: "
            f"tfminima run --resume {run_dir.path} --restart")


def refused(run_dir: rd.RunDir, problem: str) -> ResumeRefused:
    """The error for a run :func:`refusal` gave ``problem`` for: the run, the file, the way out."""
    return ResumeRefused(f"cannot continue {run_dir.path} faithfully: {problem}. {restart_hint(run_dir).capitalize()}")


def targets(path: str | Path, config_path: str | None = None, overrides: list[str] | None = None,
            profile: str | None = None, *, restart: bool = False) -> list[ResumeTarget]:
    """The runs under ``path`` to resume, each with its stored config.

    Raises ConfigError (a stored config that no longer validates), ResumeRefused (see
    :func:`refusal`; not with ``restart``, which starts the runs over), ResumeConflict (a config or
    overrides that differ from a stored config), AlreadyComplete (a completed run, or a folder whose runs
    all finished: nothing to do, nothing touched) or FileNotFoundError (nothing to resume).
    """
    dirs = resumable(path)
    if (Path(path) / "config.yaml").exists() and _completed(dirs[0]):
        done = dirs[0].status().get("epochs_done")
        raise AlreadyComplete(f"{path} is already complete{f' ({done} epochs)' if done else ''}; nothing changed")
    if not dirs:
        finished = [d for d in rd.find_runs(path) if _completed(d)]
        if finished:
            raise AlreadyComplete(f"every run under {path} is already finished ({len(finished)} completed); "
                                  "nothing changed")
        raise FileNotFoundError(f"no unfinished run under {path}")
    out = [ResumeTarget(d, config_lib.load(d.config_path), [] if restart else file_warnings(d)) for d in dirs]
    for t in out if not restart else ():
        problem = refusal(t.run_dir, t.spec)
        if problem:
            raise refused(t.run_dir, problem)
    if config_path:
        given = config_lib.load(config_path, overrides, profile)
        plans = {p.run_id: p.spec for p in sweep_lib.expand(given)}
        for t in out:
            if t.run_dir.run_id not in plans and len(plans) == 1:  # one run: name what differs
                _check_same(t, next(iter(plans.values())), config_path)
            elif t.run_dir.run_id not in plans:
                raise ResumeConflict(
                    f"{t.run_dir.path} is not a run of {config_path} (its runs: {', '.join(sorted(plans))}); "
                    f"resume it with  tfminima run --resume {t.run_dir.path}  alone: its stored config.yaml is used"
                )
            _check_same(t, plans[t.run_dir.run_id], config_path)
    elif overrides or profile:
        for t in out:
            _check_same(t, config_lib.load(t.run_dir.config_path, overrides, profile), "--set")
    return out


def _completed(run_dir: rd.RunDir) -> bool:
    """Whether status.json says the run completed (a status that cannot be read says nothing)."""
    try:
        return runfiles.read_status(run_dir.path).get("state") == "completed"
    except runfiles.CorruptFile:
        return False


RECORD = ("metrics.jsonl", "summary.json", "checkpoints", "tb", "analysis")  # what a restart discards


def start_over(run_dir: rd.RunDir) -> list[str]:
    """Discard the run's record (log, checkpoints, TensorBoard events, summary, analyses) so that a
    resume trains it from epoch 0 with its stored config.yaml; returns what was removed.

    Taken under the run's lock: a run another process trains is refused (RunBusy), never emptied.
    """
    from tfminima.locks import RunLock

    removed = []
    lock = RunLock(run_dir.path).acquire()
    try:
        for name in RECORD + (("status.json",) if _is_folder(run_dir.path / "status.json") else ()):
            target = run_dir.path / name  # a folder at status.json: the new status could not replace it
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            else:
                continue
            removed.append(name)
    finally:
        lock.release()
    return removed


def _check_same(target: ResumeTarget, given: config_lib.ExperimentSpec, source: str) -> None:
    diffs = differences(target.spec.model_dump(mode="json"), given.model_dump(mode="json"))
    if diffs:
        shown = "; ".join(f"{k}: stored {a!r}, given {b!r}" for k, a, b in diffs[:6])
        more = f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else ""
        raise ResumeConflict(
            f"{target.run_dir.path} was started with another config than {source} gives: {shown}{more}. "
            "A resumed run keeps its stored config.yaml; drop the config and --set to resume it, "
            "or start a new run"
        )


def differences(stored: dict, given: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, given value) for every key whose values differ."""
    out = []
    for key in sorted(set(stored) | set(given)):
        if not prefix and key in IGNORED:
            continue
        a, b = stored.get(key), given.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, name + ".")
        elif a != b:
            out.append((name, a, b))
    return out
