"""One epoch convention: epochs completed, 1-based, in every file written and every place a run is read back;
logs written the old way (epoch-end events from 0) still read the same."""

import json
from pathlib import Path

import pytest

from tfminima import config, runfiles, runner, sweep
from tfminima import checkpoint as ckpt
from tfminima.rundir import RunDir

EPOCHS = 3
MONITORED = "monitors:\n  - memorization: {every: 2}\n"


def _tb_steps(tb_dir: Path) -> dict[str, set[int]]:
    import tensorflow as tf

    steps: dict[str, set[int]] = {}
    for path in tb_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, set()).add(int(event.step))
    return steps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run of 3 epochs with label noise and a memorisation monitor every 2 epochs (and after the last)."""
    root = tmp_path_factory.mktemp("epochs")
    text = (
        "name: ep\nepochs: 3\nseed: 0\n"
        "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64, label_noise: 0.2}\n"
        "model: {name: mlp, hidden: [16]}\noptimizer: {lr: 0.05, batch_size: 32}\n" + MONITORED
    )
    spec = config.load_text(text)
    (plan,) = sweep.expand(spec)
    (run_dir,) = runner.prepare_runs(spec, root / "ep", [plan])
    outcome = runner.train_run(run_dir, plan.spec, plan.hparams())
    assert outcome.state == "completed", outcome.error
    return run_dir


def _old_way(events: list[dict]) -> list[dict]:
    """The same log as the trainer wrote it before issue 12: epoch-end events from 0, no marker."""
    out = []
    for e in events:
        e = {k: v for k, v in e.items() if k != runfiles.EPOCH_BASE}
        if e.get("epoch") is not None and e["kind"] != "status":
            e["epoch"] -= 1
        out.append(e)
    return out


def test_every_event_and_tensorboard_step_counts_epochs_completed(trained):
    events = trained.events()
    assert events[0]["kind"] == "status" and events[0][runfiles.EPOCH_BASE] == 1
    by = lambda kind, **match: [e["epoch"] for e in events  # noqa: E731
                                if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]
    assert by("train") == by("schedule") == by("eval", split="val") == [1, 2, 3]
    assert by("memorization") == [2, 3]  # every 2 epochs: after the 2nd, and after the last
    assert by("eval", split="test") == [3]
    assert [e["epoch"] for e in events if e["kind"] == "status"][-1] == 3
    assert ckpt.latest(trained.checkpoints_dir).name == f"epoch-{EPOCHS}"
    steps = _tb_steps(trained.tb_dir)
    assert steps["train/loss"] == {1, 2, 3} and steps["memorization/noisy_accuracy"] == {2, 3}
    assert steps["test/accuracy"] == {3}


def _write_log(run_dir: RunDir, events: list[dict]) -> None:
    run_dir.metrics_path.write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.mark.parametrize("old", [False, True], ids=["new log", "old log"])
def test_the_report_and_the_tui_read_epochs_completed(trained, tmp_path, old):
    import shutil

    from tfminima.report.loading import load_run
    from tui.store import RunStore

    copy = RunDir(shutil.copytree(trained.path, tmp_path / "ep" / trained.run_id))
    if old:
        _write_log(copy, _old_way(trained.events()))
    run = load_run(copy)
    assert list(run.series("train", "loss").epochs) == [1, 2, 3]
    assert list(run.series("memorization", "noisy_accuracy").epochs) == [2, 3]
    assert list(run.series("eval", "accuracy", "test").epochs) == [3]
    assert list(run.series("schedule", "lr").epochs) == [1, 2, 3]
    store = RunStore(tmp_path)
    store.poll()
    record = store.get(f"ep/{trained.run_id}")
    assert list(record.series["train/loss"].x) == [1, 2, 3]
    assert list(record.series["memorization/noisy_accuracy"].x) == [2, 3]
    assert list(record.series["test/accuracy"].x) == [3]
    assert record.epochs_done == 3 and "train/epoch_base" not in record.series


def test_the_tui_reads_an_old_log_that_grows(tmp_path):
    """An incremental reader decides at the first event with an epoch (the marker comes before it)."""
    from tui.store import RunStore

    from tfminima import rundir

    run_dir = rundir.create(tmp_path, "g", "r", "name: g\nepochs: 2\n")
    status = {"run_id": "r", "epoch": None, "step": None, "time": 1.0, "kind": "status", "state": "running"}
    _write_log(run_dir, [status])
    store = RunStore(tmp_path)
    store.poll()
    with open(run_dir.metrics_path, "a") as f:
        for e in range(2):
            f.write(json.dumps({"run_id": "r", "epoch": e, "step": e + 1, "time": 2.0 + e, "kind": "train",
                                "loss": 1.0 / (e + 1)}) + "\n")
    store.poll()
    assert list(store.get("g/r").series["train/loss"].x) == [1, 2]


def test_in_epochs_completed_converts_old_logs_only():
    new = [{"kind": "status", "epoch": None, "epoch_base": 1}, {"kind": "train", "epoch": 1},
           {"kind": "status", "epoch": 1}]
    assert runfiles.in_epochs_completed(new) == new
    old = [{"kind": "status", "epoch": None}, {"kind": "train", "epoch": 0}, {"kind": "eval", "epoch": 0},
           {"kind": "status", "epoch": 1}]  # the old final status event already counted epochs done
    assert [e["epoch"] for e in runfiles.in_epochs_completed(old)] == [None, 1, 1, 1]
    assert runfiles.marked(runfiles.in_epochs_completed(old))[0]["epoch_base"] == 1


def test_a_resume_rewrites_an_old_log_in_epochs_completed(tmp_path):
    """A run cancelled after epoch 2 of 3, its log as the old trainer wrote it, resumed by this one."""
    import threading

    import keras

    text = ("name: res\nepochs: 3\nseed: 0\ndataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
            "model: {name: mlp, hidden: [16]}\noptimizer: {lr: 0.05, batch_size: 32}\n")
    spec = config.load_text(text)
    (plan,) = sweep.expand(spec)
    (run_dir,) = runner.prepare_runs(spec, tmp_path / "res", [plan])
    stop = threading.Event()

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # Keras' 0-based index: 1 closes the second epoch
            if epoch == 1:
                stop.set()

    outcome = runner.train_run(run_dir, plan.spec, plan.hparams(), callbacks=[StopAfterTwo()], stop_event=stop)
    assert outcome.state == "cancelled" and ckpt.latest(run_dir.checkpoints_dir).name == "epoch-2"
    _write_log(run_dir, _old_way(run_dir.events()))
    assert runner.resume_run(run_dir).state == "completed"
    events = run_dir.events()
    assert events[0][runfiles.EPOCH_BASE] == 1
    assert [e["epoch"] for e in events if e["kind"] == "train"] == [1, 2, 3]
    assert [e["epoch"] for e in events if e.get("split") == "val"] == [1, 2, 3]
