"""Hand-built run directories for the report tests: known numbers in, no training.

``make_run`` writes config.yaml (through the real schema), status.json, summary.json and
metrics.jsonl exactly as the runner lays them out, from per-epoch lists given by the test.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import yaml

from tfminima import config


def config_yaml(name: str, *, lr: float, batch_size: int, momentum: float = 0.0, svag: int = 1,
                train_size: int = 4000, label_noise: float = 0.0, epochs: int = 4,
                figures: list[str] | None = None, pairs: list[list[str]] | None = None) -> str:
    """A resolved config.yaml (defaults filled by the real schema)."""
    data = {
        "name": name, "epochs": epochs,
        "dataset": {"name": "mnist1d", "train_size": train_size, "val_size": 100, "test_size": 100,
                    "label_noise": label_noise},
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"lr": lr, "batch_size": batch_size, "momentum": momentum, "svag": svag},
        "report": {"figures": figures or ["curves"], "pairs": pairs or []},
    }
    return config.to_yaml(config.load_text(yaml.safe_dump(data)))


def epoch_events(run_id: str, *, train_loss=(), train_acc=(), val_loss=(), val_acc=(), lr=(), batch_size=(),
                 svag: int | None = None) -> list[dict]:
    """train / eval / schedule events, one set per epoch index (lists may be shorter than the run)."""
    events = []
    n = max(len(train_loss), len(val_acc), len(lr))
    for i in range(n):
        base = {"run_id": run_id, "epoch": i, "step": 10 * (i + 1), "time": 1000.0 + i}
        if i < len(train_loss):
            events.append(dict(base, kind="train", loss=train_loss[i], accuracy=train_acc[i], steps=10, seconds=0.1))
        if i < len(val_acc):
            events.append(dict(base, kind="eval", split="val", loss=val_loss[i], accuracy=val_acc[i]))
        if i < len(lr):
            sched = {"lr": lr[i], "batch_size": batch_size[i], "eta_over_s": lr[i] / batch_size[i],
                     "eta_over_s_momentum": lr[i] / batch_size[i]}
            if svag is not None:
                sched["svag"] = svag
            events.append(dict(base, kind="schedule", **sched))
    return events


def monitor_events(run_id: str, kind: str, per_epoch: dict[int, dict]) -> list[dict]:
    """Monitor events (sharpness, memorization) at the given epoch indices."""
    return [{"run_id": run_id, "epoch": e, "step": 10 * (e + 1), "time": 2000.0 + e, "kind": kind, **values}
            for e, values in sorted(per_epoch.items())]


def make_run(group: Path, run_id: str, cfg: str, *, state: str = "completed", label: str | None = None,
             summary: dict | None = None, events: list[dict] = (), error: str | None = None) -> Path:
    """Write one run directory the way the runner does."""
    spec = config.load_text(cfg)
    hparams = {"lr": spec.optimizer.lr, "batch_size": spec.optimizer.batch_size, "momentum": spec.optimizer.momentum,
               "eta_over_s": spec.noise_scale, "eta_over_s_momentum": spec.noise_scale_momentum, "seed": spec.seed}
    if label is not None:
        hparams["label"] = label
    path = group / run_id
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(cfg)
    (path / "status.json").write_text(json.dumps({"state": state, "hparams": hparams, "run_id": run_id,
                                                  "error": error, "epochs": spec.epochs}))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(dict(summary, state=state, hparams=hparams, run_id=run_id)))
    (path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises if the file is not a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])
