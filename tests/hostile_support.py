"""Hostile run folders: a valid group of runs, and the ways a file in it can be broken.

``build_group`` writes one group the way the runner lays it out (through report_support's
``make_run``, the real schema and real checkpoint/analysis file shapes). A :class:`Corruption`
names a file of that group and what is done to it; :data:`corruptions` is the hypothesis strategy
over all of them, :data:`EVERY_KIND` one of each for the deterministic tests. ``tree`` snapshots a
folder so a test can tell that a reader wrote nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from report_support import config_yaml, epoch_events, make_run, monitor_events

from tfminima import limits

# Text of any Unicode character but a lone surrogate: the alphabet of st.text()'s default (its codec
# utf-8), given without naming the codec, for which Hypothesis would first encode every code point
# (~2.5 CPU-s in each fresh checkout's test process).
UNICODE = st.characters(exclude_categories=("Cs",))

GROUP = "g"
EPOCHS = 3
RUNS = {  # run id -> (lr, batch size, state)
    "lr0.01-bs32-s0": (0.01, 32, "completed"),
    "lr0.02-bs32-s0": (0.02, 32, "completed"),
    "lr0.04-bs32-s0": (0.04, 32, "failed"),  # unfinished: what --resume picks up
}
FIGURES = ["curves", "interpolation", "sharpness_trajectory"]
RUN_FILES = ["status.json", "summary.json", "config.yaml", "metrics.jsonl", "checkpoints/latest",
             "checkpoints/epoch-2/state.json", "checkpoints/epoch-2/variables.npz", "analysis/hessian-epoch-2.json"]
GROUP_FILES = ["analysis/interpolation--lr0.01-bs32-s0--lr0.02-bs32-s0.json"]
JSON_FILES = {"status.json", "summary.json", "checkpoints/epoch-2/state.json", "analysis/hessian-epoch-2.json",
              GROUP_FILES[0]}
# readers show these as the run's state ``corrupt`` when they cannot be read
VITAL = ("status.json", "summary.json", "config.yaml")


def build_group(root: Path) -> Path:
    """``root/g`` with three runs (two completed, one failed), checkpoints, analyses and an interpolation."""
    group = Path(root) / GROUP
    for run_id, (lr, bs, state) in RUNS.items():
        events = epoch_events(run_id, train_loss=[2.0, 1.2, 0.8], train_acc=[0.3, 0.5, 0.7],
                              val_loss=[2.1, 1.3, 0.9], val_acc=[0.25, 0.45, 0.6], lr=[lr] * EPOCHS,
                              batch_size=[bs] * EPOCHS)
        events += monitor_events(run_id, "sharpness", {e: {"lambda_max": 10.0 - e, "trace": 50.0 - e,
                                                           "eigenvalues": [10.0 - e, 5.0]} for e in range(EPOCHS)})
        summary = {"val_accuracy": 0.6, "accuracy": 0.7, "loss": 0.8, "epochs_done": EPOCHS,
                   "sharpness/lambda_max": 8.0} if state == "completed" else None
        path = make_run(group, run_id, config_yaml("g", lr=lr, batch_size=bs, epochs=EPOCHS, figures=FIGURES,
                                                   pairs=[["lr0.01-bs32-s0", "lr0.02-bs32-s0"]]),
                        state=state, summary=summary, events=events,
                        error="ValueError: stopped" if state == "failed" else None)
        ckpt = path / "checkpoints" / "epoch-2"
        ckpt.mkdir(parents=True)
        (ckpt / "state.json").write_text(json.dumps({"epochs_done": 2, "step_in_epoch": 0, "model_paths": ["m/w"],
                                                     "optimizer_paths": ["o/iteration"]}))
        with open(ckpt / "variables.npz", "wb") as f:  # the arrays state.json lists, as np.savez writes them
            np.savez(f, m0=np.zeros(3, np.float32), o0=np.zeros((), np.int64))
        (path / "checkpoints" / "latest").write_text("epoch-2\n")
        (path / "analysis").mkdir()
        (path / "analysis" / "hessian-epoch-2.json").write_text(json.dumps(
            {"run_id": run_id, "epochs_done": 2, "samples": 128, "eigenvalues": [9.0, 4.0], "trace": 40.0,
             "trace_stderr": 1.0}))
    alphas = [-1.0 + 0.5 * i for i in range(7)]
    (group / "analysis").mkdir()
    (group / GROUP_FILES[0]).write_text(json.dumps(
        {"run_a": "lr0.01-bs32-s0", "run_b": "lr0.02-bs32-s0", "alphas": alphas,
         "train_loss": [1.0 + (a - 0.5) ** 2 for a in alphas], "train_accuracy": [0.5] * len(alphas),
         "val_loss": None, "val_accuracy": None, "eta_over_s_a": 0.01 / 32, "eta_over_s_b": 0.02 / 32}))
    return group


# ----------------------------------------------------------------------------- hostile values
DEEP = "[" * 100_000 + "]" * 100_000
JSON_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e308", "1" * 5000, DEEP, "[1, 2]", '"text"',
               "null", "true", "{}", '{"state": "completed"', "{'state': 1}", "\ufeff{}", ""]
hostile_numbers = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e308", "-1e308", "1e999", "-1", "0",
                                   "1" * 30, "-" + "9" * 19, "3.5", "4999999", "2147483648", "true", "null"])
hostile_json_values = st.one_of(
    hostile_numbers,
    st.sampled_from(['"x"', '""', '"[/]"', '"[bold"', '"\\u0000"', '"\\ud800"', '"a\\nb"', '"$x^{$"', "[]", "{}",
                     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
                     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", '{"a": [1, {"b": null}]', DEEP]),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(10**25), 10**25),
                           st.floats(allow_nan=False, allow_infinity=False), st.text(UNICODE, max_size=20)),
                 lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(UNICODE, max_size=8), inner, max_size=3)),
                 max_leaves=6).map(json.dumps),
)
FIELDS = {
    "status.json": ["state", "pid", "host", "epochs", "epochs_done", "started", "updated", "ended", "error", "traceback",
                    "hparams", "hparams.lr", "hparams.batch_size", "hparams.seed", "hparams.label", "hparams.momentum",
                    "hparams.eta_over_s", "distribution", "run_id"],
    "summary.json": ["state", "hparams", "hparams.lr", "val_accuracy", "sharpness/lambda_max", "epochs_done", "error"],
    "checkpoints/epoch-2/state.json": ["epochs_done", "step_in_epoch", "model_paths"],
    "analysis/hessian-epoch-2.json": ["eigenvalues", "epochs_done", "trace", "samples"],
    GROUP_FILES[0]: ["alphas", "train_loss", "run_a", "eta_over_s_a", "val_loss"],
}
EVENT_FIELDS = ["epoch", "kind", "step", "loss", "accuracy", "split", "lr", "run_id", "eigenvalues"]
YAML_VALUES = ["1e12", "1000000000000", "-1", ".nan", ".inf", "..", "'a/b'", "[1, 2]", "{a: 1}", "!!python/object:os.system x",
               "&a [*a]", "'\\x00'", "null", "''", "'x' * 3", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"]
YAML_KEYS = ["name", "epochs", "seed", "optimizer.lr", "optimizer.batch_size", "dataset.train_size", "dataset.name",
             "lr_schedule", "model.hidden", "report.figures", "sweep.grid.seed", "monitors"]

FILE_KINDS = ["binary", "invalid_utf8", "truncate", "directory", "missing", "symlink_loop", "fifo", "dev_zero",
              "oversized", "replace_text"]
KINDS_OF = {  # file -> extra kinds that know its format
    **{f: ["json_token", "field"] for f in JSON_FILES},
    "metrics.jsonl": ["bad_line", "torn_tail", "long_line"],
    "config.yaml": ["yaml_value"],
    "checkpoints/latest": ["pointer"],
}
RUN_NAMES = ["$x^{$", "$\\frac$", "[red]", "[bold]x", "a\nb", "-rf", "...", "é" * 100, "x" * 250, " ", "\t"]
POINTERS = ["../../../etc", "epoch-999", "epoch-x", "epoch-1\nepoch-2", "/abs/epoch-2", "\x00", "epoch-2-step-" + "9" * 20,
            "epoch--1", ""]


@dataclasses.dataclass(frozen=True)
class Corruption:
    """What to break: a file (relative to its run, or to the group for GROUP_FILES), how, and the draws."""

    run_id: str | None
    file: str
    kind: str
    where: float = 0.5  # a position in the file, as a fraction of its length
    payload: bytes = b""
    text: str = ""
    key: str = ""

    def path(self, group: Path) -> Path:
        return group / self.file if self.run_id is None else group / self.run_id / self.file

    @property
    def renamed(self) -> str | None:
        """The run's folder name after this corruption (a rename gives the run a hostile id)."""
        return self.text if self.kind == "rename" else self.run_id

    def apply(self, group: Path) -> None:
        _KINDS[self.kind](self, self.path(group))

    @property
    def vital(self) -> bool:
        """The run must show as corrupt, whatever the draws (the file cannot be what it should be)."""
        if self.run_id is None or self.file not in VITAL:
            return False
        return self.kind in ("directory", "symlink_loop", "fifo", "dev_zero", "oversized")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _bytes(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""


def _replace(path: Path, data: bytes) -> None:
    _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _at(data: bytes, where: float) -> int:
    return int(len(data) * min(max(where, 0.0), 1.0))


def _set_field(c: Corruption, path: Path) -> None:
    """Set a (dotted) field of a JSON object file to a hostile JSON text, keeping the rest valid."""
    try:
        data = json.loads(_bytes(path) or b"{}")
    except (ValueError, RecursionError):  # an earlier corruption left no JSON object there
        data = {}
    if not isinstance(data, dict):
        data = {}
    marker = "@@HOSTILE@@"
    node = data
    parts = c.key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = marker
    _replace(path, json.dumps(data).replace(f'"{marker}"', c.text).encode())


def _bad_line(c: Corruption, path: Path) -> None:
    lines = _bytes(path).splitlines(keepends=True)
    i = _at(lines, c.where) if lines else 0  # type: ignore[arg-type]
    if c.key:  # an event with one hostile field
        try:
            event = json.loads(lines[min(i, len(lines) - 1)]) if lines else {}
        except (ValueError, RecursionError):
            event = {}
        event = event if isinstance(event, dict) else {}
        event.setdefault("kind", "train")
        marker = "@@HOSTILE@@"
        event[c.key] = marker
        bad = json.dumps(event).replace(f'"{marker}"', c.text).encode()
    else:
        bad = c.payload.replace(b"\n", b" ")
    lines.insert(i, bad + b"\n")
    _replace(path, b"".join(lines))


def _yaml_value(c: Corruption, path: Path) -> None:
    text = _bytes(path).decode("utf-8", "replace")
    top, _, rest = c.key.partition(".")
    _replace(path, (text + f"\n{top}: " + (f"{{{rest}: {c.text}}}" if rest else c.text) + "\n").encode())


def _symlink_loop(c: Corruption, path: Path) -> None:
    _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.name, path)


def _fifo(c: Corruption, path: Path) -> None:
    _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def _dev_zero(c: Corruption, path: Path) -> None:
    _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/dev/zero", path)


def _oversized(c: Corruption, path: Path) -> None:
    """A sparse file one byte over the reader's limit (nothing is written but the size)."""
    name = "metrics_bytes" if path.name == "metrics.jsonl" else "run_file_bytes"
    limit = int(limits.value("config_bytes" if path.name == "config.yaml" else name))
    _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(limit + 1)


def _long_line(c: Corruption, path: Path) -> None:
    data = _bytes(path)
    i = data.find(b"\n", _at(data, c.where)) + 1
    long = b'{"kind": "train", "x": "' + b"a" * int(limits.value("line_bytes")) + b'"}\n'
    _replace(path, data[:i] + long + data[i:])


_KINDS = {
    "binary": lambda c, p: _replace(p, c.payload),
    "invalid_utf8": lambda c, p: _replace(p, (lambda d: d[:_at(d, c.where)] + b"\xff\xfe\xc0" + d[_at(d, c.where):])(_bytes(p))),
    "truncate": lambda c, p: _replace(p, (lambda d: d[:_at(d, c.where)])(_bytes(p))),
    "directory": lambda c, p: (_remove(p), p.mkdir(parents=True), (p / "inner").write_text("{}")),
    "missing": lambda c, p: _remove(p),
    "symlink_loop": _symlink_loop,
    "fifo": _fifo,
    "dev_zero": _dev_zero,
    "oversized": _oversized,
    "replace_text": lambda c, p: _replace(p, c.text.encode("utf-8", "surrogatepass")),
    "json_token": lambda c, p: _replace(p, c.text.encode()),
    "field": _set_field,
    "bad_line": _bad_line,
    "torn_tail": lambda c, p: _replace(p, _bytes(p) + c.payload.replace(b"\n", b" ")[:50] or b"{"),
    "long_line": _long_line,
    "yaml_value": _yaml_value,
    "pointer": lambda c, p: _replace(p, c.text.encode("utf-8", "surrogatepass")),
    "rename": lambda c, p: p.rename(p.parent / c.text) if p.is_dir() and not (p.parent / c.text).exists() else None,
}


@st.composite
def corruptions(draw) -> Corruption:
    """Any file of the group, any way of breaking it that fits the file."""
    file = draw(st.sampled_from(RUN_FILES + GROUP_FILES + [""]))
    if file == "":  # the run folder itself gets a hostile name
        return Corruption(draw(st.sampled_from(sorted(RUNS))), "", "rename", text=draw(st.sampled_from(RUN_NAMES)))
    run_id = None if file in GROUP_FILES else draw(st.sampled_from(sorted(RUNS)))
    kind = draw(st.sampled_from(FILE_KINDS + KINDS_OF.get(file, [])))
    where = draw(st.floats(0, 1))
    payload, text, key = b"", "", ""
    if kind in ("binary", "torn_tail"):
        payload = draw(st.binary(min_size=1, max_size=64))
    elif kind == "replace_text":
        text = draw(st.one_of(st.text(UNICODE, max_size=60), st.sampled_from(JSON_TOKENS + YAML_VALUES)))
    elif kind == "json_token":
        text = draw(st.sampled_from(JSON_TOKENS))
    elif kind == "field":
        key = draw(st.sampled_from(FIELDS[file]))
        text = draw(hostile_json_values)
    elif kind == "bad_line":
        if draw(st.booleans()):
            key, text = draw(st.sampled_from(EVENT_FIELDS)), draw(hostile_json_values)
        else:
            payload = draw(st.one_of(st.binary(min_size=1, max_size=64),
                                     st.sampled_from([t.encode() for t in JSON_TOKENS if t])))
    elif kind == "yaml_value":
        key, text = draw(st.sampled_from(YAML_KEYS)), draw(st.sampled_from(YAML_VALUES))
    elif kind == "pointer":
        text = draw(st.sampled_from(POINTERS))
    return Corruption(run_id, file, kind, where, payload, text, key)


def every_kind() -> list[Corruption]:
    """One corruption of each kind for each file it fits, spread over the runs (deterministic)."""
    out, runs = [], sorted(RUNS)
    for f_index, file in enumerate(RUN_FILES + GROUP_FILES):
        for k_index, kind in enumerate(FILE_KINDS + KINDS_OF.get(file, [])):
            run_id = None if file in GROUP_FILES else runs[(f_index + k_index) % len(runs)]
            key = FIELDS.get(file, [""])[0] if kind == "field" else ("epoch" if kind == "bad_line" else "")
            key = "epochs" if kind == "yaml_value" else key
            text = {"field": "NaN", "bad_line": "1e308", "yaml_value": "1e12", "json_token": "[1, 2]",
                    "pointer": "../../../etc", "replace_text": "[/]"}.get(kind, "")
            out.append(Corruption(run_id, file, kind, 0.5, b"\xff\x00{\xfe", text, key))
    runs = sorted(RUNS)
    out += [Corruption(runs[i % len(runs)], "", "rename", text=name) for i, name in enumerate(RUN_NAMES)]
    out += [Corruption(runs[i % len(runs)], "status.json", "field", text=json.dumps(label), key="hparams.label")
            for i, label in enumerate(RUN_NAMES)]
    return out


def tree(root: Path) -> dict[str, tuple]:
    """Every entry below ``root`` (symbolic links not followed): kind, size and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st_ = os.lstat(p)
            out[str(p.relative_to(root))] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return out
