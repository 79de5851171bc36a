"""Everything the app knows about the runs under RUNS_DIR, read from their files only.

The app's poll worker calls :meth:`RunStore.poll` a few times a second: it discovers run directories
with ``find_runs`` (also those started from the CLI), re-reads ``status.json`` / ``summary.json`` /
``config.yaml`` when they change, and tails every ``metrics.jsonl`` with ``MetricsTail`` into numpy
series. Files are read with :mod:`tfminima.runfiles`: a run whose status, summary or config cannot
be read shows as ``corrupt`` with ``FILE: reason`` (its last good numbers stay), a metrics line
that is no event is skipped and counted; nothing a file holds can stop the poll.
The UI reads under :attr:`RunStore.lock` and redraws only when :attr:`RunStore.version` moved,
so many events arriving at once cost one redraw. The store knows nothing of the launcher: the
app lays what the launcher knows over these rows (:mod:`tui.runview`). No Textual and no
TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from tfminima import rundir, runfiles
from tui.series import Series, channels_of


def _number(value) -> float | None:
    """A real number from a JSON field, else None (a string or a bool is no number here)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class RunRecord:
    """One run directory: its status, summary and metric series."""

    def __init__(self, root: Path, run: rundir.RunDir):
        self.dir = run
        self.key = run.path.relative_to(root).as_posix()
        self.group = run.path.parent.relative_to(root).as_posix()
        self.run_id = run.run_id
        self.status: dict = {}
        self.summary: dict = {}
        self.series: dict[str, Series] = {}
        self.events = 0
        self.last_epoch = 0  # epochs completed, by the log
        self._numbering = runfiles.EpochNumbering()
        self._tail = rundir.MetricsTail(run.metrics_path)
        self._mtimes: dict[str, object] = {}
        self._config_epochs: int | None = None
        self._config_optimizer: dict = {}  # nesterov and svag, which set the edge of stability (not in hparams)
        self._state: str | None = None
        self.corrupt: dict[str, str] = {}  # file -> why it cannot be read (status.json, summary.json, config.yaml)

    # reading files (called by the poll worker) -------------------------------------------
    def read_files(self) -> tuple[bool, list[dict], bool]:
        """Re-read what changed on disk; returns (files changed, new events, log was reset)."""
        changed = False
        for name, read in (("status.json", self._read_status), ("summary.json", self._read_summary),
                           ("config.yaml", self._read_config)):
            m = _mtime(self.dir.path / name)
            if m != self._mtimes.get(name, -1):
                self._mtimes[name], changed = m, True
                try:
                    read()
                    self.corrupt.pop(name, None)
                except runfiles.CorruptFile as err:
                    self.corrupt[name] = err.reason
        state = rundir.effective_state(self.status)  # a dead pid turns running into crashed
        if state != self._state:
            self._state, changed = state, True
        skipped = self._tail.skipped_count
        events = self._tail.poll()
        return changed or self._tail.skipped_count != skipped, events, self._tail.reset

    def _read_status(self) -> None:
        self.status = runfiles.read_status(self.dir.path)

    def _read_summary(self) -> None:
        self.summary = runfiles.read_summary(self.dir.path)

    def _read_config(self) -> None:
        spec = runfiles.read_config(self.dir.path)
        self._config_epochs = spec.epochs
        self._config_optimizer = {"nesterov": bool(spec.optimizer.nesterov), "svag": int(spec.optimizer.svag)}

    @property
    def corruption(self) -> str:
        """``FILE: reason`` for every file that cannot be read ("" when all can)."""
        return "; ".join(f"{name}: {reason}" for name, reason in sorted(self.corrupt.items()))

    @property
    def skipped_lines(self) -> str:
        """The metrics.jsonl lines skipped so far, counted, with the first one's reason ("" when none)."""
        tail = self._tail
        if tail.problem:
            return tail.problem
        if not tail.skipped_count:
            return ""
        return runfiles.Events([], tail.skipped, tail.skipped_count).skipped_summary()

    def apply(self, events: list[dict], reset: bool) -> None:
        """Add events to the series (under the store lock)."""
        if reset:
            self.series.clear()
            self.events, self.last_epoch = 0, 0
            self._numbering = runfiles.EpochNumbering()
        for event in events:
            epoch = self._numbering.completed(event)  # epochs completed, also in a log of the old numbering
            self.events += 1
            if not isinstance(epoch, (int, float)):
                continue
            if event.get("kind") == "train":
                self.last_epoch = max(self.last_epoch, int(epoch))
            for channel, value in channels_of(event):
                series = self.series.get(channel)
                if series is None:
                    series = self.series[channel] = Series()
                series.append(epoch, value)

    # derived values ------------------------------------------------------------------------
    @property
    def hparams(self) -> dict:
        return self.status.get("hparams") or self.summary.get("hparams") or {}

    @property
    def optimizer(self) -> dict:
        """What sets the run's edge of stability: base ``lr``, ``momentum`` (0 when absent), ``nesterov`` and
        SVAG's ``svag`` (the config's, else a sweep's varied hparams, else plain heavy-ball SGD)."""
        hp = self.hparams
        nesterov = self._config_optimizer.get("nesterov", hp.get("optimizer_nesterov", False))
        svag = self._config_optimizer.get("svag", hp.get("optimizer_svag", 1))
        return {"lr": _number(hp.get("lr")), "momentum": _number(hp.get("momentum")) or 0.0,
                "nesterov": nesterov is True, "svag": int(svag) if _number(svag) and svag >= 1 else 1}

    @property
    def epochs(self) -> int | None:
        return self.status.get("epochs") or self._config_epochs or None

    @property
    def epochs_done(self) -> int:
        # status.json gets epochs_done after each epoch; the log may already know a newer one.
        return max(int(self.status.get("epochs_done") or 0), self.last_epoch)

    def last(self, channel: str) -> float | None:
        series = self.series.get(channel)
        return series.last() if series is not None else None

    def final(self, name: str) -> float | None:
        """A final number: summary.json first, else the latest (or best) logged value."""
        value = self.summary.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if name == "best_val_accuracy":
            s = self.series.get("val/accuracy")
            return float(s.y.max()) if s is not None and len(s) else None
        channel = {"val_accuracy": "val/accuracy", "test_accuracy": "test/accuracy",
                   "accuracy": "train/accuracy", "loss": "train/loss", "val_loss": "val/loss"}.get(name, name)
        return self.last(channel)


@dataclasses.dataclass
class RunRow:
    """What a table row shows about one run (a queued launch has no directory yet: :mod:`tui.runview`)."""

    key: str
    group: str
    run_id: str
    state: str
    lr: float | None = None
    batch_size: int | None = None
    momentum: float | None = None
    eta_over_s: float | None = None
    eta_over_s_momentum: float | None = None
    # η/S·(1 − S/N) (Smith and Le 2018) as the run last logged it (its latest epoch's η and S); None for
    # runs logged before the trainer wrote it
    eta_over_s_finite: float | None = None
    seed: int | None = None
    epochs_done: int = 0
    epochs: int | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    best_val_accuracy: float | None = None
    lambda_max: float | None = None
    stability: float | None = None  # λ_max·η/(2(1+β)): 1 at the edge of stability (when the monitor logs it)
    trace: float | None = None
    steps_to_target: float | None = None  # until: runs (None also when the target was missed)
    target_reached: bool | None = None  # None: the run has no until: target (or has not ended)
    error: str = ""
    seconds: float | None = None


class RunStore:
    """The runs under ``root``; ``poll()`` from a worker thread, read under ``lock`` from the UI."""

    def __init__(self, root: str | Path, scan_interval: float = 2.0):
        self.root = Path(root)
        self.scan_interval = scan_interval
        self.records: dict[str, RunRecord] = {}
        self.lock = threading.RLock()
        self.version = 0
        self._last_scan = 0.0

    def poll(self, force_scan: bool = False) -> bool:
        """One pass over the disk; True if anything changed. ``force_scan`` looks for new run
        directories now (e.g. a child just started) instead of every ``scan_interval`` seconds."""
        changed = False
        now = time.monotonic()
        if force_scan or now - self._last_scan >= self.scan_interval or not self.records:
            self._last_scan = now
            changed |= self._scan()
        for record in list(self.records.values()):
            files_changed, events, reset = record.read_files()  # never raises for what a file holds
            if events or reset or files_changed:
                with self.lock:
                    record.apply(events, reset)
                    self.version += 1  # per run: a long first read shows runs as they load
                changed = True
        if changed:
            with self.lock:
                self.version += 1
        return changed

    def _scan(self) -> bool:
        """Drop run directories that are gone; read each new one before it is shown (a row never
        shows a run whose files have not been read), publishing them one by one as they load."""
        found = {run.path.relative_to(self.root).as_posix(): run for run in rundir.find_runs(self.root)}
        if found.keys() == self.records.keys():
            return False
        with self.lock:
            self.records = {key: record for key, record in self.records.items() if key in found}
            self.version += 1
        for key, run in found.items():
            if key in self.records:
                continue
            record = RunRecord(self.root, run)
            _, events, reset = record.read_files()
            record.apply(events, reset)
            with self.lock:
                self.records[key] = record
                self.version += 1
        return True

    # views -------------------------------------------------------------------------------
    def state_of(self, record: RunRecord) -> str:
        """The run's state as its files tell it (a dead pid turns running into crashed; files that
        cannot be read make it ``corrupt``)."""
        if record.corrupt:
            return runfiles.CORRUPT
        return rundir.effective_state(record.status)

    def error_of(self, record: RunRecord) -> str:
        """Why the run ended badly (or cannot be read), as its files tell it."""
        if record.corrupt:
            return record.corruption
        if rundir.effective_state(record.status) == "crashed":
            return f"process {record.status.get('pid')} is gone and left no final status"
        return record.status.get("error") or record.summary.get("error") or record.skipped_lines or ""

    def row(self, record: RunRecord) -> RunRow:
        hp = record.hparams
        started, ended = record.status.get("started"), record.status.get("ended")
        return RunRow(
            key=record.key, group=record.group, run_id=record.run_id, state=self.state_of(record),
            lr=hp.get("lr"), batch_size=hp.get("batch_size"), momentum=hp.get("momentum"),
            eta_over_s=hp.get("eta_over_s"), eta_over_s_momentum=hp.get("eta_over_s_momentum"),
            eta_over_s_finite=record.last("schedule/eta_over_s_finite"),
            seed=hp.get("seed"), epochs_done=record.epochs_done, epochs=record.epochs,
            train_accuracy=record.last("train/accuracy"), val_accuracy=record.final("val_accuracy"),
            test_accuracy=record.final("test_accuracy"), best_val_accuracy=record.final("best_val_accuracy"),
            lambda_max=record.final("sharpness/lambda_max"), stability=record.final("sharpness/stability"),
            trace=record.final("sharpness/trace"),
            steps_to_target=record.final("steps_to_target"),
            target_reached=record.summary.get("target_reached") if isinstance(record.summary.get("target_reached"), bool)
            else None,
            error=self.error_of(record),
            seconds=(ended - started) if started and ended else None,
        )

    def rows(self) -> list[RunRow]:
        """Every run directory, sorted by key."""
        with self.lock:
            return [self.row(r) for _, r in sorted(self.records.items())]

    def get(self, key: str) -> RunRecord | None:
        with self.lock:
            return self.records.get(key)
