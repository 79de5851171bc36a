"""For the tests whose real process is what they prove (signals, kill -9, quiet start-up, real workers):
a user's environment, what a quiet start keeps out of stderr, and what a reader needs of a run
directory the process left behind. Several test files check these on the processes they start anyway."""

from __future__ import annotations

import json
import os

import numpy as np

NOISE = ("absl::InitializeLog", "Could not find cuda drivers", "oneDNN custom operations", "cuInit",
         "rebuild TensorFlow with the appropriate compiler flags", "triggered tf.function retracing")


def user_env(**changes):
    """The environment of a user who set none of TensorFlow's log variables, nor TF_ENABLE_ONEDNN_OPTS (the
    tests' conftest sets two)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    env.update(changes)
    return env


def assert_quiet(stderr: str) -> None:
    found = [n for n in NOISE if n in stderr]
    assert not found, f"{found} in stderr:\n{stderr[-3000:]}"


def assert_readable(run):
    """What a reader needs: status.json and summary.json parse, metrics lines parse, latest checkpoint loads."""
    from tfminima import checkpoint as ckpt

    json.loads(run.status_path.read_text())
    if run.summary_path.exists():
        json.loads(run.summary_path.read_text())
    for line in run.metrics_path.read_bytes().split(b"\n")[:-1]:
        json.loads(line)
    latest = ckpt.latest(run.checkpoints_dir)
    assert latest is not None
    ckpt.read_state(latest)
    with np.load(latest / "variables.npz") as z:
        assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")
    assert not list(run.checkpoints_dir.glob(".tmp-*"))
