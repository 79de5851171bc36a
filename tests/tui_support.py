"""Fixture run directories with known numbers, for the TUI's Pilot and snapshot tests, and the
one way those tests wait for the app.

Everything is deterministic (fixed times, closed-form curves) and written through the engine's
own ``config.to_yaml`` and ``sweep.expand`` so the files look exactly like a runner's.
"""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

from tfminima import config, rundir, schedules, sweep
from tfminima.stability import stability_ratio

T0 = 1_700_000_000.0
DEAD_PID = 4_999_999  # above Linux's pid_max: never alive


async def wait_for(pilot, predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Let the app run until ``predicate()`` holds (True), or give up after ``timeout`` s (False).

    The timeout only bounds a failing test; a passing one returns as soon as the app is there.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await pilot.pause(interval)
    return bool(predicate())

QUICKSTART = """\
name: quickstart
epochs: 12
dataset: {name: mnist1d, train_size: 4000, val_size: 1000, test_size: 1000}
model: {name: mlp, hidden: [100, 100]}
optimizer: {lr: 0.01, batch_size: 32}
monitors: [{sharpness: {every: 4}}]
sweep:
  ratio: [3.125e-4, 1.25e-3, 5.0e-3]
  grid: {optimizer.batch_size: [32, 128]}
"""

MEMO = """\
name: memo
epochs: 10
dataset: {name: mnist1d, train_size: 2000, label_noise: 0.25}
model: {name: mlp, hidden: [64]}
optimizer: {lr: 0.05, batch_size: 50}
monitors: [memorization]
sweep:
  grid: {optimizer.batch_size: [50, 200]}
"""


EDGE = """\
name: edge
epochs: 8
dataset: {name: mnist1d, train_size: 2000}
model: {name: mlp, hidden: [64]}
optimizer: {lr: 0.5, batch_size: 64, momentum: 0.9}
monitors: [{sharpness: {every: 1}}]
sweep:
  zip:
    label: [const, step]
    lr_schedule: [{kind: constant}, {kind: step, milestones: [4], factor: 0.25}]
"""


def curve(e: int, ratio: float, bs: int) -> dict[str, float]:
    """Closed-form training curves: higher η/S ends flatter and generalises better."""
    speed = 3.0 + 1e3 * ratio
    loss = 2.3 * math.exp(-e / speed) + 0.05
    acc = 0.1 + 0.85 * (1 - math.exp(-e / speed))
    gen = 0.05 + 8.0 * ratio + 0.002 * (bs == 32)
    return {"loss": round(loss, 6), "accuracy": round(acc, 6),
            "val_loss": round(loss + 0.2 - gen, 6), "val_accuracy": round(acc - 0.2 + gen, 6),
            "lambda_max": round(40.0 / (1 + 2e3 * ratio) + 0.1 * e, 6), "trace": round(900.0 / (1 + 2e3 * ratio), 6)}


def write_run(root: Path, group: str, plan: sweep.RunPlan, *, state: str, epochs_done: int, index: int,
              host: str | None = None, pid: int = DEAD_PID, error: str | None = None,
              traceback: str | None = None, sharpness_every: int = 0, memorization: bool = False,
              legacy: bool = False) -> rundir.RunDir:
    """One run directory as the runner leaves it; ``legacy`` leaves out what older trainers did not log
    (``eta_over_s_finite`` in schedule events, the sharpness monitor's ``stability``)."""
    spec = plan.spec
    run = rundir.RunDir(root / group / plan.run_id)
    run.path.mkdir(parents=True, exist_ok=True)
    run.checkpoints_dir.mkdir(exist_ok=True)
    run.config_path.write_text(config.to_yaml(spec))
    ratio, bs = plan.eta_over_s, plan.batch_size
    start = T0 + 100 * index
    lines = [{"run_id": plan.run_id, "epoch": None, "step": None, "time": start, "kind": "status",
              "state": "running", "resumed": False}]
    steps = math.ceil(spec.dataset.train_size / bs)
    settings = schedules.plan(spec)  # η and S of every epoch, as the trainer schedules them
    opt = spec.optimizer
    for e in range(epochs_done):
        c = curve(e, ratio, bs)
        lr_e, bs_e = settings[e].lr, settings[e].batch_size  # the nominal η (SVAG steps at η/l)
        base = {"run_id": plan.run_id, "epoch": e, "step": steps * (e + 1), "time": start + 3 * (e + 1)}
        lines.append(dict(base, kind="train", loss=c["loss"], accuracy=c["accuracy"], steps=steps,
                          seconds=2.5, examples_per_second=1600.0))
        lines.append(dict(base, kind="eval", loss=c["val_loss"], accuracy=c["val_accuracy"], split="val"))
        schedule = dict(base, kind="schedule", lr=lr_e, batch_size=bs_e, eta_over_s=lr_e / bs_e,
                        eta_over_s_momentum=lr_e / (bs_e * (1 - opt.momentum)))
        if not legacy:
            schedule["eta_over_s_finite"] = schedules.eta_over_s_finite(lr_e, bs_e, spec.dataset.train_size)
        if opt.svag > 1:
            schedule["svag"] = opt.svag
        lines.append(schedule)
        if sharpness_every and ((e + 1) % sharpness_every == 0 or e == spec.epochs - 1):
            sharp = dict(base, kind="sharpness", lambda_max=c["lambda_max"], eigenvalues=[c["lambda_max"]],
                         trace=c["trace"], trace_stderr=0.03 * c["trace"], hvps=12, seconds=0.4)
            if not legacy:
                sharp["stability"] = stability_ratio(c["lambda_max"], lr_e, opt.momentum, nesterov=opt.nesterov,
                                                     svag=opt.svag)
            lines.append(sharp)
        if memorization:
            noisy = round(min(0.95, 0.1 + e * 0.02 / (1 + 1e3 * ratio) * 4), 6)
            lines.append(dict(base, kind="memorization", train_accuracy=c["accuracy"], clean_accuracy=c["accuracy"],
                              noisy_accuracy=noisy, noisy_true_accuracy=0.3, noisy_fraction=0.25))
    final = curve(max(epochs_done - 1, 0), ratio, bs)
    summary = {}
    if state in rundir.FINAL_STATES and state != "crashed":
        summary = {"status": state, "epochs_done": epochs_done, "loss": final["loss"], "accuracy": final["accuracy"],
                   "val_loss": final["val_loss"], "val_accuracy": final["val_accuracy"],
                   "best_val_accuracy": final["val_accuracy"], "state": state, "hparams": plan.hparams(),
                   "run_id": plan.run_id}
        if state == "completed":
            summary["test_accuracy"] = round(final["val_accuracy"] - 0.01, 6)
            lines.append({"run_id": plan.run_id, "epoch": epochs_done - 1, "step": None, "time": start + 40,
                          "kind": "eval", "split": "test", "loss": final["val_loss"],
                          "accuracy": summary["test_accuracy"]})
            if sharpness_every:
                summary["sharpness/lambda_max"] = final["lambda_max"]
                summary["sharpness/trace"] = final["trace"]
                if not legacy:
                    last = settings[epochs_done - 1].lr
                    summary["sharpness/stability"] = stability_ratio(final["lambda_max"], last, opt.momentum,
                                                                     nesterov=opt.nesterov, svag=opt.svag)
        if error:
            summary["error"] = error
        lines.append({"run_id": plan.run_id, "epoch": epochs_done, "step": None, "time": start + 42,
                      "kind": "status", "state": state, "error": error})
    run.metrics_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    status = {"hparams": plan.hparams(), "state": "running" if state == "crashed" else state,
              "run_id": plan.run_id, "updated": start + 42, "epochs": spec.epochs, "error": error,
              "started": start, "pid": pid, "host": host or socket.gethostname()}
    if state in rundir.FINAL_STATES and state != "crashed":
        status.update(epochs_done=epochs_done, ended=start + 42)
    if traceback:
        status["traceback"] = traceback
    rundir.atomic_write_json(run.status_path, status)
    if summary:
        run.write_summary(summary)
    return run


def build_runs(root: Path) -> Path:
    """``root/quickstart`` (6 runs: completed, running elsewhere, failed, crashed) and ``root/memo``."""
    root = Path(root)
    plans = sweep.expand(config.load_text(QUICKSTART, "quickstart.yaml"))
    kinds = [
        {"state": "completed", "epochs_done": 12},
        {"state": "completed", "epochs_done": 12},
        {"state": "completed", "epochs_done": 12},
        {"state": "running", "epochs_done": 7, "host": "gpu-node-7", "pid": 4242},
        {"state": "failed", "epochs_done": 3, "error": "ValueError: loss is NaN at epoch 3",
         "traceback": 'Traceback (most recent call last):\n  File "train.py", line 1, in fit\nValueError: loss is NaN'},
        {"state": "crashed", "epochs_done": 5},
    ]
    for i, (plan, kind) in enumerate(zip(plans, kinds)):
        write_run(root, "quickstart", plan, index=i, sharpness_every=4, **kind)
    for i, plan in enumerate(sweep.expand(config.load_text(MEMO, "memo.yaml"))):
        write_run(root, "memo", plan, index=10 + i, state="completed", epochs_done=10, memorization=True)
    return root


def build_edge_runs(root: Path) -> Path:
    """``root/edge``: two completed runs with momentum 0.9 whose λ_max comes near the edge 2(1+β)/η, one at
    a constant η, one whose η drops to a quarter after 4 epochs; ``root/old``: the constant one as an older
    trainer logged it (no ``eta_over_s_finite``, no ``stability``)."""
    root = Path(root)
    plans = sweep.expand(config.load_text(EDGE, "edge.yaml"))
    for i, plan in enumerate(plans):
        write_run(root, "edge", plan, index=i, state="completed", epochs_done=8, sharpness_every=1)
    write_run(root, "old", plans[0], index=2, state="completed", epochs_done=8, sharpness_every=1, legacy=True)
    return root
