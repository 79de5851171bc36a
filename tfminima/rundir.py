"""The run directory: the only thing the runner, the TUI and the reporter share. No TensorFlow.

Layout::

    runs/<sweep-or-run-name>/<run-id>/
      config.yaml    the resolved experiment (defaults filled, sweep applied)
      status.json    state, pid, epoch, error; replaced atomically
      metrics.jsonl  one event a line, flushed: run_id, epoch, step, time, kind, values...
      summary.json   final metrics and hyper-parameters
      tb/            TensorBoard event files (scalars + hparams)
      checkpoints/   epoch-N/ folders and a ``latest`` pointer

Event kinds: train, eval, schedule, memorization, sharpness, noise, status (and any monitor's).
States: pending, running, completed, failed, diverged, cancelled, crashed (set by readers when the
process died without a final state); readers show ``corrupt`` for a run whose files they cannot read.

This module writes; every read goes through :mod:`tfminima.runfiles`, which treats the files as
untrusted. The ``RunDir`` read helpers are the lenient kind the runner needs (a status.json it
cannot read counts as empty and is replaced by the next write); readers that must say what is
wrong call :mod:`tfminima.runfiles` directly.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from tfminima import runfiles, safe_io
from tfminima.runfiles import FINAL_STATES, STATES, MetricsTail  # noqa: F401  (rundir.MetricsTail, rundir.STATES)

# errno values that mean "this storage cannot take the run's files", not a bug in the run
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                  errno.ENOTDIR}  # ENOTDIR: a path component is a file (e.g. --out file/runs)


def is_storage_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in STORAGE_ERRNOS


class StorageError(OSError):
    """The run directory cannot be written (disk full, read-only, no permission): a message, not a bug."""

    @classmethod
    def from_os_error(cls, err: OSError, run_path: str | Path) -> "StorageError":
        where = err.filename or run_path
        new = cls(err.errno, f"cannot write {where}: {err.strerror or err}")
        new.filename = str(where)
        new.run_path = str(run_path)
        return new

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file (and a FIFO where the file
    goes is replaced, never waited on)."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    safe_io.write_beside(path, path.with_name(f".{path.name}.{os.getpid()}.tmp"), write)


def atomic_savefig(fig, path: Path, **savefig_options) -> None:
    """``fig.savefig`` beside ``path``, then renamed into place: a viewer never reads half a figure, and a
    FIFO left where the figure goes is replaced instead of blocking the writer forever."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    safe_io.write_beside(path, tmp, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **savefig_options))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; non-finite floats become None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    try:
        f = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    if math.isfinite(f):
        return int(f) if hasattr(obj, "dtype") and "int" in str(obj.dtype) else f
    return None


class RunDir:
    """Paths and files of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # paths ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def tb_dir(self) -> Path:
        return self.path / "tb"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    # status -----------------------------------------------------------------------------
    def status(self) -> dict:
        """status.json, checked; ``{}`` when it is missing or cannot be read (see :func:`runfiles.read_status`)."""
        try:
            return runfiles.read_status(self.path)
        except runfiles.CorruptFile:
            return {}

    def write_status(self, state: str, **fields: Any) -> dict:
        """Merge ``fields`` into status.json and set ``state`` (atomic replace)."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        status = self.status()
        status.update(fields)
        status.update(state=state, run_id=self.run_id, updated=time.time())
        if state == "running":
            status.setdefault("started", time.time())
            status.update(pid=os.getpid(), host=socket.gethostname())
        if state in FINAL_STATES:
            status["ended"] = time.time()
        atomic_write_json(self.status_path, status)
        return status

    def summary(self) -> dict:
        """summary.json, checked; ``{}`` when it is missing or cannot be read."""
        try:
            return runfiles.read_summary(self.path)
        except runfiles.CorruptFile:
            return {}

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)

    # events -----------------------------------------------------------------------------
    def events(self) -> list[dict]:
        """The events of metrics.jsonl; lines that are no event are skipped (:func:`runfiles.read_events`)."""
        return runfiles.read_events(self.metrics_path).events

    def truncate_events_after(self, epochs_done: int) -> list[str]:
        """Keep only events of the first ``epochs_done`` epochs (used on resume: the log matches the
        checkpoint), rewritten in epochs completed (:func:`runfiles.in_epochs_completed`).

        Lines that are no event are dropped too; returns the warnings that say which.
        """
        read = runfiles.read_events(self.metrics_path)
        events = runfiles.in_epochs_completed(read.events)
        kept = runfiles.marked([e for e in events if e.get("epoch") is None or e["epoch"] <= epochs_done])
        atomic_write_text(self.metrics_path, "".join(json.dumps(_jsonable(e)) + "\n" for e in kept))
        return read.warnings()


class MetricsWriter:
    """Appends events to metrics.jsonl, one flushed JSON object a line."""

    def __init__(self, path: str | Path, run_id: str):
        self.path = Path(path)
        self.run_id = run_id
        self._f = open(self.path, "a", buffering=1)

    def write(self, kind: str, epoch: int | None, step: int | None, **values: Any) -> dict:
        event = {"run_id": self.run_id, "epoch": epoch, "step": step, "time": time.time(), "kind": kind}
        event.update(values)
        self._f.write(json.dumps(_jsonable(event)) + "\n")
        self._f.flush()
        return event

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: str | Path) -> Iterator[dict]:
    """All complete events of a metrics.jsonl; a torn last line (no newline yet) and lines that are no
    event are skipped (:func:`runfiles.read_events` says which)."""
    yield from runfiles.iter_events(path)


def create(root: str | Path, group: str, run_id: str, config_yaml: str, hparams: dict | None = None) -> RunDir:
    """Make ``root/group/run_id`` with its config and a ``pending`` status."""
    rd = RunDir(Path(root) / group / run_id)
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.checkpoints_dir.mkdir(exist_ok=True)
    atomic_write_text(rd.config_path, config_yaml)
    if not rd.status_path.exists():
        rd.write_status("pending", hparams=hparams or {})
    return rd


def find_runs(root: str | Path) -> list[RunDir]:
    """Every run directory (a folder with config.yaml and status.json) below ``root``, sorted.

    An entry of either name counts whatever it is (a file, a directory, a broken link): readers then
    show the run as corrupt, rather than not at all. Symbolic links to folders are not followed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        names = set(dirnames).union(filenames)
        if "status.json" in names and "config.yaml" in names:
            found.append(RunDir(Path(dirpath)))
    return sorted(found, key=lambda r: str(r.path))


def pid_alive(pid: int | None) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= runfiles.PID_MAX:
        return False  # 0 and negative pids address process groups, not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_state(status: dict) -> str:
    """The state a reader should show: ``running`` whose process is gone on this host is ``crashed``."""
    state = status.get("state", "pending")
    if state == "running" and status.get("host") == socket.gethostname() and not pid_alive(status.get("pid")):
        return "crashed"
    return state
