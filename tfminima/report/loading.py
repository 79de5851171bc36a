"""Read a runs directory into plain records: one :class:`Run` per run directory, grouped by sweep.

Only files are read (config.yaml, status.json, summary.json, metrics.jsonl, a run's
``analysis/hessian-epoch-N.json`` and the group's ``analysis/interpolation--A--B.json``), all
through :mod:`tfminima.runfiles`, which treats each as untrusted; nothing here imports
TensorFlow. A run whose status, summary or config cannot be read still becomes a record, in state
``corrupt`` with ``FILE: reason`` as its error, so the report lists it (and never draws it); a
metrics line or an analysis file that cannot be read is skipped with a warning naming it. This is
the only module of the report that reads run files, and it reads every event's ``epoch`` as epochs
completed, also in a log written the old way (:class:`tfminima.runfiles.EpochNumbering`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from tfminima import config as config_lib
from tfminima import rundir, runfiles

# Runs in these states have no trustworthy numbers: they are listed, never drawn.
SKIPPED_STATES = ("failed", "diverged", runfiles.CORRUPT)


@dataclasses.dataclass
class Series:
    """One quantity against epochs completed (as files since issue 12, checkpoints and the TUI count them)."""

    epochs: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.epochs)

    def at(self, epoch: float) -> float | None:
        """The value at exactly ``epoch``, else None (monitors measure only some epochs)."""
        hit = np.nonzero(self.epochs == epoch)[0]
        return float(self.values[hit[-1]]) if len(hit) else None

    @property
    def last(self) -> float | None:
        return float(self.values[-1]) if len(self) else None


EMPTY = Series(np.zeros(0), np.zeros(0))


@dataclasses.dataclass
class Run:
    """Everything the report needs from one run directory."""

    run_id: str
    path: Path
    state: str
    spec: config_lib.ExperimentSpec | None
    hparams: dict
    summary: dict
    error: str | None
    events: list[dict]  # epochs completed, whichever way the file counted them (:func:`runfiles.in_epochs_completed`)
    analyses: list[dict] = dataclasses.field(default_factory=list)  # analysis/hessian-epoch-N.json, by epoch
    warnings: list[str] = dataclasses.field(default_factory=list)  # lines and files of the run that were skipped
    label_suffix: str = ""  # what tells its label apart from another condition's same label (:func:`disambiguate`)
    _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    # identity ---------------------------------------------------------------------------
    def _opt(self, name: str, hparam: str, default: Any = None) -> Any:
        if self.spec is not None:
            return getattr(self.spec.optimizer, name)
        return self.hparams.get(hparam, default)

    @property
    def lr(self) -> float | None:
        return self._opt("lr", "lr")

    @property
    def batch_size(self) -> int | None:
        return self._opt("batch_size", "batch_size")

    @property
    def momentum(self) -> float:
        return float(self._opt("momentum", "momentum", 0.0) or 0.0)

    @property
    def nesterov(self) -> bool:
        return bool(self._opt("nesterov", "nesterov", False))

    @property
    def seed(self) -> int | None:
        if self.spec is not None:
            return int(self.spec.seed)
        seed = self.hparams.get("seed")
        return int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None

    @property
    def condition_key(self) -> str:
        """Equal for runs whose resolved configs differ only in ``seed`` (and that carry the same label).

        Without a readable config the hyper-parameters logged in status.json stand in.
        """
        key = self._cache.get("condition_key")
        if key is None:
            if self.spec is not None:
                config = self.spec.model_dump(mode="json", exclude={"seed"})
            else:
                config = {"hparams": {k: v for k, v in self.hparams.items() if k not in ("seed", "label")}}
            key = self._cache["condition_key"] = json.dumps({"config": config, "label": self.label}, sort_keys=True,
                                                            default=str)
        return key

    def config_items(self) -> dict[str, Any]:
        """The resolved config without ``seed``, flattened to dotted keys (``dataset.train_size``); the logged
        hyper-parameters without a readable config."""
        items = self._cache.get("config_items")
        if items is None:
            if self.spec is not None:
                items = _flatten(self.spec.model_dump(mode="json", exclude={"seed"}))
            else:
                items = {k: v for k, v in self.hparams.items() if k not in ("seed", "label")}
            self._cache["config_items"] = items
        return items

    @property
    def svag(self) -> int:
        """SVAG l: the config's, else the one the schedule events carry, else 1 (plain SGD)."""
        if self.spec is not None:
            return int(self.spec.optimizer.svag)
        logged = self.series("schedule", "svag")
        return int(logged.last) if len(logged) else int(self.hparams.get("optimizer_svag", 1))

    @property
    def eta_over_s(self) -> float | None:
        if self.spec is not None:
            return self.spec.noise_scale
        return self.hparams.get("eta_over_s")

    @property
    def eta_over_s_momentum(self) -> float | None:
        if self.spec is not None:
            return self.spec.noise_scale_momentum
        return self.hparams.get("eta_over_s_momentum")

    @property
    def label(self) -> str | None:
        label = self.hparams.get("label")
        return str(label) if label is not None else None

    @property
    def display_label(self) -> str | None:
        """The label, followed by the config keys that tell it apart where conditions share it (``b1 N=1000``)."""
        label = self.label
        if label is None or not self.label_suffix:
            return label
        return f"{label} {self.label_suffix}"

    @property
    def name(self) -> str:
        """What a reader recognises in a legend: the (disambiguated) label when the sweep named runs, else the id."""
        return self.display_label or self.run_id

    @property
    def train_size(self) -> int | None:
        return self.spec.dataset.train_size if self.spec is not None else None

    @property
    def label_noise(self) -> float:
        return float(self.spec.dataset.label_noise) if self.spec is not None else 0.0

    @property
    def plotted(self) -> bool:
        """Whether figures may use this run (failed and diverged runs only appear in tables)."""
        return self.state not in SKIPPED_STATES and self.eta_over_s is not None

    # numbers ----------------------------------------------------------------------------
    def lr_at(self, epoch: float) -> float | None:
        """The nominal learning rate used during ``epoch`` (epochs completed): its schedule event, its
        train event's ``lr``, else the config's base value."""
        for kind in ("schedule", "train"):
            value = self.series(kind, "lr").at(epoch)
            if value is not None:
                return value
        return self.lr

    def series(self, kind: str, key: str, split: str | None = None) -> Series:
        """``key`` of every ``kind`` event (of ``split`` for eval events), by epochs completed.

        A later event of the same epoch replaces an earlier one (a resumed run re-logs it).
        Results are cached: a long sweep asks for the same series from several figures.
        """
        cache_key = (kind, key, split)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._series(kind, key, split)
        return self._cache[cache_key]

    def _series(self, kind: str, key: str, split: str | None) -> Series:
        by_kind = self._cache.get("by_kind")
        if by_kind is None:
            by_kind = self._cache["by_kind"] = {}
            for e in self.events:
                by_kind.setdefault(e.get("kind"), []).append(e)
        points: dict[float, float] = {}
        for e in by_kind.get(kind, ()):
            if split is not None and e.get("split") != split:
                continue
            epoch, value = e.get("epoch"), e.get(key)
            if isinstance(epoch, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
                points[float(epoch)] = float(value)
        if not points:
            return EMPTY
        epochs = np.array(sorted(points))
        return Series(epochs, np.array([points[x] for x in epochs]))

    def final(self, metric: str) -> float | None:
        """The end value of a metric: summary.json first, the event log as a fallback."""
        key, kind, field, split = FINAL_SOURCES[metric]
        value = self.summary.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        series = self.series(kind, field, split)
        if metric == "best_val_accuracy":
            return float(series.values.max()) if len(series) else None
        return series.last


# metric -> (summary.json key, event kind, event field, eval split)
FINAL_SOURCES: dict[str, tuple[str, str, str, str | None]] = {
    "train_loss": ("loss", "train", "loss", None),
    "train_accuracy": ("accuracy", "train", "accuracy", None),
    "val_loss": ("val_loss", "eval", "loss", "val"),
    "val_accuracy": ("val_accuracy", "eval", "accuracy", "val"),
    "best_val_accuracy": ("best_val_accuracy", "eval", "accuracy", "val"),
    "test_accuracy": ("test_accuracy", "eval", "accuracy", "test"),
    "lambda_max": ("sharpness/lambda_max", "sharpness", "lambda_max", None),
    "trace": ("sharpness/trace", "sharpness", "trace", None),
    "noisy_accuracy": ("memorization/noisy_accuracy", "memorization", "noisy_accuracy", None),
}


@dataclasses.dataclass
class Group:
    """One sweep: its runs, what its experiment asks the report to draw, and its analysis files."""

    name: str
    path: Path
    runs: list[Run]
    interpolations: list[dict]
    warnings: list[str] = dataclasses.field(default_factory=list)  # unreadable files: corrupt runs, skipped lines

    @property
    def spec(self) -> config_lib.ExperimentSpec | None:
        return next((r.spec for r in self.runs if r.spec is not None), None)

    @property
    def report(self) -> config_lib.ReportSpec:
        spec = self.spec
        return spec.report if spec is not None else config_lib.ReportSpec()

    @property
    def experiment(self) -> str:
        spec = self.spec
        return spec.name if spec is not None else self.name

    def plotted(self) -> list[Run]:
        return [r for r in self.runs if r.plotted]


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# How a config key reads beside a label or as a stratum: the report's symbols, else the key's last part.
KEY_NAMES = {"dataset.train_size": "N", "dataset.label_noise": "noise", "optimizer.lr": "η",
             "optimizer.batch_size": "S", "optimizer.momentum": "β", "optimizer.svag": "l"}


def key_text(key: str, value: Any) -> str:
    """``N=1000``, ``noise=25%``, ``kind=cyclic_discrete``: one config value, named for a reader."""
    name = KEY_NAMES.get(key, key.rsplit(".", 1)[-1])
    if key == "dataset.label_noise" and isinstance(value, (int, float)):
        return f"{name}={value:.0%}"
    if isinstance(value, float):
        return f"{name}={value:g}"
    if isinstance(value, (dict, list)):
        return f"{name}={json.dumps(value, separators=(',', ':'), sort_keys=True)}"
    return f"{name}={value}"


# Config keys (and prefixes) that do not change what is trained: never what tells two conditions apart, if any other does.
NOT_TRAINING = ("monitors", "report", "output_dir", "name", "description")


def changes_training(key: str) -> bool:
    return not any(key == k or key.startswith(f"{k}.") for k in NOT_TRAINING)


def differing_keys(runs: list[Run]) -> list[str]:
    """The config keys (flattened, without ``seed``) whose values are not the same in all ``runs``, sorted."""
    items = [r.config_items() for r in runs]
    keys = sorted(set().union(*items)) if items else []
    canon = lambda v: json.dumps(v, sort_keys=True, default=str)
    return [k for k in keys if len({canon(i.get(k)) for i in items}) > 1]


def disambiguate(runs: list[Run]) -> None:
    """Give runs whose label another condition also carries a ``label_suffix``: the keys in which those
    conditions' configs differ (E5's ``b1`` at N = 1,000 and at N = 4,000 become ``b1 N=1000`` and ``b1 N=4000``)."""
    by_label: dict[str, dict[str, list[Run]]] = {}
    for r in runs:
        if r.label is not None:
            by_label.setdefault(r.label, {}).setdefault(r.condition_key, []).append(r)
    for conds in by_label.values():
        if len(conds) < 2:
            continue
        keys = differing_keys([members[0] for members in conds.values()])
        keys = [k for k in keys if changes_training(k)] or keys
        for members in conds.values():
            suffix = " ".join(key_text(k, members[0].config_items().get(k)) for k in keys)
            for r in members:
                r.label_suffix = suffix


def load_run(rd: rundir.RunDir) -> Run:
    """Read one run directory; problems become the record's ``error`` (and ``warnings``), never exceptions.

    A status, summary or config that cannot be read makes the run ``corrupt``, its error
    ``FILE: reason``; lines of metrics.jsonl that are no event are skipped and counted.
    """
    corrupt: list[str] = []

    def read(reader, default):
        try:
            return reader(rd.path)
        except runfiles.CorruptFile as err:
            corrupt.append(str(err))
            return default

    status = read(runfiles.read_status, {})
    summary = read(runfiles.read_summary, {})
    spec = read(runfiles.read_config, None)
    events = runfiles.read_events(rd.metrics_path)
    analyses, skipped = load_hessian_analyses(rd.path)
    errors = list(corrupt)
    if status.get("error"):
        errors.append(str(status["error"]))
    hparams = status.get("hparams") or summary.get("hparams") or {}
    if corrupt:
        state = runfiles.CORRUPT
    else:
        state = rundir.effective_state(status) if status else "unknown"
    return Run(
        run_id=rd.run_id, path=rd.path, state=state, spec=spec, hparams=hparams, summary=summary,
        error="; ".join(errors) or None, events=runfiles.in_epochs_completed(events.events), analyses=analyses,
        warnings=[f"{rd.path}: corrupt: {c}" for c in corrupt] + events.warnings() + skipped,
    )


_HESSIAN_FILE = re.compile(r"^hessian-epoch-(\d+)\.json$")


def load_hessian_analyses(run_dir: Path) -> tuple[list[dict], list[str]]:
    """The run's ``analysis/hessian-epoch-N.json`` results (``tfminima analyze``) by epoch, and a warning for
    each such file that cannot be read."""
    out, warnings = [], []
    for path in _files(run_dir / "analysis", "hessian-epoch-*.json"):
        m = _HESSIAN_FILE.match(path.name)
        if not m:
            continue
        try:
            data = runfiles.read_analysis(path, "hessian")
        except runfiles.CorruptFile as err:
            warnings.append(f"{run_dir}: skipped {err}")
            continue
        data.setdefault("epochs_done", int(m.group(1)))
        out.append(dict(data, file=path.name))
    return sorted(out, key=lambda d: (d.get("epochs_done") or 0, d["file"])), warnings


def load_interpolations(group_dir: Path) -> tuple[list[dict], list[str]]:
    """The group's ``analysis/interpolation--A--B.json`` results, and a warning for each that cannot be read."""
    out, warnings = [], []
    for path in _files(group_dir / "analysis", "interpolation--*.json"):
        try:
            out.append(dict(runfiles.read_analysis(path, "interpolation"), file=path.name))
        except runfiles.CorruptFile as err:
            warnings.append(f"{group_dir}: skipped {err}")
    return out, warnings


def _files(folder: Path, pattern: str) -> list[Path]:
    """``folder``'s entries matching ``pattern``, sorted; none when ``folder`` cannot be listed."""
    try:
        return sorted(folder.glob(pattern))
    except OSError:
        return []


def load_groups(root: str | Path) -> list[Group]:
    """Every group below ``root`` (``root`` itself when it is one sweep), runs sorted by η/S then id."""
    root = Path(root)
    by_dir: dict[Path, list[Run]] = {}
    for rd in rundir.find_runs(root):
        by_dir.setdefault(rd.path.parent, []).append(load_run(rd))
    groups = []
    for path, runs in sorted(by_dir.items()):
        rel = path.relative_to(root)
        name = root.resolve().name if str(rel) == "." else rel.as_posix()
        runs.sort(key=lambda r: (r.eta_over_s or 0.0, r.batch_size or 0, r.run_id))
        disambiguate(runs)
        interpolations, skipped = load_interpolations(path)
        warnings = [w for r in runs for w in r.warnings] + skipped
        groups.append(Group(name=name, path=path, runs=runs, interpolations=interpolations, warnings=warnings))
    return groups


def slug(text: str) -> str:
    """A file-name-safe form of a run id or group name: one folder name, never ``.`` or ``..``, at most 100 characters."""
    safe = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_")[:100]
    return safe if safe.strip(".") else "group"
