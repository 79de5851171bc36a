"""What ``tfminima run --resume`` continues, and the rule that a resumed run keeps its config. No TensorFlow.

A run directory's ``config.yaml`` is the run: resuming it with another config would train the
first epochs with one setting and the rest with another, and the run directory would claim a
single config for both. So the stored config wins; a config file or ``--set`` given along with
``--resume`` is accepted only if it resolves to the same run config (useful in scripts that pass
the same arguments every time), and refused with the differing keys otherwise.

The run's other files are read with :mod:`tfminima.runfiles` before anything is trained. What the
resume cannot continue from faithfully refuses it (:class:`ResumeRefused`, naming the file): a stored
config that does not validate (file:line, like any config), a checkpoint whose state or variables
cannot be read, a metrics.jsonl that is no file or is over the reading limit (rewriting it would
lose what was not read). Lines of metrics.jsonl that are no event, or a status or summary that
cannot be read, become warnings naming the file and line (the resume drops such lines and rewrites
those files).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

from tfminima import config as config_lib
from tfminima import rundir as rd
from tfminima import runfiles
from tfminima import sweep as sweep_lib

IGNORED = ("output_dir", "sweep", "profiles")  # where runs go and how a sweep was written: not the run


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


def refusal(run_dir: rd.RunDir) -> str | None:
    """Why ``run_dir`` cannot be resumed faithfully (None when it can): its log or checkpoint cannot be read."""
    problem = runfiles.read_events(run_dir.metrics_path).problem
    if problem:  # rewritten to match the checkpoint, it would lose what could not be read
        return problem
    from tfminima import checkpoint  # numpy only

    try:
        path = checkpoint.latest(run_dir.checkpoints_dir)
    except OSError as err:
        return f"{run_dir.checkpoints_dir} cannot be listed ({err.strerror or err})"
    if path is None:
        return None
    try:
        runfiles.read_checkpoint_state(path)
    except runfiles.CorruptFile as err:
        return f"{run_dir.path}: {err}"
    variables = path / "variables.npz"
    try:
        if not stat.S_ISREG(os.stat(variables).st_mode):  # a FIFO would block the zip reader
            return f"{variables} is not a regular file"
        with zipfile.ZipFile(variables) as archive:  # its index is at the end: a truncated file has none
            archive.namelist()
    except (OSError, zipfile.BadZipFile) as err:
        return f"{variables} cannot be read ({err})"
    return None


def targets(path: str | Path, config_path: str | None = None, overrides: list[str] | None = None,
            profile: str | None = None) -> list[ResumeTarget]:
    """The runs under ``path`` to resume, each with its stored config.

    Raises ConfigError (a stored config that no longer validates), ResumeRefused (a log or checkpoint
    that cannot be read), ResumeConflict (a config or
    overrides that differ from a stored config), AlreadyComplete (a completed run, or a folder whose runs
    all finished: nothing to do, nothing touched) or FileNotFoundError (nothing to resume).
    """
    from tfminima.runner import resumable

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
    out = [ResumeTarget(d, config_lib.load(d.config_path), file_warnings(d)) for d in dirs]
    for t in out:
        problem = refusal(t.run_dir)
        if problem:
            raise ResumeRefused(f"cannot continue {t.run_dir.path} faithfully: {problem}")
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
