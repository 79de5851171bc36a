"""The monitor base class and what the trainer hands a monitor.

A monitor is a Keras callback that runs every ``every`` epochs (and always after the last epoch),
returns a flat dict of numbers from :meth:`Monitor.measure`, and the trainer's event logger writes
them to ``metrics.jsonl`` as one event of the monitor's ``kind`` (lists, e.g. top-k eigenvalues,
included) and to TensorBoard as ``<kind>/<name>`` scalars. Scalar values are also put into the epoch
``logs`` under the same ``<kind>/<name>`` keys, so Keras' own CSVLogger or TensorBoard callbacks see
them too.

A run that ends before its last scheduled epoch and still ``completed`` (its ``until:`` target reached, or
stopped early by a callback) is measured once more at the epoch it ended in, unless that epoch was
measured anyway: the trainer calls :meth:`Monitor.measure_at_end` after the epoch's callbacks, and the
run logger writes that measurement at the same epoch as any other. A cancelled or killed run is not
measured at its stop; its resume measures where it really ends, once.

A monitor is built from its spec (:mod:`tfminima.monitor_specs`), which holds its options and their
defaults: ``SharpnessMonitor(every=2, k=3)`` validates the options by ``SharpnessMonitorSpec``, and
``SharpnessMonitor(spec)`` takes a spec from a config. :meth:`measure` reads the options as attributes
(``self.k``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np

from tfminima.monitor_specs import MonitorSpec


@dataclasses.dataclass
class MonitorContext:
    """What the trainer hands a monitor before training starts.

    ``train_x``/``train_y`` are the training inputs and the labels SGD trains on (noisy labels
    where label noise is on); ``clean_y`` the true labels and ``noise_mask`` the boolean mask of
    the indices whose label was replaced. ``val_x``/``val_y`` the validation split. Inputs are
    already normalised. ``strategy`` is the run's tf.distribute strategy, ``loss_fn`` maps
    ``(labels, logits) -> per-example loss``. ``lr_at``/``batch_size_at`` give the scheduled
    values for an epoch, so monitors can relate what they measure to η/S; ``momentum``, ``nesterov`` and
    ``svag`` (SVAG's l: steps at η/l) the rest of the update, which sets the edge of stability
    (:mod:`tfminima.stability`). ``evaluate(x, y)``
    returns ``{"loss", "accuracy"}`` and ``predict_classes(x)`` the argmax labels, both in
    inference mode under the run's strategy. ``architecture`` names how the model was built (see
    :func:`tfminima.hessian.traced_functions`): the runs of a sweep share the monitors' traces.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    clean_y: np.ndarray
    noise_mask: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    num_classes: int
    strategy: Any
    loss_fn: Callable
    seed: int
    epochs: int
    lr_at: Callable[[int], float]
    batch_size_at: Callable[[int], int]
    momentum: float = 0.0
    nesterov: bool = False
    svag: int = 1
    run_dir: Any = None
    eval_batch_size: int = 1024
    evaluate: Callable[[np.ndarray, np.ndarray], dict] | None = None
    predict_classes: Callable[[np.ndarray], np.ndarray] | None = None
    architecture: str | None = None


class Monitor(keras.callbacks.Callback):
    """Base class: measure every ``every`` epochs and after the last one.

    ``spec_type`` is the monitor's option model; its ``name`` is the monitor's ``kind``. ``epoch_logs``
    holds the Keras logs of the epoch being measured (e.g. its mean training ``loss``) while
    :meth:`measure` runs; it is empty when :meth:`measure` is called directly.
    """

    spec_type: type[MonitorSpec] = MonitorSpec

    def __init__(self, spec: MonitorSpec | None = None, **options: Any):
        super().__init__()
        self.spec = self.spec_type.from_options(spec, **options)
        for option, value in self.spec:  # measure() reads self.<option>
            if hasattr(type(self), option):
                raise TypeError(f"{type(self).__name__}: option {option!r} would hide a class attribute")
            setattr(self, option, value)
        self.context: MonitorContext | None = None
        self.last: dict[str, float] = {}
        self.epoch_logs: dict[str, Any] = {}

    @property
    def kind(self) -> str:
        """The kind of the events this monitor logs: its YAML name."""
        return self.spec.name

    def setup(self, context: MonitorContext) -> None:
        """Called once by the trainer, after the model is built, before training."""
        self.context = context

    def should_measure(self, epoch: int) -> bool:
        last_epoch = self.context.epochs - 1 if self.context else None
        return (epoch + 1) % self.every == 0 or epoch == last_epoch

    def measure(self, epoch: int) -> dict[str, float]:
        raise NotImplementedError

    def on_epoch_end(self, epoch, logs=None):
        if not self.should_measure(epoch):
            self.last = {}
            return
        self._measure(epoch, logs)

    def measure_at_end(self, epoch: int, logs: dict | None = None) -> bool:
        """Measure epoch ``epoch``, the run's last, unless :meth:`on_epoch_end` did; True if it measured now.

        A run stopped early (target reached, a callback's ``stop_training``) ends at an epoch that
        ``every`` may skip; without this its end point would have no measurement.
        """
        if self.last:
            return False
        self._measure(epoch, logs)
        return True

    def _measure(self, epoch: int, logs: dict | None) -> None:
        self.epoch_logs = dict(logs or {})
        try:
            self.last = {k: _to_number(v) for k, v in self.measure(epoch).items()}
        finally:
            self.epoch_logs = {}
        if logs is not None:  # scalars only: Keras' TensorBoard/CSVLogger expect numbers
            logs.update(
                {f"{self.kind}/{k}": v for k, v in self.last.items() if not isinstance(v, list)}
            )


def _to_number(v: Any):
    if isinstance(v, (list, tuple, np.ndarray)):
        return [float(x) for x in np.asarray(v).ravel()]
    return float(v)
