"""Everything the app knows about the runs under RUNS_DIR, read from their files only.

The app's poll worker calls :meth:`RunStore.poll` a few times a second: it discovers run directories
with ``find_runs`` (also those started from the CLI), re-reads ``status.json`` / ``summary.json``
when they change, and tails every ``metrics.jsonl`` with ``MetricsTail`` into numpy series.
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

import yaml

from tfminima import rundir
from tui.series import Series, channels_of


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
        self.last_epoch = -1
        self._tail = rundir.MetricsTail(run.metrics_path)
        self._status_mtime = None
        self._summary_mtime = None
        self._config_epochs: int | None = None
        self._state: str | None = None

    # reading files (called by the poll worker) -------------------------------------------
    def read_files(self) -> tuple[bool, list[dict], bool]:
        """Re-read what changed on disk; returns (files changed, new events, log was reset)."""
        changed = False
        m = _mtime(self.dir.status_path)
        if m != self._status_mtime:
            self._status_mtime, self.status, changed = m, self.dir.status(), True
        m = _mtime(self.dir.summary_path)
        if m != self._summary_mtime:
            self._summary_mtime, self.summary, changed = m, self.dir.summary(), True
        state = rundir.effective_state(self.status)  # a dead pid turns running into crashed
        if state != self._state:
            self._state, changed = state, True
        events = self._tail.poll()
        return changed, events, self._tail.reset

    def apply(self, events: list[dict], reset: bool) -> None:
        """Add events to the series (under the store lock)."""
        if reset:
            self.series.clear()
            self.events, self.last_epoch = 0, -1
        for event in events:
            epoch = event.get("epoch")
            self.events += 1
            if not isinstance(epoch, (int, float)):
                continue
            if event.get("kind") == "train":
                self.last_epoch = max(self.last_epoch, int(epoch))
            for channel, value in channels_of(event):
                series = self.series.get(channel)
                if series is None:
                    series = self.series[channel] = Series()
                series.append(epoch + 1, value)

    # derived values ------------------------------------------------------------------------
    @property
    def hparams(self) -> dict:
        return self.status.get("hparams") or self.summary.get("hparams") or {}

    @property
    def epochs(self) -> int | None:
        if self.status.get("epochs"):
            return int(self.status["epochs"])
        if self._config_epochs is None:
            try:
                data = yaml.safe_load(self.dir.config_path.read_text()) or {}
                self._config_epochs = int(data.get("epochs") or 0)
            except (OSError, ValueError, TypeError, yaml.YAMLError):
                self._config_epochs = 0
        return self._config_epochs or None

    @property
    def epochs_done(self) -> int:
        # status.json gets epochs_done after each epoch; the log may already know a newer one.
        return max(int(self.status.get("epochs_done") or 0), self.last_epoch + 1)

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
    seed: int | None = None
    epochs_done: int = 0
    epochs: int | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    best_val_accuracy: float | None = None
    lambda_max: float | None = None
    trace: float | None = None
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
            files_changed, events, reset = record.read_files()
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
        found = {}
        for run in rundir.find_runs(self.root):
            key = run.path.relative_to(self.root).as_posix()
            found[key] = self.records.get(key) or RunRecord(self.root, run)
        if found.keys() == self.records.keys():
            return False
        with self.lock:
            self.records = found
        return True

    # views -------------------------------------------------------------------------------
    def state_of(self, record: RunRecord) -> str:
        """The run's state as its files tell it (a dead pid turns running into crashed)."""
        return rundir.effective_state(record.status)

    def error_of(self, record: RunRecord) -> str:
        """Why the run ended badly, as its files tell it."""
        if rundir.effective_state(record.status) == "crashed":
            return f"process {record.status.get('pid')} is gone and left no final status"
        return record.status.get("error") or record.summary.get("error") or ""

    def row(self, record: RunRecord) -> RunRow:
        hp = record.hparams
        started, ended = record.status.get("started"), record.status.get("ended")
        return RunRow(
            key=record.key, group=record.group, run_id=record.run_id, state=self.state_of(record),
            lr=hp.get("lr"), batch_size=hp.get("batch_size"), momentum=hp.get("momentum"),
            eta_over_s=hp.get("eta_over_s"), eta_over_s_momentum=hp.get("eta_over_s_momentum"),
            seed=hp.get("seed"), epochs_done=record.epochs_done, epochs=record.epochs,
            train_accuracy=record.last("train/accuracy"), val_accuracy=record.final("val_accuracy"),
            test_accuracy=record.final("test_accuracy"), best_val_accuracy=record.final("best_val_accuracy"),
            lambda_max=record.final("sharpness/lambda_max"), trace=record.final("sharpness/trace"),
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
