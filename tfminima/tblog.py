"""TensorBoard HParams: the sweep's hparams config at its root, each run's values in its tb/.

With both, ``tensorboard --logdir runs/<sweep>`` shows every run of the sweep in the HParams
dashboard with η, S, η/S and the final metrics (the scalars ``val/accuracy`` etc. that
``RunLogger`` writes).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

METRICS = [
    ("val/accuracy", "validation accuracy"),
    ("val/loss", "validation loss"),
    ("train/accuracy", "training accuracy"),
    ("train/loss", "training loss"),
    ("test/accuracy", "test accuracy"),
    ("sharpness/lambda_max", "largest Hessian eigenvalue"),
    ("sharpness/trace", "Hessian trace"),
    ("memorization/noisy_accuracy", "accuracy on random labels"),
]


def _domain(values: list):
    if all(isinstance(v, bool) for v in values):
        return hp.Discrete(sorted(set(values)))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if all(isinstance(v, int) for v in values):
            return hp.Discrete(sorted(set(values)))
        return hp.RealInterval(float(min(values)), float(max(values)))
    return hp.Discrete(sorted({str(v) for v in values}))


def write_sweep_hparams_config(group_dir: str | Path, hparams_list: list[dict]) -> None:
    """Declare the sweep's hyper-parameters and metrics at the sweep root, once.

    Shards, ``--only``/``--group`` children and resumes of one sweep all see the whole sweep's plans,
    so the first writer's declaration holds for all of them; later ones add no duplicate file.
    """
    if any(Path(group_dir).glob("events.out.tfevents.*")):
        return
    names: list[str] = []
    for h in hparams_list:
        for k in h:
            if k not in names:
                names.append(k)
    params = []
    for name in names:
        values = [h[name] for h in hparams_list if name in h]
        params.append(hp.HParam(name, _domain(values)))
    metrics = [hp.Metric(tag, display_name=label) for tag, label in METRICS]
    writer = tf.summary.create_file_writer(str(group_dir))
    with writer.as_default():
        hp.hparams_config(hparams=params, metrics=metrics)
    writer.close()


def write_run_hparams(tb_dir: str | Path, hparams: dict) -> None:
    """Record one run's hyper-parameter values in its own log directory."""
    clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()}
    writer = tf.summary.create_file_writer(str(tb_dir))
    with writer.as_default():
        hp.hparams(clean, trial_id=Path(tb_dir).parent.name)
    writer.close()
