"""A run that ends early but completed (``until:`` reached, a callback's ``stop_training``) is measured by every
monitor at the epoch it ends in, once, in metrics.jsonl, TensorBoard and summary.json; a cancelled run is not
measured at its stop, and its resume measures the real end once."""

import threading

import keras
import pytest
from run_support import new_run

from tfminima import config, runner
from tfminima.train import Trainer

EVERY = 5
BASE = (
    "epochs: 14\n"
    "dataset: {name: mnist1d, train_size: 600, val_size: 200, test_size: 64}\n"
    "model: {name: mlp, hidden: [32]}\n"
    "optimizer: {lr: 0.1, batch_size: 32}\n"
    f"monitors: [{{sharpness: {{every: {EVERY}, samples: 128, k: 1}}}}]\n"
)


def tb_scalars(directory, tag):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    acc.Reload()
    return {e.step: tf.make_ndarray(e.tensor_proto).item() for e in acc.Tensors(tag)}


@pytest.fixture(scope="module")
def target():
    """A val_loss target first met at the end of an epoch that ``every`` does not measure: (value, epochs done)."""
    history = Trainer(config.load_text(BASE, "t.yaml")).fit().history
    best = float("inf")
    for i, h in enumerate(history):
        if h["val_loss"] < best:
            best = h["val_loss"]
            if i >= EVERY and (i + 1) % EVERY:
                return best, i + 1
    pytest.fail("validation loss never reached a new minimum at an unmeasured epoch")


def sharpness_epochs(rd):
    return [e["epoch"] for e in rd.events() if e["kind"] == "sharpness"]


def test_a_run_that_reaches_its_target_is_measured_where_it_ends(target, tmp_path):
    value, done = target
    s, rd = new_run(tmp_path, BASE + f"until: {{metric: val_loss, value: {value!r}}}\n", "reached")
    assert runner.train_run(rd, s, {}).state == "completed"
    summary = rd.summary()
    assert summary["target_reached"] is True and summary["epochs_done"] == done
    measured = [e for e in rd.events() if e["kind"] == "sharpness"]
    assert [e["epoch"] for e in measured] == [*range(EVERY, done, EVERY), done]
    last = measured[-1]
    train = [e for e in rd.events() if e["kind"] == "train"]
    assert last["step"] == train[-1]["step"]  # logged at that epoch, as every measurement
    assert summary["sharpness/lambda_max"] == last["lambda_max"] > 0
    assert summary["sharpness/stability"] == last["stability"]
    tb = tb_scalars(rd.tb_dir, "sharpness/lambda_max")
    assert sorted(tb) == [*range(EVERY, done, EVERY), done]
    assert tb[done] == pytest.approx(last["lambda_max"], rel=1e-6)

    # A resume of the finished run (as after a kill once its last checkpoint is written) measures nothing again.
    rd.summary_path.unlink()
    assert runner.resume_run(rd).state == "completed"
    assert sharpness_epochs(rd) == [*range(EVERY, done, EVERY), done]
    assert rd.summary()["sharpness/lambda_max"] == last["lambda_max"]


def test_a_cancelled_run_is_measured_only_where_its_resume_ends(target, tmp_path):
    value, done = target
    stop = threading.Event()

    class StopInEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == done - 2:  # inside an unmeasured epoch before the target's
                stop.set()

    s, rd = new_run(tmp_path, BASE + f"until: {{metric: val_loss, value: {value!r}}}\n", "cancelled")
    assert runner.train_run(rd, s, {}, callbacks=[StopInEpoch()], stop_event=stop).state == "cancelled"
    assert sharpness_epochs(rd) == list(range(EVERY, done - 2, EVERY))
    assert runner.resume_run(rd).state == "completed"
    assert rd.summary()["epochs_done"] == done
    assert sharpness_epochs(rd) == [*range(EVERY, done, EVERY), done]


class StopAfter(keras.callbacks.Callback):
    """Ends training after ``epochs`` epochs the Keras way (EarlyStopping's), after the monitors have run."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True


def test_a_callbacks_early_stop_is_measured_too_but_a_measured_epoch_not_twice(tmp_path):
    for stop_at, expected in ((3, [3]), (EVERY, [EVERY])):
        s, rd = new_run(tmp_path, BASE, f"stop{stop_at}")
        outcome = runner.train_run(rd, s, {}, callbacks=[StopAfter(stop_at)])
        assert outcome.state == "completed" and rd.summary()["epochs_done"] == stop_at
        assert sharpness_epochs(rd) == expected
