"""The trainer: logs, TensorBoard, distribution, batch-size schedules, callbacks, resume, divergence."""

import json
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from run_support import new_run

from tfminima import checkpoint as ckpt
from tfminima import config, runner
from tfminima.callbacks import BatchSizeScheduler
from tfminima.rundir import read_events
from tfminima.train import Trainer

TINY = (
    "epochs: 2\n"
    "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
    "model: {name: mlp, hidden: [16]}\n"
    "optimizer: {lr: 0.05, batch_size: 32}\n"
)


def spec(extra="", base=TINY):
    return config.load_text(base + extra, "t.yaml")


def weights(model):
    return [np.array(v.numpy()) for v in model.variables]


def tb_scalars(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def test_run_writes_metrics_status_summary_and_tensorboard(tmp_path):
    s = spec("name: logs\nmonitors: [memorization]\nsweep: {grid: {optimizer.batch_size: [32, 64]}}\n")
    outcomes = runner.run_sweep(s, tmp_path)
    assert [o.state for o in outcomes] == ["completed", "completed"]
    run = outcomes[0].run_dir
    assert run.path == tmp_path / "logs" / "lr0.05-bs32-s0"
    events = list(read_events(run.metrics_path))
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "status" and events[-1]["state"] == "completed"
    train = [e for e in events if e["kind"] == "train"]
    assert [e["epoch"] for e in train] == [1, 2] and [e["step"] for e in train] == [8, 16]  # epochs completed
    assert all({"run_id", "epoch", "step", "time", "kind"} <= set(e) for e in events)
    sched = [e for e in events if e["kind"] == "schedule"]
    assert sched[0]["lr"] == 0.05 and sched[0]["batch_size"] == 32 and sched[0]["eta_over_s"] == 0.05 / 32
    assert any(e["kind"] == "eval" and e["split"] == "test" for e in events)
    assert any(e["kind"] == "memorization" and "train_accuracy" in e for e in events)
    status = json.loads(run.status_path.read_text())
    assert status["state"] == "completed" and status["hparams"]["eta_over_s"] == pytest.approx(0.05 / 32)
    summary = run.summary()
    assert summary["epochs_done"] == 2 and 0 <= summary["val_accuracy"] <= 1 and "test_accuracy" in summary
    assert config.load(run.config_path).optimizer.batch_size == 32  # resolved config is loadable

    acc = tb_scalars(run.tb_dir)
    tags = set(acc.Tags()["tensors"])
    assert {"train/loss", "train/accuracy", "val/accuracy", "schedule/eta_over_s", "test/accuracy"} <= tags
    losses = [tf.make_ndarray(e.tensor_proto).item() for e in acc.Tensors("train/loss")]
    assert losses == pytest.approx([e["loss"] for e in train], rel=1e-6)
    assert "hparams" in acc.PluginTagToContent("hparams") or acc.PluginTagToContent("hparams")
    root = tb_scalars(tmp_path / "logs")
    assert root.PluginTagToContent("hparams")  # the sweep's hparams_config


def test_mirrored_two_replicas_equals_one_device():
    base = TINY + "optimizer: {lr: 0.05, batch_size: 32, momentum: 0.9}\n"
    base = base.replace("optimizer: {lr: 0.05, batch_size: 32}\n", "")
    one = Trainer(spec("distribution: {strategy: one_device}\n", base))
    assert one.replicas == 1
    w1 = weights(one.fit().model)
    two = Trainer(spec("distribution: {strategy: mirrored, cpu_replicas: 2}\n", base))
    assert two.replicas == 2
    w2 = weights(two.fit().model)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_batch_size_schedule_runs_exact_steps_and_traces_once():
    s = spec("epochs: 4\nbatch_size_schedule: {kind: table, values: [1, 2, 0.5, 1.5]}\n")
    trainer = Trainer(s)
    result = trainer.fit()
    assert [h["batch_size"] for h in result.history] == [32, 64, 16, 48]
    assert [h["steps"] for h in result.history] == [8, 4, 16, 6]  # ceil(256 / S)
    assert int(trainer.optimizer.iterations.numpy()) == 34
    assert trainer.steps.train_traces == 1
    # the lr stayed put: a batch-size schedule does not touch it
    assert {h["lr"] for h in result.history} == {0.05}


def test_user_batch_size_scheduler_and_lr_schedule_callbacks():
    bs = BatchSizeScheduler([64, 128])
    trainer = Trainer(spec("lr_schedule: {kind: step, milestones: [1], factor: 0.5}\n"), callbacks=[bs])
    history = trainer.fit().history
    assert [h["batch_size"] for h in history] == [64, 128]
    assert [h["lr"] for h in history] == [0.05, 0.025]
    assert history[1]["eta_over_s"] == pytest.approx(0.025 / 128)


def test_keras_callbacks_work_in_the_loop(tmp_path):
    csv = tmp_path / "log.csv"
    tb = tmp_path / "keras_tb"
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)
    trainer = Trainer(
        spec("epochs: 5\n"),
        callbacks=[keras.callbacks.CSVLogger(str(csv)), keras.callbacks.TensorBoard(str(tb)), stop],
    )
    result = trainer.fit()
    assert result.status == "completed" and result.epochs_done == 2  # stopped early
    rows = csv.read_text().strip().splitlines()
    assert rows[0].startswith("epoch") and "val_accuracy" in rows[0] and len(rows) == 3
    acc = tb_scalars(tb / "train")
    assert "epoch_loss" in acc.Tags()["tensors"]
    assert "epoch_accuracy" in tb_scalars(tb / "validation").Tags()["tensors"]


class _Crash(keras.callbacks.Callback):
    """Simulates a process dying after a given epoch (after its checkpoint was written)."""

    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.after_epoch + 1:
            raise SystemExit("killed")


def test_resume_after_a_crash_is_bitwise_equal(tmp_path):
    text = TINY.replace("epochs: 2", "epochs: 4") + "model: {name: mlp, hidden: [16], dropout: 0.2}\n"
    text = text.replace("model: {name: mlp, hidden: [16]}\n", "")
    s, full_dir = new_run(tmp_path, text, "full")
    full = runner.train_run(full_dir, s, {})
    assert full.state == "completed"
    s, rd = new_run(tmp_path, text, "killed")
    with pytest.raises(SystemExit):
        runner.train_run(rd, s, {}, callbacks=[_Crash(after_epoch=1)])
    assert ckpt.latest(rd.checkpoints_dir).name == "epoch-2"
    assert rd.status()["epochs_done"] == 2  # progress is in status.json while a run is going
    resumed = runner.resume_run(rd)
    assert resumed.state == "completed"
    a = np.load(ckpt.latest(full_dir.checkpoints_dir) / "variables.npz")
    b = np.load(ckpt.latest(rd.checkpoints_dir) / "variables.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    epochs = [e["epoch"] for e in rd.events() if e["kind"] == "train"]
    assert epochs == [1, 2, 3, 4]  # epochs completed; the log matches the checkpoint: no epoch twice


def test_stop_inside_an_epoch_checkpoints_and_resumes_bitwise(tmp_path):
    text = TINY.replace("epochs: 2", "epochs: 3")
    s, full_dir = new_run(tmp_path, text, "full")
    runner.train_run(full_dir, s, {})

    stop = threading.Event()

    class StopAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 13:  # inside epoch 1 (8 steps an epoch)
                stop.set()

    s, rd = new_run(tmp_path, text, "stopped")
    out = runner.train_run(rd, s, {}, callbacks=[StopAt()], stop_event=stop)
    assert out.state == "cancelled"
    assert ckpt.latest(rd.checkpoints_dir).name == "epoch-1-step-5"
    assert rd.status()["state"] == "cancelled"
    assert runner.resume_run(rd).state == "completed"
    a = np.load(ckpt.latest(full_dir.checkpoints_dir) / "variables.npz")
    b = np.load(ckpt.latest(rd.checkpoints_dir) / "variables.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    full_train = [e["loss"] for e in full_dir.events() if e["kind"] == "train"]
    resumed_train = [e["loss"] for e in rd.events() if e["kind"] == "train"]
    assert resumed_train == pytest.approx(full_train, rel=1e-6)


def test_divergence_is_recorded_and_the_sweep_goes_on(tmp_path):
    s = spec("name: div\nepochs: 3\nsweep: {grid: {optimizer.lr: [1000.0, 0.05]}}\n")
    outcomes = runner.run_sweep(s, tmp_path)
    assert [o.state for o in outcomes] == ["diverged", "completed"]
    status = outcomes[0].run_dir.status()
    assert status["state"] == "diverged" and ("not finite" in status["error"] or "exceeds" in status["error"])
    assert outcomes[1].run_dir.summary()["epochs_done"] == 3


def test_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A run that fails when it starts (CIFAR-10 not prepared in its TFDS data_dir: validation cannot know)."""
    s = spec("name: fail\nmodel: {name: resnet, depth: 8}\nsweep: {grid: {dataset.name: [cifar10, digits]}}\n"
             f"dataset: {{name: digits, train_size: 256, val_size: 64, test_size: 64, data_dir: '{tmp_path / 'tfds'}'}}\n")
    outcomes = runner.run_sweep(s, tmp_path)
    assert [o.state for o in outcomes] == ["failed", "completed"]
    assert "not prepared" in outcomes[0].run_dir.status()["error"]


@pytest.mark.parametrize("extra", ["distribution: {jit_compile: 'on'}\n",
                                   "distribution: {mixed_precision: mixed_float16}\n",
                                   "distribution: {mixed_precision: mixed_bfloat16}\n"])
def test_xla_and_mixed_precision_track_the_float32_run(extra):
    base = TINY.replace("optimizer: {lr: 0.05, batch_size: 32}", "optimizer: {lr: 0.05, batch_size: 32, momentum: 0.9}")
    reference = Trainer(spec(base=base)).fit().history
    other_trainer = Trainer(spec(extra, base=base))
    other = other_trainer.fit().history
    tol = 1e-5 if "jit" in extra else 2e-2  # half precision rounds activations
    assert [h["loss"] for h in other] == pytest.approx([h["loss"] for h in reference], rel=tol)
    if "mixed_float16" in extra:
        assert isinstance(other_trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    if "mixed" in extra:
        assert other_trainer.model.layers[1].dtype_policy.compute_dtype in ("float16", "bfloat16")
        assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    else:
        assert other_trainer.steps.jit_compile


def test_svag_runs_l_times_the_steps_at_eta_over_l_with_the_nominal_ratio():
    l1 = Trainer(spec("epochs: 1\n"))
    l4 = Trainer(spec("epochs: 1\n", base=TINY.replace("batch_size: 32}", "batch_size: 32, svag: 4}")))
    h1, h4 = l1.fit().history, l4.fit().history
    assert h4[0]["steps"] == 4 * (256 // 32) and h1[0]["steps"] == 8
    assert float(l4.optimizer.learning_rate.numpy()) == pytest.approx(0.05 / 4)
    assert h4[0]["lr"] == pytest.approx(0.05) and h4[0]["eta_over_s"] == pytest.approx(0.05 / 32)
    assert h4[0]["svag"] == 4


def test_svag_gradient_is_the_weighted_combination_of_two_batches():
    # One SVAG step by the trainer equals the hand-made step θ - (η/l)(c1 g1 + c2 g2).
    base = TINY.replace("train_size: 256", "train_size: 32").replace("batch_size: 32}", "batch_size: 32, svag: 2}")
    s = spec("epochs: 1\n", base=base)
    trainer = Trainer(s)
    from tfminima.data.pipeline import svag_dataset

    (x, y, half), = list(svag_dataset(trainer.splits.x_train, trainer.splits.y_train, 32, epoch=0, seed=0, l=2).take(1))
    before = [v.numpy() for v in trainer.model.trainable_variables]
    grads = []
    for part in (0, 1):
        mask = half.numpy() == part
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y.numpy()[mask], trainer.model(x.numpy()[mask], training=True), from_logits=True))
        grads.append([g.numpy() for g in tape.gradient(loss, trainer.model.trainable_variables)])
    c1, c2 = (1 + np.sqrt(3)) / 2, (1 - np.sqrt(3)) / 2
    expect = [w - 0.05 / 2 * (c1 * g1 + c2 * g2) for w, g1, g2 in zip(before, *grads)]
    trainer.fit()  # one pass: 32 // 32 = 1 step per pass, l = 2 passes; compare after the first
    assert int(trainer.optimizer.iterations.numpy()) == 2
    trainer2 = Trainer(s)
    it = iter(trainer2.strategy.experimental_distribute_dataset(
        svag_dataset(trainer2.splits.x_train, trainer2.splits.y_train, 32, epoch=0, seed=0, l=2)))
    trainer2.optimizer.learning_rate.assign(0.05 / 2)
    trainer2.steps.train(it)
    for got, want in zip(trainer2.model.trainable_variables, expect):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_sweep_hparams_config_is_declared_once_per_group(tmp_path):
    """Shards and --group children of one sweep each call this; the group keeps one declaration."""
    from tfminima import tblog

    plans = [{"lr": 0.1, "batch_size": 32, "eta_over_s": 0.1 / 32}, {"lr": 0.2, "batch_size": 64, "eta_over_s": 0.2 / 64}]
    tblog.write_sweep_hparams_config(tmp_path, plans)
    tblog.write_sweep_hparams_config(tmp_path, plans)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    assert tb_scalars(tmp_path).PluginTagToContent("hparams")


def test_eval_pipeline_is_reused_for_the_splits_only():
    """The validation split's pipeline is built once and gives the same numbers again; an array from
    elsewhere is read afresh each call, so changing it in place is seen."""
    t = Trainer(spec("epochs: 1\n"))
    t.fit()
    s = t.splits
    first = t.evaluate(s.x_val, s.y_val)
    assert len(t.evaluator.pipelines) == 1 and t.evaluate(s.x_val, s.y_val) == first
    x = s.x_val.copy()
    assert t.evaluate(x, s.y_val) == first
    x[:] = 0.0
    assert t.evaluate(x, s.y_val) != first and len(t.evaluator.pipelines) == 1
    np.testing.assert_array_equal(t.predict_classes(s.x_train), t.predict_classes(s.x_train.copy()))


@pytest.mark.parametrize("optimizer, nesterov, svag", [
    ("{lr: 0.05, batch_size: 32, momentum: 0.9, nesterov: true}", True, 1),
    ("{lr: 0.05, batch_size: 32, svag: 2}", False, 2),
])
def test_the_trainer_gives_monitors_the_update_rule_the_edge_of_stability_depends_on(optimizer, nesterov, svag):
    from tfminima.stability import stability_ratio

    text = TINY.replace("optimizer: {lr: 0.05, batch_size: 32}", f"optimizer: {optimizer}")
    result = Trainer(spec("epochs: 1\nmonitors: [{sharpness: {every: 1, samples: 64, trace: false}}]\n",
                          base=text)).fit()
    last = result.history[-1]
    momentum = 0.9 if nesterov else 0.0
    expected = stability_ratio(last["sharpness/lambda_max"], 0.05, momentum, nesterov=nesterov, svag=svag)
    assert last["sharpness/stability"] == pytest.approx(expected, rel=1e-12)
    plain = stability_ratio(last["sharpness/lambda_max"], 0.05, momentum)
    assert last["sharpness/stability"] != pytest.approx(plain, rel=1e-3)  # the rule matters here


def test_a_trainer_refuses_a_sweep_and_points_to_the_runner():
    """It used to train the sweep's base point silently."""
    from tfminima import sweep
    from tfminima.train import Trainer

    s = spec("sweep: {grid: {optimizer.batch_size: [32, 64]}}\n")
    with pytest.raises(ValueError, match=r"sweep of 2 runs.*tfminima run.*runner\.run_sweep"):
        Trainer(s)
    assert Trainer(sweep.expand(s)[0].spec).spec.optimizer.batch_size == 32  # one of its runs: fine
