"""The one reader of run-directory files, each of them treated as untrusted. No TensorFlow.

The report, the TUI's store, the resume logic and :class:`tfminima.rundir.RunDir` read run files
only through this module. A run folder may come from another machine, a killed process, a full
disk or a person with an editor, so every file is read with :mod:`tfminima.safe_io` (bounded,
strict UTF-8, JSON without NaN, infinities, 10,000-digit integers or deep nesting) and then
checked against the shape tfminima writes:

- ``status.json``, ``summary.json``: a JSON object whose known fields have their types and ranges
  (a state we know, a pid, epochs within the limits, hyper-parameters that are positive numbers);
  anything else raises :class:`CorruptFile`, which readers show as the run's state ``corrupt``
  with ``FILE: reason``;
- ``config.yaml``: a config that validates (:func:`read_config`);
- ``metrics.jsonl``: one JSON object a line (its ``epoch``: :class:`EpochNumbering`); a line that is not one (or has an epoch that is not a
  whole number within the limits, or is too long) is skipped and counted as a
  :class:`SkippedLine` that names the file and line. A torn last line (no newline yet: a writer is
  busy, or was killed mid-line) is not an event yet and is skipped silently;
- ``checkpoints/latest`` and a checkpoint's ``state.json`` (:func:`read_checkpoint_pointer`,
  :func:`read_checkpoint_state`), and the ``analysis/*.json`` results (:func:`read_analysis`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tfminima import config as config_lib
from tfminima import limits, safe_io
from tfminima.config_yaml import load_data

FINAL_STATES = ("completed", "failed", "diverged", "cancelled", "crashed")
STATES = ("pending", "running") + FINAL_STATES
CORRUPT = "corrupt"  # the state readers show for a run whose status, summary or config cannot be read

PID_MAX = 2**31 - 1  # pid_t
TIME_MAX = 1e11  # seconds since 1970 (the year 5138): later is no time a clock of ours gave
EVENT_KEYS = 1000  # fields in one event
CHECKPOINT_NAME = re.compile(r"^epoch-(\d{1,9})(?:-step-(\d{1,12}))?$")
SKIPPED_SHOWN = 20  # skipped lines remembered with their reason (all are counted)


class CorruptFile(ValueError):
    """A run file that cannot be used; ``str()`` is ``FILE: reason`` (FILE relative to the run)."""

    def __init__(self, file: str, reason: str, path: Path | None = None):
        super().__init__(f"{file}: {reason}")
        self.file, self.reason, self.path = file, reason, path


@dataclasses.dataclass(frozen=True)
class SkippedLine:
    """A metrics.jsonl line that is no event: where, and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: skipped: {self.reason}"


# ----------------------------------------------------------------------------- JSON files
def _run_file_limit() -> int:
    return int(limits.value("run_file_bytes"))


def read_json_file(path: Path, name: str | None = None) -> Any:
    """Any JSON value of a run file (bounded, finite, shallow); CorruptFile, ``missing`` in its reason if absent."""
    path = Path(path)
    try:
        return safe_io.read_json(path, _run_file_limit())
    except safe_io.FileProblem as err:
        raise CorruptFile(name or path.name, err.reason, path) from None
    except limits.LimitError as err:
        raise CorruptFile(name or path.name, str(err), path) from None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class _RunFile(BaseModel):
    """Known fields typed and ranged (strict: no "3" for 3); unknown fields kept as they are."""

    model_config = ConfigDict(extra="allow", strict=True)


class Hparams(_RunFile):
    """What identifies a run in tables: positive η and S, β in [0, 1), a seed; other values plain scalars."""

    lr: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    momentum: float | None = Field(None, ge=0, lt=1)
    eta_over_s: float | None = Field(None, gt=0)
    eta_over_s_momentum: float | None = Field(None, gt=0)
    seed: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _plain_values(self) -> "Hparams":
        for key, value in (self.model_extra or {}).items():
            if not _scalar(value):
                raise ValueError(f"{key}: a hyper-parameter is a number, text or true/false, not {type(value).__name__}")
        return self


def _epochs_limit(value: int | None) -> int | None:
    if value is not None:
        limits.check("epochs", value)
    return value


class Status(_RunFile):
    """status.json as the runner writes it."""

    state: Literal[STATES] = "pending"  # type: ignore[valid-type]
    run_id: str | None = None
    pid: int | None = Field(None, ge=1, le=PID_MAX)
    host: str | None = None
    epochs: int | None = Field(None, ge=0)
    epochs_done: int | None = Field(None, ge=0)
    started: float | None = Field(None, ge=0, le=TIME_MAX)
    updated: float | None = Field(None, ge=0, le=TIME_MAX)
    ended: float | None = Field(None, ge=0, le=TIME_MAX)
    error: str | None = None
    traceback: str | None = None
    hparams: Hparams | None = None
    distribution: dict | None = None

    _epochs = field_validator("epochs", "epochs_done")(_epochs_limit)


class Summary(_RunFile):
    """summary.json: final numbers (any JSON values) and a few typed fields."""

    state: Literal[STATES] | None = None  # type: ignore[valid-type]
    run_id: str | None = None
    error: str | None = None
    hparams: Hparams | None = None
    epochs_done: int | None = Field(None, ge=0)
    distribution: dict | None = None

    _epochs = field_validator("epochs_done")(_epochs_limit)


def _validated(model: type[BaseModel], data: Any, name: str, path: Path) -> dict:
    if not isinstance(data, dict):
        raise CorruptFile(name, f"is a JSON {type(data).__name__}, not an object", path)
    try:
        model.model_validate(data)  # strict: nothing is coerced, so the file's own dict is returned as it is
        return data
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        got = repr(first.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        msg = first["msg"].removeprefix("Value error, ")
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise CorruptFile(name, f"{key}: {msg}, got {got}{more}", path) from None


def read_status(run_path: str | Path, *, missing_ok: bool = True) -> dict:
    """The run's status.json, checked; ``{}`` when it is missing and ``missing_ok``."""
    path = Path(run_path) / "status.json"
    try:
        data = read_json_file(path)
    except CorruptFile as err:
        if missing_ok and err.reason == "missing":
            return {}
        raise
    return _validated(Status, data, "status.json", path)


def read_summary(run_path: str | Path) -> dict:
    """The run's summary.json, checked; ``{}`` while there is none (the run has not ended)."""
    path = Path(run_path) / "summary.json"
    try:
        data = read_json_file(path)
    except CorruptFile as err:
        if err.reason == "missing":
            return {}
        raise
    return _validated(Summary, data, "summary.json", path)


# ----------------------------------------------------------------------------- config.yaml
def read_config(run_path: str | Path) -> config_lib.ExperimentSpec:
    """The run's config.yaml, validated; CorruptFile with its first problem (``line N: key: message``).

    Parsed by libyaml when present and validated without line numbers; only a config that fails
    is read again the slow way, for the line of its problem.
    """
    path = Path(run_path) / "config.yaml"
    try:
        text = config_lib.read_text(path)
        if not text.strip():
            raise CorruptFile("config.yaml", "is empty", path)
        try:
            data = load_data(text)  # libyaml unless nested too deeply for it (config_yaml.nesting_within)
        except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
            return config_lib.load_text(text, "config.yaml")  # the slow way: the same verdict, with its line
        sweep = data.get("sweep") if isinstance(data, dict) else None
        if isinstance(sweep, dict) and any(sweep.get(axis) for axis in ("grid", "zip", "ratio", "seeds")):
            raise CorruptFile("config.yaml", "holds a sweep: a run's config is one resolved run", path)
        try:
            return config_lib.validate_data(data, file="config.yaml")
        except config_lib.ConfigError:
            return config_lib.load_text(text, "config.yaml")
    except config_lib.ConfigError as err:
        first = err.problems[0]
        where = f"line {first.line}: " if first.line else ""
        reason = f"{where}{first.key}: {first.message}" if first.key else f"{where}{first.message}"
        reason = reason.removeprefix("cannot read: it ").removeprefix("cannot read: ")
        if "no such file" in reason:
            reason = "missing"
        more = f" (and {len(err.problems) - 1} more problems)" if len(err.problems) > 1 else ""
        raise CorruptFile("config.yaml", reason + more, path) from None


# ----------------------------------------------------------------------------- metrics.jsonl
def parse_event(line: bytes, max_epoch: int | None = None) -> dict:
    """One metrics.jsonl line as an event, or ValueError saying why it is none (``max_epoch``: the epochs
    limit, looked up when not given)."""
    try:
        event = safe_io.parse_json(line, depth=8)
    except safe_io.FileProblem as err:
        raise ValueError(err.reason.removeprefix("is ")) from None
    if not isinstance(event, dict):
        raise ValueError(f"a JSON {type(event).__name__}, not an object")
    if len(event) > EVENT_KEYS:
        raise ValueError(f"{len(event)} fields, over {EVENT_KEYS}")
    kind = event.get("kind")
    if not isinstance(kind, str) or not kind or len(kind) > 100:
        raise ValueError(f"kind {_short(kind)} is not the name of an event kind")
    for key in ("epoch", "step"):
        value = event.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{key} {_short(value)} is not a whole number >= 0")
    epoch = event.get("epoch")
    if epoch is not None:
        limit = limits.value("epochs") if max_epoch is None else max_epoch
        if epoch > limit:
            raise ValueError(limits.over("epochs", epoch, f"epoch {epoch}"))
    for key in ("run_id", "split"):
        if event.get(key) is not None and not isinstance(event[key], str):
            raise ValueError(f"{key} {_short(event[key])} is not text")
    return event


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _open_regular(path: Path) -> int:
    """A read descriptor of the regular file ``path`` (never blocks on a FIFO); FileProblem otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise safe_io.FileProblem("missing", missing=True) from None
    except OSError as err:
        raise safe_io.FileProblem("is a symbolic-link loop" if err.errno == errno.ELOOP
                                  else f"cannot be read ({err.strerror or err})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise safe_io.FileProblem("is a directory, not a file" if stat.S_ISDIR(mode) else "is not a regular file")
    return fd


class MetricsTail:
    """Reads a growing metrics.jsonl from where it stopped: ``poll()`` returns the new events only.

    Keeps the byte offset, the partial last line and the line number, so a reader never sees half
    an event, never re-reads the file from the start, and names the line of every event it skips
    (:attr:`skipped`, the first :data:`SKIPPED_SHOWN`; :attr:`skipped_count`, all). A line longer
    than the line limit is skipped without being held in memory; bytes beyond the metrics limit
    are not read. If the file shrinks (a resume rewrote it), it starts over and ``reset`` is set
    so the caller can drop what it had. :attr:`problem` says why the file cannot be read at all.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.line = 0
        self.reset = False
        self.problem: str | None = None
        self.skipped: list[SkippedLine] = []
        self.skipped_count = 0
        self._partial = b""
        self._overlong = False
        self._max_epoch: int | None = None

    def _skip(self, line: int, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < SKIPPED_SHOWN:
            self.skipped.append(SkippedLine(self.path, line, reason))

    def poll(self) -> list[dict]:
        self.reset = False
        try:
            info = os.stat(self.path)
        except OSError:
            info = None  # missing, or a link loop: the open below says which
        if info is not None and stat.S_ISREG(info.st_mode) and info.st_size == self.offset and not self.problem:
            return []  # nothing new (the common case: one stat)
        try:
            fd = _open_regular(self.path)
        except safe_io.FileProblem as err:
            self.problem = None if err.missing else f"{self.path} {err.reason}"
            return []
        out: list[dict] = []
        try:
            self.problem = None
            size = os.fstat(fd).st_size
            if size < self.offset:
                self.__init__(self.path)
                self.reset = True
            limit_bytes, line_limit = int(limits.value("metrics_bytes")), int(limits.value("line_bytes"))
            self._max_epoch = int(limits.value("epochs"))
            end = min(size, limit_bytes)
            os.lseek(fd, self.offset, os.SEEK_SET)
            while self.offset < end:
                chunk = os.read(fd, min(1 << 22, end - self.offset))
                if not chunk:
                    break
                self.offset += len(chunk)
                out += self._feed(chunk, line_limit)
            if size > limit_bytes:
                self.problem = (f"{self.path} is {size} bytes; only the first {limit_bytes} were read "
                                f"(set {limits.LIMITS['metrics_bytes'].variable} to read more)")
        except (OSError, limits.LimitError) as err:
            self.problem = f"{self.path} cannot be read ({err})"
        finally:
            os.close(fd)
        return out

    def _feed(self, chunk: bytes, line_limit: int) -> list[dict]:
        out = []
        pieces = chunk.split(b"\n")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if self._overlong:
                if not last:
                    self.line += 1
                    self._skip(self.line, f"longer than the line limit of {line_limit} bytes")
                    self._overlong = False
                continue
            if last:  # no newline yet: keep it (bounded) for the next poll
                self._partial += piece
                if len(self._partial) > line_limit:
                    self._partial, self._overlong = b"", True
                continue
            data, self._partial = self._partial + piece, b""
            self.line += 1
            if len(data) > line_limit:
                self._skip(self.line, f"longer than the line limit of {line_limit} bytes")
            elif data.strip():
                try:
                    out.append(parse_event(data, self._max_epoch))
                except ValueError as err:
                    self._skip(self.line, str(err))
        return out


@dataclasses.dataclass
class Events:
    """Every event of a metrics.jsonl, and the lines skipped on the way (and why)."""

    events: list[dict]
    skipped: list[SkippedLine]
    skipped_count: int
    problem: str | None = None

    def warnings(self) -> list[str]:
        """One line for a file that cannot be read, one for the skipped lines."""
        return ([self.problem] if self.problem else []) + ([self.skipped_summary()] if self.skipped_count else [])

    def skipped_summary(self) -> str:
        """``FILE:LINE: skipped: reason`` for one line; ``FILE: N lines skipped (lines a, b ...); line a: reason``."""
        first = self.skipped[0]
        if self.skipped_count == 1:
            return str(first)
        lines = ", ".join(str(s.line) for s in self.skipped[:5])
        more = f" and {self.skipped_count - 5} more" if self.skipped_count > 5 else ""
        return f"{first.path}: {self.skipped_count} lines skipped (lines {lines}{more}); line {first.line}: {first.reason}"


def read_events(path: str | Path) -> Events:
    """All complete events of a metrics.jsonl (a missing file has none)."""
    tail = MetricsTail(path)
    events = tail.poll()
    return Events(events, tail.skipped, tail.skipped_count, tail.problem)


def iter_events(path: str | Path) -> Iterator[dict]:
    """The complete events of a metrics.jsonl, bad lines skipped."""
    yield from read_events(path).events


# ----------------------------------------------------------------------------- epoch numbering
EPOCH_BASE = "epoch_base"  # the marker field: 1 = ``epoch`` counts epochs completed


def epoch_marker() -> dict:
    """The field a metrics.jsonl's first event carries when its epochs count epochs completed."""
    return {EPOCH_BASE: 1}


class EpochNumbering:
    """An event's ``epoch`` as epochs completed, for metrics.jsonl written either way.

    Since issue 12 every ``epoch`` the trainer writes counts epochs completed (1 = after the first
    epoch, as checkpoints ``epoch-N`` say), and the log's first event says so (:func:`epoch_marker`).
    A log without the marker was written the old way: an epoch-end event (train, eval, schedule,
    monitors, the final test eval) held the 0-based index of the epoch it closed, a status event the
    epochs done. Feed the events in file order (an incremental reader too: the marker comes first);
    the first event with an epoch and no marker before it decides "old".
    """

    def __init__(self):
        self.shift: int | None = None  # 0: a new log; 1: an old one; None: not known yet

    def completed(self, event: dict):
        """``event``'s epoch as epochs completed (None when it has none)."""
        epoch = event.get("epoch")
        if self.shift is None:
            if event.get(EPOCH_BASE) == 1:
                self.shift = 0
            elif epoch is not None:
                self.shift = 1
        if epoch is None or event.get("kind") == "status":
            return epoch
        return epoch + (self.shift or 0)


def in_epochs_completed(events: list[dict]) -> list[dict]:
    """``events`` (one log, in order) with every ``epoch`` counting epochs completed: what readers show."""
    numbering = EpochNumbering()
    out = []
    for event in events:
        epoch = numbering.completed(event)
        out.append(event if epoch == event.get("epoch") else dict(event, epoch=epoch))
    return out


def marked(events: list[dict]) -> list[dict]:
    """Events already in epochs completed, the first one carrying the marker (what a resume writes back)."""
    if events and events[0].get(EPOCH_BASE) != 1:
        events = [dict(events[0], **epoch_marker())] + events[1:]
    return events


# ----------------------------------------------------------------------------- checkpoints
def read_checkpoint_pointer(checkpoints_dir: str | Path) -> str | None:
    """The checkpoint folder name ``checkpoints/latest`` holds (``epoch-N`` or ``epoch-N-step-K``), or None
    without a pointer; CorruptFile when it holds anything else (a path, several lines, binary)."""
    path = Path(checkpoints_dir) / "latest"
    try:
        text = safe_io.read_text(path, 4096)
    except safe_io.FileProblem as err:
        if err.missing:
            return None
        raise CorruptFile("checkpoints/latest", err.reason, path) from None
    name = text.strip()
    if not CHECKPOINT_NAME.match(name):
        raise CorruptFile("checkpoints/latest", f"{_short(name)} is not a checkpoint name (epoch-N or epoch-N-step-K)", path)
    return name


class CheckpointState(_RunFile):
    """A checkpoint's state.json: where training stands, and the variables saved."""

    epochs_done: int = Field(ge=0)
    step_in_epoch: int = Field(0, ge=0)
    model_paths: list[str]
    optimizer_paths: list[str]

    _epochs = field_validator("epochs_done")(_epochs_limit)


def read_checkpoint_state(folder: str | Path) -> dict:
    """A checkpoint folder's state.json, checked; CorruptFile naming ``checkpoints/<folder>/state.json``."""
    folder = Path(folder)
    name = f"checkpoints/{folder.name}/state.json"
    data = read_json_file(folder / "state.json", name)
    return _validated(CheckpointState, data, name, folder / "state.json")


# ----------------------------------------------------------------------------- analysis/*.json
class HessianAnalysis(_RunFile):
    """``analysis/hessian-epoch-N.json`` (``tfminima analyze``)."""

    eigenvalues: list[float | None] = Field(min_length=1)
    epochs_done: int | None = Field(None, ge=0)
    trace: float | None = None
    trace_stderr: float | None = None
    samples: int | None = Field(None, ge=0)


class Interpolation(_RunFile):
    """``analysis/interpolation--A--B.json``: curves along α between two runs."""

    run_a: str
    run_b: str
    alphas: list[float] = Field(min_length=2)
    train_loss: list[float | None] = Field(min_length=2)
    train_accuracy: list[float | None] | None = None
    val_loss: list[float | None] | None = None
    val_accuracy: list[float | None] | None = None
    eta_over_s_a: float | None = Field(None, gt=0)
    eta_over_s_b: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _curves_match(self) -> "Interpolation":
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            curve = getattr(self, key)
            if curve is not None and len(curve) != len(self.alphas):
                raise ValueError(f"{key} has {len(curve)} values for {len(self.alphas)} alphas")
        return self


ANALYSES = {"hessian": HessianAnalysis, "interpolation": Interpolation}


def read_analysis(path: str | Path, kind: Literal["hessian", "interpolation"]) -> dict:
    """One ``analysis/*.json`` result, checked; CorruptFile naming ``analysis/<file>``."""
    path = Path(path)
    name = f"analysis/{path.name}"
    return _validated(ANALYSES[kind], read_json_file(path, name), name, path)
