"""Train to a target (``until:``): the stopping step of every metric kind, inside an epoch too, the
counts recorded, resume (a stop inside an epoch, kill -9), batch-size schedules, mirrored replicas, and
the validation of the section."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from rich.console import Console
from run_support import new_run

from tfminima import config, progress, runner
from tfminima.monitors.subset import fixed_subset
from tfminima.rundir import RunDir
from tfminima.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
BASE = (
    "epochs: 6\n"
    "dataset: {name: mnist1d, train_size: 600, val_size: 200, test_size: 64}\n"  # 19 steps: 18 of 32, one of 24
    "model: {name: mlp, hidden: [32]}\n"
    "optimizer: {lr: 0.1, batch_size: 32}\n"
)
EVERY, SUBSET = 5, 256
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class Checks(keras.callbacks.Callback):
    """The reference: every metric where ``until`` checks it (every EVERY steps of the run and every epoch end),
    measured by the trainer's own ``evaluate`` on the training subset the section describes and the validation split."""

    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer
        s = trainer.splits
        idx = fixed_subset(len(s.x_train), SUBSET, 0)
        self.train = (s.x_train[idx], s.y_train[idx])
        self.rows = []  # (run step, epoch index, steps into the epoch, steps of the epoch, examples so far, metrics)
        self.examples = 0
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        n_steps = self.params["steps"]
        bs = self.trainer.state.callbacks.batch_size.current
        n = len(self.trainer.splits.x_train)
        self.examples += min(bs, n - batch * bs)
        if step % EVERY and batch + 1 < n_steps:
            return
        train = self.trainer.evaluate(*self.train)
        val = self.trainer.evaluate(self.trainer.splits.x_val, self.trainer.splits.y_val)
        metrics = {"train_loss": train["loss"], "train_accuracy": train["accuracy"],
                   "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        self.rows.append((step, self.epoch, batch + 1, n_steps, self.examples, metrics))


def tb_target(directory) -> dict:
    """The ``target/...`` scalars of a run's TensorBoard events: {name: {step: value}}."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag.split("/", 1)[1]: {e.step: tf.make_ndarray(e.tensor_proto).item() for e in acc.Tensors(tag)}
            for tag in acc.Tags()["tensors"] if tag.startswith("target/")}


def spec(extra="", base=BASE):
    return config.load_text(base + extra, "t.yaml")


def reference(extra="", base=BASE):
    trainer = Trainer(spec(extra, base))
    checks = Checks(trainer)
    trainer.user_callbacks.append(checks)
    trainer.fit()
    return checks.rows


def expected_stop(rows, metric, value):
    higher = metric.endswith("accuracy")
    for step, epoch, k, n_steps, examples, m in rows:
        if (m[metric] >= value) if higher else (m[metric] <= value):
            return step, epoch + k / n_steps, examples
    return None


def a_target(rows, metric):
    """A value first reached after a middle check (inside an epoch when one is), from the reference's own numbers."""
    higher = metric.endswith("accuracy")
    best = [r[5][metric] for r in rows]
    best = np.maximum.accumulate(best) if higher else np.minimum.accumulate(best)
    inside = [i for i, r in enumerate(rows) if r[2] < r[3] and i > 0 and best[i] != best[i - 1]]
    i = inside[len(inside) // 2]
    return float(best[i])


@pytest.fixture(scope="module")
def rows():
    return reference()


@pytest.mark.parametrize("metric", METRICS)
def test_until_stops_at_the_first_check_that_meets_the_target(rows, metric, tmp_path):
    value = a_target(rows, metric)
    step, epochs, examples = expected_stop(rows, metric, value)
    until = f"until: {{metric: {metric}, value: {value!r}, every_steps: {EVERY}, train_examples: {SUBSET}}}\n"
    s = spec(until)
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    out = runner.train_run(rd, s, {})
    assert out.state == "completed" and out.error == ""
    summary = rd.summary()
    assert summary["target_reached"] is True
    assert summary["steps_to_target"] == step
    assert summary["epochs_to_target"] == pytest.approx(epochs)
    assert summary["examples_to_target"] == examples
    assert summary["epochs_done"] == int(np.ceil(epochs))  # the epoch it was reached in is the last
    events = [e for e in rd.events() if e["kind"] == "target"]
    assert len(events) == 1 and events[0]["reached"] is True and events[0]["steps_to_target"] == step
    higher = metric.endswith("accuracy")
    assert (events[0]["measured"] >= value) if higher else (events[0]["measured"] <= value)
    tb = tb_target(rd.path / "tb")
    assert tb["reached"] == {summary["epochs_done"]: 1.0}
    for key in ("steps_to_target", "epochs_to_target", "examples_to_target"):
        assert tb[key] == {summary["epochs_done"]: pytest.approx(summary[key])}, key
    console = Console(record=True, width=200)
    progress.print_table([out], console=console)
    assert f"{step} ({epochs:.3g} ep, {examples:,} ex)" in console.export_text()


@pytest.mark.parametrize("metric", METRICS)
def test_epoch_end_checks_only_without_every_steps(rows, metric, tmp_path):
    ends = [r for r in rows if r[2] == r[3]]
    best = np.maximum.accumulate if metric.endswith("accuracy") else np.minimum.accumulate
    value = float(best([r[5][metric] for r in ends])[2])
    step, epochs, examples = expected_stop(ends, metric, value)
    trainer = Trainer(spec(f"until: {{metric: {metric}, value: {value!r}, train_examples: {SUBSET}}}\n"))
    result = trainer.fit()
    assert result.final["steps_to_target"] == step and result.final["epochs_to_target"] == epochs
    assert result.final["examples_to_target"] == examples
    assert float(epochs).is_integer() and result.epochs_done == epochs


def test_a_target_never_reached_ends_at_the_cap(tmp_path, tiny_yaml, cli_here):
    path = tiny_yaml("until: {metric: train_accuracy, value: 1.0, every_steps: 3}\n")
    proc = cli_here("run", path)
    assert proc.returncode == 0, proc.stderr
    (run,) = [RunDir(p.parent) for p in (tmp_path / "runs" / "tiny").glob("*/summary.json")]
    summary = run.summary()
    assert summary["state"] == "completed" and summary["epochs_done"] == 2
    assert summary["target_reached"] is False and summary["steps_to_target"] is None
    assert 0 <= summary["target_measured"] < 1.0
    (event,) = [e for e in run.events() if e["kind"] == "target"]
    assert event["reached"] is False and "steps_to_target" not in event
    tb = tb_target(run.path / "tb")
    assert tb["reached"] == {2: 0.0} and tb["measured"] == {2: pytest.approx(summary["target_measured"])}
    assert "steps_to_target" not in tb
    assert "steps→target" in proc.stdout + proc.stderr and "not reached" in proc.stdout + proc.stderr


def test_batch_size_schedule_counts_the_real_batches(tmp_path):
    extra = "batch_size_schedule: {kind: step, milestones: [1], factor: 2}\n"
    rows = reference(extra)
    value = a_target([r for r in rows if r[1] >= 1], "val_accuracy")  # reached at S = 64
    step, epochs, examples = expected_stop(rows, "val_accuracy", value)
    result = Trainer(spec(extra + f"until: {{metric: val_accuracy, value: {value!r}, every_steps: {EVERY}}}\n")).fit()
    assert result.final["steps_to_target"] == step and result.final["examples_to_target"] == examples
    assert result.final["epochs_to_target"] == pytest.approx(epochs) and epochs > 1


def test_svag_counts_both_halves_of_every_step():
    """SVAG (l = 2): 2 × 18 steps an epoch, each on two independent batches of S (remainders dropped)."""
    base = BASE.replace("epochs: 6", "epochs: 3").replace("batch_size: 32}", "batch_size: 32, svag: 2}")
    rows = reference("", base)
    assert rows[0][3] == 2 * (600 // 32)
    value = a_target(rows, "train_loss")
    step, epochs, _ = expected_stop(rows, "train_loss", value)
    until = f"until: {{metric: train_loss, value: {value!r}, every_steps: {EVERY}, train_examples: {SUBSET}}}\n"
    result = Trainer(spec(until, base)).fit()
    assert result.final["steps_to_target"] == step and result.final["epochs_to_target"] == pytest.approx(epochs)
    assert result.final["examples_to_target"] == step * 2 * 32


def test_mirrored_replicas_stop_where_their_own_checks_say():
    extra = "distribution: {strategy: mirrored, cpu_replicas: 2}\n"
    base = BASE.replace("epochs: 6", "epochs: 2")  # 2 epochs have checks enough inside epochs (3 each)
    rows = reference(extra, base)
    value = a_target(rows, "train_loss")
    step, epochs, examples = expected_stop(rows, "train_loss", value)
    until = f"until: {{metric: train_loss, value: {value!r}, every_steps: {EVERY}, train_examples: {SUBSET}}}\n"
    result = Trainer(spec(extra + until, base)).fit()
    assert result.final["steps_to_target"] == step and result.final["examples_to_target"] == examples


def test_a_stop_inside_an_epoch_resumes_to_the_same_target_step(rows, tmp_path):
    value = a_target(rows, "val_loss")
    text = BASE + f"until: {{metric: val_loss, value: {value!r}, every_steps: {EVERY}}}\n"
    s, full_dir = new_run(tmp_path, text, "full")
    runner.train_run(full_dir, s, {})
    full = full_dir.summary()
    stop = threading.Event()

    class StopAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == full["steps_to_target"] - 7:
                stop.set()

    s, rd = new_run(tmp_path, text, "stopped")
    assert runner.train_run(rd, s, {}, callbacks=[StopAt()], stop_event=stop).state == "cancelled"
    assert runner.resume_run(rd).state == "completed"
    got = rd.summary()
    for key in ("target_reached", "steps_to_target", "epochs_to_target", "examples_to_target", "target_measured"):
        assert got[key] == full[key], key
    assert len([e for e in rd.events() if e["kind"] == "target"]) == 1


KILL_CONFIG = """\
name: kt
epochs: 40
dataset: {{name: mnist1d, train_size: 4000, val_size: 500, test_size: 100}}
model: {{name: mlp, hidden: [256, 256]}}
optimizer: {{lr: 0.02, batch_size: 32}}
until: {{metric: val_loss, value: {value!r}, every_steps: 7}}
"""


def test_kill_9_and_resume_stop_at_the_same_step(tmp_path, cli_here):
    """A run killed (SIGKILL) after a few epochs and resumed stops at the step an uninterrupted run stops at.
    The killed run is a process of the real entry point; the uninterrupted run and the resume (the entry
    point's ``run --resume``, cli_here) run in this process: a TensorFlow start less. (Resumes by
    processes after kills: test_faults' two-SIGKILL test.)"""
    probe = config.load_text(KILL_CONFIG.format(value=0.0).replace("epochs: 40", "epochs: 6"))
    value = Trainer(probe.model_copy(update={"until": None})).fit().history[5]["val_loss"]  # about epoch 6
    path = tmp_path / "kt.yaml"
    path.write_text(KILL_CONFIG.format(value=value))
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(group, *extra):
        return subprocess.Popen([sys.executable, "-m", "tfminima.cli", "run", str(path), "--out",
                                 str(tmp_path / group), "--quiet", *extra], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    s, full_dir = new_run(tmp_path, KILL_CONFIG.format(value=value), "full")
    assert runner.train_run(full_dir, s, {}).state == "completed"
    full = full_dir.summary()
    assert full["target_reached"] and full["epochs_to_target"] > 3

    victim = run("killed")
    metrics = None
    while victim.poll() is None:  # kill once two epochs are logged (their checkpoints written)
        found = list((tmp_path / "killed" / "kt").glob("*/metrics.jsonl"))
        if found:
            metrics = found[0]
            epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()
                      if '"kind": "train"' in line]
            if len(epochs) >= 2:
                break
        time.sleep(0.02)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (metrics.parent / "summary.json").exists()
    resumed = cli_here("run", "--resume", metrics.parent, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    got = json.loads((metrics.parent / "summary.json").read_text())
    for key in ("target_reached", "steps_to_target", "epochs_to_target", "examples_to_target", "target_measured"):
        assert got[key] == full[key], key
    assert len([line for line in metrics.read_text().splitlines() if '"kind": "target"' in line]) == 1


# ------------------------------------------------------------------------------ the section's validation
@pytest.mark.parametrize("text, key, words", [
    ("until: {metric: val_acuracy, value: 0.5}", "until.metric", "did you mean 'val_accuracy'"),
    ("until: {metric: train_accuracy, value: 1.5}", "until.value", "outside [0, 1]"),
    ("until: {metric: val_accuracy, value: -0.1}", "until.value", "outside [0, 1]"),
    ("until: {metric: train_loss, value: -1}", "until.value", "negative"),
    ("until: {metric: train_loss, value: 0.5, every_steps: -3}", "until.every_steps", "greater than 0"),
    ("until: {metric: train_loss, value: 0.5, every_steps: 0}", "until.every_steps", "greater than 0"),
    ("until: {metric: val_loss, value: 0.5}\ndataset: {val_size: 0}", "until.metric", "val_size is 0"),
    ("until: {metric: val_loss, value: 0.5, evry_steps: 3}", "until.evry_steps", "did you mean 'every_steps'"),
    ("until: {value: 0.5}", "until.metric", "required"),
])
def test_until_is_validated_with_clear_errors(text, key, words):
    with pytest.raises(config.ConfigError) as err:
        config.load_text(text, "e.yaml")
    (problem,) = err.value.problems
    assert problem.key == key and words in problem.message and problem.line == 1


def test_set_overrides_the_target_and_the_cli_reports_bad_values(tiny_yaml):
    path = tiny_yaml("until: {metric: val_accuracy, value: 0.5}\n")
    assert config.load(path, overrides=["until.value=0.75"]).until.value == 0.75
    proc = subprocess.run([sys.executable, "-m", "tfminima.cli", "validate", path, "--set", "until.value=2"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2 and "until.value" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
