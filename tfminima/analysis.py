"""Measurements of finished runs: Hessian spectrum at a checkpoint, interpolation between runs.

Results go next to what they measure, as JSON (numbers) and PNG (a figure):

- ``RUN/analysis/hessian-epoch-N.json`` (+ ``density-epoch-N.png`` with ``density=True``)
- ``GROUP/analysis/interpolation--A--B.json`` and ``.png`` for runs A and B of one group

``tfminima analyze`` and the runner (for a sweep whose ``report.figures`` has ``interpolation``)
call these; the reporter reads the JSON files.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np

from tfminima import checkpoint as ckpt
from tfminima import config as config_lib
from tfminima import runfiles
from tfminima.rundir import RunDir, atomic_savefig, atomic_write_json


def checkpoint_path(run: RunDir, epoch: int | None) -> Path:
    """The checkpoint to measure: the one ``checkpoints/latest`` names, or ``epoch-<epoch>``; checked
    (:func:`tfminima.checkpoint.verify`). CorruptFile (naming the file) or FileNotFoundError otherwise."""
    if epoch is None:
        path = ckpt.latest(run.checkpoints_dir)
        if path is None:
            raise FileNotFoundError(f"{run.path} has no checkpoint")
    else:
        path = run.checkpoints_dir / f"epoch-{epoch}"
        if not path.is_dir():
            have = sorted(p.name for p in run.checkpoints_dir.glob("epoch-*") if runfiles.CHECKPOINT_NAME.match(p.name))
            raise FileNotFoundError(f"{run.path} has no checkpoint after epoch {epoch}; it has: {', '.join(have) or 'none'}")
    ckpt.verify(path)
    return path


def load_run(run_dir: str | Path, epoch: int | None = None):
    """(spec, model with the checkpoint's weights, data splits, epochs done) of a run directory.

    A checkpoint that cannot be chosen or read raises :class:`tfminima.runfiles.CorruptFile` naming
    the file (``checkpoints/latest``, or the checkpoint's state.json or variables.npz).
    """
    from tfminima import data
    from tfminima.models import build_model

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    spec = config_lib.load(run.config_path)
    try:
        path = checkpoint_path(run, epoch)
    except runfiles.CorruptFile as err:
        raise runfiles.CorruptFile(f"{run.path}/{err.file}", err.reason, err.path) from None
    splits = data.load(spec.dataset)
    model = build_model(spec.model, splits.input_shape, splits.num_classes)
    state = ckpt.read_state(path)
    variables = list(model.variables)
    if len(variables) != len(state["model_paths"]):
        raise ValueError(f"checkpoint {path} does not match the model built from {run.config_path}")
    try:
        with np.load(path / "variables.npz") as z:
            for i, v in enumerate(variables):
                v.assign(ckpt.checked_array(z, f"m{i}", v, path))
    except runfiles.CorruptFile as err:
        raise runfiles.CorruptFile(f"{run.path}/{err.file}", err.reason, err.path) from None
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:  # a damaged archive member
        raise runfiles.CorruptFile(f"{path}/variables.npz",
                                   f"cannot be loaded ({err.__class__.__name__}: {err})", path) from None
    return spec, model, splits, int(state["epochs_done"])


def _subset(splits, samples: int, seed: int = 0):
    n = len(splits.x_train)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
    return splits.x_train[idx], splits.y_train[idx]


def hessian_report(
    run_dir: str | Path,
    *,
    epoch: int | None = None,
    k: int = 5,
    samples: int = 2048,
    trace_probes: int = 100,
    density: bool = False,
    tol: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Top-k eigenvalues, Hutchinson trace (and SLQ density) at a checkpoint; writes JSON (+ PNG)."""
    from tfminima import hessian

    run = RunDir(run_dir)
    spec, model, splits, done = load_run(run, epoch)
    data = _subset(splits, samples, seed)
    start = time.perf_counter()
    op = hessian.HessianOperator(model, data)  # one placement and one plan for every instrument below
    eig = hessian.top_eigenvalues(op, None, k, tol=tol, seed=seed)
    tr = hessian.trace(op, None, max_hvps=trace_probes, seed=seed)
    out = {
        "run_id": run.run_id, "epochs_done": done, "samples": len(data[0]),
        "eigenvalues": eig.eigenvalues.tolist(), "residuals": eig.residuals.tolist(),
        "eigen_hvps": eig.hvp_count, "trace": tr.value, "trace_stderr": tr.stderr, "trace_hvps": tr.hvp_count,
        "eta_over_s": spec.noise_scale, "eigen_hvp_mode": eig.hvp_mode, "trace_hvp_mode": tr.hvp_mode,
    }
    folder = run.path / "analysis"
    folder.mkdir(exist_ok=True)
    if density:
        dens = hessian.density(op, None, seed=seed)
        out.update(density_nodes=dens.nodes.ravel().tolist(), density_weights=dens.weights.ravel().tolist())
        _save_density_png(dens, folder / f"density-epoch-{done}.png", run.run_id, done)
    out["seconds"] = time.perf_counter() - start
    atomic_write_json(folder / f"hessian-epoch-{done}.json", out)
    return out


def _save_density_png(dens, path: Path, run_id: str, epoch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfminima import hessian

    fig, ax = plt.subplots(figsize=(6, 4))
    hessian.plot_density(dens, ax=ax)
    ax.set_title(f"Hessian spectral density — {run_id}, epoch {epoch}")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def interpolate_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    out_dir: str | Path | None = None,
    points: int = 31,
    alpha_min: float = -1.0,
    alpha_max: float = 2.0,
    samples: int = 2048,
    seed: int = 0,
) -> dict:
    """Loss and accuracy along (1−α)θ_A + αθ_B on training and validation data; JSON + PNG.

    Both runs must share model and dataset. Batch-norm statistics are recomputed on the training
    subset at every α (interpolated running statistics are meaningless between the end points).
    """
    from tfminima import landscape

    a, b = RunDir(run_a), RunDir(run_b)
    spec_a, model, splits, done_a = load_run(a)
    spec_b, model_b, _, done_b = load_run(b)
    if spec_a.model != spec_b.model or spec_a.dataset != spec_b.dataset:
        raise ValueError(f"{a.run_id} and {b.run_id} differ in model or dataset: nothing to interpolate")
    train = _subset(splits, samples, seed)
    val = (splits.x_val, splits.y_val) if len(splits.x_val) else None
    alphas = landscape.alpha_grid(points, alpha_min, alpha_max)
    res = landscape.interpolate(model, model.get_weights(), model_b.get_weights(), train, alphas, val_data=val)
    out = {
        "run_a": a.run_id, "run_b": b.run_id, "epochs_a": done_a, "epochs_b": done_b,
        "eta_over_s_a": spec_a.noise_scale, "eta_over_s_b": spec_b.noise_scale,
        "lr_a": spec_a.optimizer.lr, "lr_b": spec_b.optimizer.lr,
        "batch_size_a": spec_a.optimizer.batch_size, "batch_size_b": spec_b.optimizer.batch_size,
        "alphas": res.alphas.tolist(), "train_loss": res.train_loss.tolist(),
        "train_accuracy": res.train_accuracy.tolist(), "bn": res.bn, "samples": len(train[0]),
        "val_loss": None if res.val_loss is None else res.val_loss.tolist(),
        "val_accuracy": None if res.val_accuracy is None else res.val_accuracy.tolist(),
        "seconds": res.seconds,
    }
    folder = Path(out_dir) if out_dir else a.path.parent / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"interpolation--{a.run_id}--{b.run_id}"
    atomic_write_json(folder / f"{stem}.json", out)
    plot_interpolation(out, folder / f"{stem}.png")
    return out


def plot_interpolation(result: dict, path: Path) -> None:
    """Two panels (loss, accuracy) against α, train solid and validation dashed."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfminima.formats import eta_over_s

    alphas = result["alphas"]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("val", "--")):
        if result.get(f"{split}_loss") is None:
            continue
        ax_l.plot(alphas, result[f"{split}_loss"], style, label=f"{split}")
        ax_a.plot(alphas, np.asarray(result[f"{split}_accuracy"]) * 100, style, label=f"{split}")
    for ax in (ax_l, ax_a):
        ax.axvline(0, color="grey", lw=0.6)
        ax.axvline(1, color="grey", lw=0.6)
        ax.set_xlabel("α  (0: A, 1: B)")
        ax.legend()
    ax_l.set_ylabel("cross-entropy loss (log scale)")
    ax_l.set_yscale("log")
    ax_l.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax_l.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax_a.set_ylabel("accuracy (%)")
    fig.suptitle(
        f"A = {result['run_a']} (η/S={eta_over_s(result['eta_over_s_a'])})   "
        f"B = {result['run_b']} (η/S={eta_over_s(result['eta_over_s_b'])})", fontsize=9
    )
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def resolve_run(group: Path, name: str) -> Path:
    """A run of ``group`` by id, or by the label that starts its id."""
    direct = group / name
    if (direct / "config.yaml").exists():
        return direct
    matches = [p for p in group.iterdir() if p.is_dir() and p.name.startswith(f"{name}-")]
    if len(matches) == 1:
        return matches[0]
    raise FileNotFoundError(
        f"no run {name!r} in {group}" + (f" (ambiguous: {', '.join(m.name for m in matches)})" if matches else "")
    )


def interpolate_pairs(group: str | Path, spec) -> list[dict]:
    """Interpolate every ``report.pairs`` pair of a finished sweep (runs by id or label)."""
    group = Path(group)
    r = spec.report
    results = []
    for name_a, name_b in r.pairs:
        results.append(interpolate_runs(
            resolve_run(group, name_a), resolve_run(group, name_b), out_dir=group / "analysis",
            points=r.interpolation_points, alpha_min=r.alpha_min, alpha_max=r.alpha_max,
            samples=r.interpolation_samples,
        ))
    return results
