"""Keras callbacks for SGD science: schedules and the run logger.

- :class:`LearningRateScheduler` sets the optimizer's learning rate at each epoch start; it works
  with ``keras.Model.fit`` too.
- :class:`BatchSizeScheduler` holds the batch size of each epoch; the tfminima trainer rebuilds its
  data pipeline with it (``model.fit`` cannot change the batch size, so it needs the trainer).
- :class:`RunLogger` writes every epoch's numbers to ``metrics.jsonl`` and TensorBoard.

Monitors (sharpness, noise, memorisation) are callbacks too: see ``tfminima.monitors``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras

from tfminima.monitors import Monitor


def _as_function(schedule: Callable[[int], float] | Sequence[float]) -> Callable[[int], float]:
    if callable(schedule):
        return schedule
    values = list(schedule)
    if not values:
        raise ValueError("a schedule needs at least one value")
    return lambda epoch: values[min(epoch, len(values) - 1)]


class LearningRateScheduler(keras.callbacks.Callback):
    """Set the learning rate from ``schedule(epoch)`` (a function or a per-epoch list).

    >>> cb = LearningRateScheduler([0.1, 0.1, 0.01])   # the last value repeats
    """

    def __init__(self, schedule: Callable[[int], float] | Sequence[float]):
        super().__init__()
        self.schedule = _as_function(schedule)
        self.current: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        value = float(self.schedule(epoch))
        if not value > 0:
            raise ValueError(f"learning rate must be > 0, the schedule gave {value} for epoch {epoch + 1}")
        self.model.optimizer.learning_rate.assign(value)
        self.current = value


class BatchSizeScheduler(keras.callbacks.Callback):
    """Hold the global batch size of each epoch, from ``schedule(epoch)`` or a per-epoch list.

    The tfminima trainer reads ``current`` after ``on_epoch_begin`` and builds that epoch's data
    with it; batch sizes change only at epoch boundaries.
    """

    def __init__(self, schedule: Callable[[int], int] | Sequence[int]):
        super().__init__()
        self.schedule = _as_function(schedule)
        self.current: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        value = self.schedule(epoch)
        if int(value) != value or value < 1:
            raise ValueError(f"batch size must be a positive integer, the schedule gave {value}")
        self.current = int(value)


TRAIN_KEYS = ("loss", "accuracy")
EVAL_KEYS = ("val_loss", "val_accuracy")
SCHEDULE_KEYS = ("lr", "batch_size", "eta_over_s", "eta_over_s_momentum", "eta_over_s_finite", "svag")


class RunLogger(keras.callbacks.Callback):
    """Write each epoch to metrics.jsonl (events by kind) and TensorBoard (scalars by epoch).

    The ``epoch`` of an event and the TensorBoard step count epochs completed (1 after the first
    epoch, as checkpoints ``epoch-N`` do); Keras' callbacks, this one included, receive Keras'
    0-based epoch index. Put it after the monitors in the callback list: it logs what they measured
    this epoch.
    ``writer`` is a :class:`tfminima.rundir.MetricsWriter`; ``tb_dir`` may be None.
    """

    def __init__(self, writer, tb_dir=None, monitors: Sequence[Monitor] = ()):
        super().__init__()
        self.writer = writer
        self.monitors = list(monitors)
        self.tb_dir = str(tb_dir) if tb_dir else None
        self._tb = None
        self.step = 0

    def on_train_begin(self, logs=None):
        if self.tb_dir and self._tb is None:
            import tensorflow as tf

            self._tb = tf.summary.create_file_writer(self.tb_dir)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        for key in ("steps", "batch_size", "svag"):  # Keras turns logs into floats; these are counts
            if key in logs:
                logs[key] = int(logs[key])
        train = {k: logs[k] for k in TRAIN_KEYS if k in logs}
        train.update({k: logs[k] for k in ("steps", "seconds", "examples_per_second") if k in logs})
        events = [("train", train)]
        val = {k[4:]: logs[k] for k in EVAL_KEYS if k in logs}
        if val:
            events.append(("eval", dict(val, split="val")))
        sched = {k: logs[k] for k in SCHEDULE_KEYS if k in logs}
        if sched:
            events.append(("schedule", sched))
        for monitor in self.monitors:
            if monitor.last:
                events.append((monitor.kind, dict(monitor.last)))
        done = epoch + 1  # Keras' 0-based index -> epochs completed
        for kind, values in events:
            self.writer.write(kind, done, self.step, **values)
        self._write_tb(done, events)

    def log_measurements(self, epoch: int, monitors: Sequence[Monitor]) -> None:
        """Log what ``monitors`` measured after this epoch's callbacks (:meth:`Monitor.measure_at_end`) at
        Keras' 0-based ``epoch``, as :meth:`on_epoch_end` logs a measurement."""
        events = [(m.kind, dict(m.last)) for m in monitors if m.last]
        for kind, values in events:
            self.writer.write(kind, epoch + 1, self.step, **values)
        self._write_tb(epoch + 1, events)

    def _write_tb(self, epochs_done, events):
        if self._tb is None:
            return
        import tensorflow as tf

        prefix = {"train": "train", "eval": "val", "schedule": "schedule"}
        with self._tb.as_default(step=epochs_done):
            for kind, values in events:
                group = prefix.get(kind, kind)
                for name, value in values.items():
                    if isinstance(value, bool) or isinstance(value, str) or value is None:
                        continue
                    if isinstance(value, list):
                        for i, v in enumerate(value):
                            if v is not None:
                                tf.summary.scalar(f"{group}/{name}_{i}", float(v))
                    else:
                        tf.summary.scalar(f"{group}/{name}", float(value))
        self._tb.flush()

    def log_final(self, split: str, values: dict, epochs_done: int) -> None:
        """Log an end-of-run evaluation (e.g. the test split) after ``epochs_done`` epochs, as an ``eval``
        event and scalars."""
        self.writer.write("eval", epochs_done, self.step, split=split, **values)
        self._write_tb(epochs_done, [(split, values)])

    def log_target(self, values: dict, epochs_done: int) -> None:
        """Log a train-to-target outcome (:meth:`tfminima.target.Target.event`) as a ``target`` event and
        scalars, after ``epochs_done`` epochs (1-based, as every event)."""
        self.writer.write("target", epochs_done, values.get("steps_to_target", self.step), **values)
        self._write_tb(epochs_done, [("target", dict(values, reached=int(values["reached"])))])

    def on_train_end(self, logs=None):
        if self._tb is not None:
            self._tb.flush()

    def close(self):
        if self._tb is not None:
            self._tb.close()
            self._tb = None
