"""Hand-built run directories for the report tests: known numbers in, no training.

``make_run`` writes config.yaml (through the real schema), status.json, summary.json and
metrics.jsonl exactly as the runner lays them out, from per-epoch lists given by the test.
"""

from __future__ import annotations

import functools
import itertools
import json
import struct
from pathlib import Path

import yaml

from tfminima import config


def config_yaml(name: str, *, lr: float, batch_size: int, momentum: float = 0.0, svag: int = 1,
                train_size: int = 4000, label_noise: float = 0.0, epochs: int = 4,
                figures: list[str] | None = None, pairs: list[list[str]] | None = None, seed: int = 0,
                **extra) -> str:
    """A resolved config.yaml (defaults filled by the real schema); ``extra`` sets further top-level keys."""
    data = {
        "name": name, "epochs": epochs, "seed": seed, **extra,
        "dataset": {"name": "mnist1d", "train_size": train_size, "val_size": 100, "test_size": 100,
                    "label_noise": label_noise},
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"lr": lr, "batch_size": batch_size, "momentum": momentum, "svag": svag},
        "report": {"figures": figures or ["curves"], "pairs": pairs or []},
    }
    return config.to_yaml(_spec(yaml.safe_dump(data)))


@functools.lru_cache(maxsize=None)
def _spec(text: str) -> config.ExperimentSpec:
    """The validated spec of a config text (the tests build hundreds of runs from a few configs)."""
    return config.load_text(text)


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
    spec = _spec(cfg)
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


def legend_problems(fig, *, drawn: bool = False) -> list[str]:
    """What a legend of ``fig`` covers, after drawing it (``drawn``: the caller already has): empty when
    every legend is clear.

    A legend (of the figure or of an axes) may overlap an axes only where that axes has no data: no
    vertex of a line (segments sampled every pixel), no scatter point, band, error bar or span. A
    legend must also stay clear of the figure's title.
    """

    if not drawn:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    problems = []
    title = fig._suptitle.get_window_extent(renderer) if fig._suptitle is not None else None
    for leg in legends:
        box = leg.get_window_extent(renderer)
        if title is not None and box.overlaps(title):
            problems.append("legend overlaps the figure title")
        for ax in fig.axes:
            if not ax.get_visible() or not box.overlaps(ax.get_window_extent(renderer)):
                continue
            for name, pts in _display_points(ax):
                inside = ((pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1))
                if inside.any():
                    problems.append(f"legend covers {name} in axes {ax.get_title() or ax.get_ylabel()!r}")
    return problems


def _display_points(ax):
    """(name, N×2 display coordinates) of everything drawn with data in ``ax``."""
    import numpy as np

    def dense(xy):
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) < 2:
            return xy
        out = [xy[:1]]
        for a, b in itertools.pairwise(xy):
            steps = max(int(np.hypot(*(b - a))), 1)
            out.append(a + (b - a) * np.linspace(0, 1, steps + 1)[1:, None])
        return np.concatenate(out)

    for line in ax.lines:
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        yield f"line {line.get_label()!r}", dense(xy) if line.get_linestyle() not in ("None", "", " ") else xy
    from matplotlib.collections import LineCollection, PathCollection

    for coll in ax.collections:
        if isinstance(coll, PathCollection):  # scatter: marker paths are in points, the offsets are the data
            offsets = np.asarray(coll.get_offsets(), dtype=float)
            if len(offsets):
                yield "markers", coll.get_offset_transform().transform(offsets)
        elif isinstance(coll, LineCollection):  # error bars, vlines
            for seg in coll.get_segments():
                if len(seg):
                    yield "segment", dense(coll.get_transform().transform(np.asarray(seg, dtype=float)))
        else:  # bands (fill_between), meshes
            for path in coll.get_paths():
                if len(path.vertices):
                    yield "band", dense(coll.get_transform().transform(np.asarray(path.vertices, dtype=float)))
    for patch in ax.patches:
        verts = patch.get_path().vertices
        if len(verts):
            yield "patch", dense(patch.get_transform().transform(np.asarray(verts, dtype=float)))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises if the file is not a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])
