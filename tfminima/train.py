"""The trainer: SGD on a Keras model under a tf.distribute strategy, epoch by epoch.

Why not ``model.fit``: the batch size must change between epochs (batch-size schedules), which
``fit`` cannot do without losing steps. So each epoch gets a freshly built distributed dataset
of the scheduled batch size, and one traced train step serves every batch size (the batch
dimension is None). Everything else follows Keras: the standard ``keras.callbacks.Callback``
protocol (Keras' TensorBoard, CSVLogger and EarlyStopping work), ``model.optimizer`` and
``model.stop_training``.

This module is the loop: the callback list, the stop protocol, the divergence guard. The replica
steps (SVAG, XLA) are in :mod:`tfminima.steps`, evaluation in :mod:`tfminima.evaluation`, the
per-fit state in :mod:`tfminima.fit_state`, and the run directory (checkpoints, status, metrics)
in :mod:`tfminima.recorder`, whose recorder the runner passes in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfminima import data as data_lib
from tfminima import schedules, seeding
from tfminima.callbacks import BatchSizeScheduler, LearningRateScheduler
from tfminima.data.pipeline import host_tensors, steps_per_epoch, svag_dataset, train_dataset
from tfminima.distribute import describe, is_chief, is_multi_worker, make_strategy
from tfminima.evaluation import Evaluator
from tfminima.fit_state import FitCallbacks, FitState
from tfminima.models import build_model
from tfminima.monitors import Monitor, MonitorContext, build_all
from tfminima.optim import make_optimizer
from tfminima.recorder import RunRecorder
from tfminima.steps import ReplicaSteps, per_example_loss
from tfminima.target import Target

DIVERGENCE_CHECK_EVERY = 50  # steps between (cheap) mid-epoch divergence checks

__all__ = ["Diverged", "TrainResult", "Trainer", "fit", "leaves_a_replica_empty", "per_example_loss",
           "setup_determinism"]


class Diverged(Exception):
    """Raised inside the loop when the loss is non-finite or exploded."""


@dataclasses.dataclass
class TrainResult:
    """What a finished (or stopped) training returns."""

    status: str  # completed | diverged | cancelled
    epochs_done: int
    history: list[dict]
    final: dict
    model: keras.Model
    reason: str = ""


def setup_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy, Keras and TensorFlow (keeping TensorFlow's instantiated functions:
    :mod:`tfminima.seeding`); with ``deterministic`` also force deterministic ops."""
    seeding.seed_run(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class Trainer:
    """Train one experiment spec.

    >>> from tfminima import config
    >>> spec = config.load_text("epochs: 2\\ndataset: {train_size: 512, val_size: 128, test_size: 128}")
    >>> result = Trainer(spec).fit()          # doctest: +SKIP
    >>> result.final["val_accuracy"]          # doctest: +SKIP

    ``callbacks`` are extra Keras callbacks. ``recorder`` (a :class:`tfminima.recorder.RunRecorder`,
    made by the runner) keeps the run in its run directory: metrics.jsonl, TensorBoard and
    checkpoints (written by the chief only), and a resume from its latest checkpoint. ``splits``
    lets a caller pass data already loaded. ``stop_event`` (a threading.Event-like): set() to stop
    at the next step. ``state`` is the current (or last) fit's :class:`tfminima.fit_state.FitState`.
    """

    def __init__(
        self,
        spec,
        *,
        recorder: RunRecorder | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        strategy: tf.distribute.Strategy | None = None,
        splits: data_lib.Splits | None = None,
        stop_event=None,
    ):
        if not spec.sweep.is_empty:  # it would silently train the base point only
            from tfminima.sweep import expand

            raise ValueError(
                f"this spec is a sweep of {len(expand(spec))} runs; a Trainer trains one run. Train the sweep "
                "with `tfminima run CONFIG` or tfminima.runner.run_sweep(spec, out_dir), or one of its runs "
                "with Trainer(plan.spec) for a plan of tfminima.sweep.expand(spec)"
            )
        self.spec = spec
        self.recorder = recorder
        self.user_callbacks = list(callbacks)
        self.stop_event = stop_event
        self.splits = splits if splits is not None else data_lib.load(spec.dataset)
        setup_determinism(spec.seed, spec.deterministic)
        self.strategy = strategy or make_strategy(spec.distribution)
        self.replicas = self.strategy.num_replicas_in_sync
        if spec.optimizer.batch_size % self.replicas:
            raise ValueError(
                f"optimizer.batch_size {spec.optimizer.batch_size} is not divisible by the "
                f"{self.replicas} replicas of this strategy"
            )
        self.plan = schedules.plan(spec, self.replicas)
        self.chief = is_chief(self.strategy)
        self.multi_worker = is_multi_worker(self.strategy)
        self.writes_run_dir = recorder is not None and self.chief  # only the chief writes the run directory
        self.model, self.optimizer = build_model_and_optimizer(spec, self.splits, self.strategy)
        self.train_tensors = host_tensors(self.splits.x_train, self.splits.y_train)  # each epoch gathers from them
        self.steps = ReplicaSteps(self.model, self.optimizer, self.strategy, svag=spec.optimizer.svag,
                                  jit_compile=spec.distribution.jit_compile)
        self.evaluator = Evaluator(self.steps, self.splits, spec.eval_batch_size, self.architecture())
        self.batch_norm = any(isinstance(layer, keras.layers.BatchNormalization)
                              for layer in self.model._flatten_layers(include_self=False))  # noqa: SLF001
        self.state: FitState | None = None

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean loss and accuracy on ``(x, y)`` in inference mode."""
        return self.evaluator.evaluate(x, y)

    def predict_classes(self, x: np.ndarray) -> np.ndarray:
        """Argmax predictions in inference mode (order preserved)."""
        return self.evaluator.predict_classes(x)

    # ------------------------------------------------------------------------------ callbacks
    def _monitors(self) -> list[Monitor]:
        return build_all(self.spec)

    def _callbacks(self, monitors: list[Monitor]) -> FitCallbacks:
        """The schedules (the user's own if given), the monitors, the user's callbacks, the run logger."""
        plan, s = self.plan, self.splits
        svag = self.spec.optimizer.svag  # SVAG steps at η/l; logs keep the nominal η
        lr_callback = LearningRateScheduler(lambda e: plan[e].lr / svag)
        bs_callback = BatchSizeScheduler(lambda e: plan[e].batch_size)
        user_bs = [c for c in self.user_callbacks if isinstance(c, BatchSizeScheduler)]
        user_lr = [c for c in self.user_callbacks if isinstance(c, LearningRateScheduler)]
        if user_bs:
            bs_callback = user_bs[-1]
        if user_lr:
            lr_callback = user_lr[-1]
        others = [c for c in self.user_callbacks if c is not bs_callback and c is not lr_callback]
        cbs = [lr_callback, bs_callback] + monitors + others
        logger = self.recorder.logger(monitors) if self.writes_run_dir else None
        if logger is not None:
            cbs.append(logger)
        callback_list = keras.callbacks.CallbackList(
            cbs, model=self.model, epochs=self.spec.epochs, verbose=0,
            steps=steps_per_epoch(len(s.x_train), plan[0].batch_size, self.spec.dataset.drop_remainder),
        )
        batch_hooks = any(
            not _is_default(c, "on_train_batch_begin") or not _is_default(c, "on_train_batch_end")
            for c in callback_list.callbacks
        )
        return FitCallbacks(callback_list, lr_callback, bs_callback, monitors, logger, batch_hooks)

    def _context(self) -> MonitorContext:
        s = self.splits
        return MonitorContext(
            train_x=s.x_train, train_y=s.y_train, clean_y=s.y_train_clean, noise_mask=s.noise_mask,
            val_x=s.x_val, val_y=s.y_val, num_classes=s.num_classes, strategy=self.strategy,
            loss_fn=per_example_loss, seed=self.spec.seed, epochs=self.spec.epochs,
            lr_at=lambda e: self.plan[min(e, len(self.plan) - 1)].lr,
            batch_size_at=lambda e: self.plan[min(e, len(self.plan) - 1)].batch_size,
            momentum=self.spec.optimizer.momentum, nesterov=self.spec.optimizer.nesterov, svag=self.spec.optimizer.svag,
            run_dir=self.recorder.run_dir if self.recorder is not None else None,
            eval_batch_size=self.spec.eval_batch_size, evaluate=self.evaluate,
            predict_classes=self.predict_classes, architecture=self.architecture(),
        )

    def architecture(self) -> str:
        """What the model is built from (not its weights): runs that agree here share traced functions."""
        return json.dumps({
            "model": self.spec.model.model_dump(mode="json"), "input_shape": list(self.splits.input_shape),
            "num_classes": self.splits.num_classes, "mixed_precision": self.spec.distribution.mixed_precision,
        }, sort_keys=True)

    def distribution_info(self) -> dict:
        """Strategy, replicas and the split of the (base) global batch, for status.json and summary.json."""
        return describe(self.strategy, self.spec.optimizer.batch_size, [p.batch_size for p in self.plan])

    # ------------------------------------------------------------------------------ fit
    def fit(self) -> TrainResult:
        spec, s = self.spec, self.splits
        state = self.state = self._start_fit()
        cbs, logger = state.callbacks.all, state.callbacks.logger
        status, reason = "completed", ""
        self.model.stop_training = False
        self.steps.stop_any.assign(0.0)
        self.steps.stop_local.assign(0.0)
        cbs.on_train_begin()
        try:  # a resumed run whose target was already reached has nothing left to train
            for epoch in range(state.start_epoch, spec.epochs if not state.target_reached else 0):
                logs = self._train_epoch(epoch)
                state.skip, state.partial = 0, None
                if logs is None:  # stopped inside the epoch: keep exactly where we are
                    if self.writes_run_dir:
                        self._checkpoint(epoch, step=state.steps_done)
                    status, reason = "cancelled", "stop requested"
                    break
                state.history.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})
                last_epoch = epoch == spec.epochs - 1 or state.target_reached
                if self.writes_run_dir and (
                    (epoch + 1) % spec.checkpoint_every == 0 or last_epoch or self._stop_requested()
                ):
                    self._checkpoint(epoch + 1)
                if self.writes_run_dir:  # progress for readers of status.json
                    self.recorder.progress(epoch + 1)
                if state.target_reached:  # completed: summary.json says where (target_reached, steps_to_target)
                    break
                if self._stop_requested() and not last_epoch:
                    status, reason = "cancelled", "stop requested"
                    break
                if self.model.stop_training:
                    reason = "stopped early by a callback"
                    break
        except Diverged as err:
            status, reason = "diverged", str(err)
        cbs.on_train_end()
        if logger is not None and state.target is not None and status == "completed":
            logger.log_target(state.target.event(), len(state.history))
        final = state.final(status)
        # Every worker evaluates (a collective under multi-worker); the chief logs.
        if status == "completed" and self.recorder is not None and len(s.x_test):
            test = self.evaluate(s.x_test, s.y_test)
            final.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
            if logger is not None:
                logger.log_final("test", test, len(state.history))
        if logger is not None:
            logger.close()
        return TrainResult(status, len(state.history), state.history, final, self.model, reason)

    def _start_fit(self) -> FitState:
        """Set the monitors up, assemble the callbacks and, when resuming, restore the checkpoint."""
        monitors = self._monitors()
        for m in monitors:
            m.setup(self._context())
        callbacks = self._callbacks(monitors)
        start_epoch, saved = 0, {}
        if self.recorder is not None:
            start_epoch, saved = self.recorder.restore(self.model, self.optimizer, self.strategy)
        target = None
        if self.spec.until is not None:
            target = Target(self.spec.until, lambda x, y: self.evaluator.run(x, y)[:2], self.splits,
                            saved.get("target"))
            self.evaluator.keep(target.data[0])
        return FitState.from_checkpoint(callbacks, start_epoch, saved, target)

    def _checkpoint(self, epochs_done: int, step: int = 0) -> None:
        """Checkpoint the model, the optimizer and what :meth:`FitState.from_checkpoint` needs."""
        saved = self.state.to_checkpoint(partial_sums=self.steps.sums() if step else None, seed=self.spec.seed,
                                 schedule=self.plan[: epochs_done + (1 if step else 0)])
        self.recorder.save(epochs_done, self.model, self.optimizer, saved, step=step)

    def _stop_requested(self) -> bool:
        """A stop was asked for (multi-worker: on any worker, as of the last step)."""
        if self.multi_worker:
            return bool(self.steps.stop_any.numpy() > 0)
        return bool(self.stop_event is not None and self.stop_event.is_set())

    def _share_stop_request(self) -> None:
        """Multi-worker: put this worker's stop request into the next step's reduction."""
        wanted = float(self.stop_event is not None and self.stop_event.is_set())
        if wanted != self.state.stop_sent:
            self.steps.stop_local.assign(wanted)
            self.state.stop_sent = wanted

    def _train_epoch(self, epoch: int) -> dict | None:
        """Train one epoch; returns its logs, or None when a stop was requested inside it.

        A resume inside an epoch skips the ``state.skip`` batches already done and restores the
        running sums of that epoch's loss and accuracy from ``state.partial``.
        """
        spec, s, state, replica_steps = self.spec, self.splits, self.state, self.steps
        cbs, batch_hooks = state.callbacks.all, state.callbacks.batch_hooks
        cbs.on_epoch_begin(epoch)
        bs = state.callbacks.batch_size.current
        if bs % self.replicas:
            raise ValueError(f"batch size {bs} of epoch {epoch + 1} is not divisible by {self.replicas} replicas")
        ds, n_steps = epoch_data(spec, self.train_tensors, bs, epoch, self.replicas, self.batch_norm)
        skip = state.skip
        if skip:
            ds = ds.skip(skip)
        iterator = iter(replica_steps.distribute(ds))
        cbs.params["steps"] = n_steps
        replica_steps.reset_sums(state.partial)
        t0 = time.perf_counter()
        state.steps_done = skip
        target, done = state.target, n_steps
        for step in range(skip, n_steps):
            if self._stop_requested():
                return None
            if self.multi_worker:
                self._share_stop_request()
            if batch_hooks:
                cbs.on_train_batch_begin(step)
            replica_steps.train(iterator)
            state.steps_done = step + 1
            if batch_hooks:
                cbs.on_train_batch_end(step, None)
            if state.first_loss is None:
                state.first_loss = replica_steps.running_loss()
            if (step + 1) % DIVERGENCE_CHECK_EVERY == 0:
                self._check_divergence(epoch, step)
            if target is not None and step + 1 < n_steps and target.due(step + 1) and \
                    self._target_check(target.measure(), epoch, step + 1, n_steps):
                done = step + 1  # reached inside the epoch: the epoch ends here
                break
        seconds = time.perf_counter() - t0
        count = float(replica_steps.count.numpy())
        logs = {
            "loss": float(replica_steps.sum_loss.numpy()) / max(count, 1.0),
            "accuracy": float(replica_steps.sum_correct.numpy()) / max(count, 1.0),
            "steps": done - skip,
            "seconds": seconds,
            "examples_per_second": count / seconds if seconds > 0 else 0.0,
        }
        self._check_divergence(epoch, done - 1, logs["loss"])
        if len(s.x_val):
            val_loss, val_acc, _ = self.evaluator.run(s.x_val, s.y_val)
            logs.update(val_loss=val_loss, val_accuracy=val_acc)
        if target is not None:
            if target.reached is None:  # val_*: the evaluation just made is the measurement
                self._target_check(logs[target.metric] if target.metric in logs else target.measure(),
                                   epoch, done, n_steps)
            target.end_epoch(done, count)
        # The scheduled value (a Python float, not float32-rounded); with SVAG the nominal η = l × step size.
        svag = spec.optimizer.svag
        lr = state.callbacks.lr.current * svag
        momentum = spec.optimizer.momentum
        logs.update(lr=lr, batch_size=bs, eta_over_s=lr / bs, eta_over_s_momentum=lr / (bs * (1 - momentum)))
        logs["eta_over_s_finite"] = schedules.eta_over_s_finite(lr, bs, len(s.x_train))
        if svag > 1:
            logs["svag"] = svag
        cbs.on_epoch_end(epoch, logs)  # Keras copies logs: collect what the monitors measured
        if state.target_reached or (self.model.stop_training and not self._stop_requested()):
            state.callbacks.measure_at_end(epoch, logs)  # the run ends here, completed: before its checkpoint
        for m in state.callbacks.monitors:
            logs.update({f"{m.kind}/{k}": v for k, v in m.last.items() if not isinstance(v, list)})
        return logs

    def _target_check(self, measured: float, epoch: int, steps_in_epoch: int, n_steps: int) -> bool:
        return self.state.target.check(measured, epoch=epoch, steps_in_epoch=steps_in_epoch,
                                       steps_per_epoch=n_steps, examples_in_epoch=float(self.steps.count.numpy()))

    def _check_divergence(self, epoch: int, step: int, loss: float | None = None) -> None:
        if loss is None:
            loss = self.steps.running_loss()
        limit = self.spec.divergence_factor * max(self.state.first_loss or 0.0, 1e-3)
        if not math.isfinite(loss) or loss > limit:
            raise Diverged(
                f"training loss {loss:.4g} in epoch {epoch + 1}, step {step + 1} "
                + ("is not finite" if not math.isfinite(loss) else f"exceeds {self.spec.divergence_factor:g}× the first loss")
            )


def build_model_and_optimizer(spec, splits: data_lib.Splits, strategy: tf.distribute.Strategy):
    """The compiled model and its built optimizer, in the strategy's scope and the spec's dtype policy.

    The global dtype policy is set only while building, then restored.
    """
    dist = spec.distribution
    previous_policy = keras.config.dtype_policy()
    if dist.mixed_precision != "none":
        keras.config.set_dtype_policy(dist.mixed_precision)
    try:
        with strategy.scope():
            model = build_model(spec.model, splits.input_shape, splits.num_classes)
            optimizer = make_optimizer(spec.optimizer)
            if dist.mixed_precision == "mixed_float16":  # float16 gradients underflow without it
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model, optimizer


def epoch_data(spec, train: tuple, batch_size: int, epoch: int, replicas: int,
               batch_norm: bool) -> tuple[tf.data.Dataset, int]:
    """Epoch ``epoch``'s training pipeline at ``batch_size`` and its number of steps, from the training
    ``(x, y)`` (arrays, or their :func:`tfminima.data.pipeline.host_tensors`).

    SVAG (l > 1) takes l passes of pairs of batches; otherwise the shuffled, augmented epoch, less
    a last batch that would leave a replica empty under batch norm (:func:`leaves_a_replica_empty`).
    """
    (x, y), svag, n = train, spec.optimizer.svag, int(train[0].shape[0])
    if svag > 1:
        ds = svag_dataset(x, y, batch_size, epoch=epoch, seed=spec.seed, l=svag)
        return ds, svag * (n // batch_size)
    ds = train_dataset(
        x, y, batch_size, epoch=epoch, seed=spec.seed,
        augmentation=spec.dataset.augmentation, drop_remainder=spec.dataset.drop_remainder,
    )
    steps = steps_per_epoch(n, batch_size, spec.dataset.drop_remainder)
    if batch_norm and not spec.dataset.drop_remainder and leaves_a_replica_empty(n % batch_size, replicas):
        ds, steps = ds.take(steps - 1), steps - 1
    return ds, steps


def leaves_a_replica_empty(last_batch: int, replicas: int) -> bool:
    """Whether a last batch of ``last_batch`` examples leaves a replica without any.

    tf.distribute gives each replica ceil(b / R) examples of a batch of b in turn, so a short last
    batch (b = 1 of 2 replicas, b = 5 of 4) leaves the last replicas empty. Without batch norm an
    empty share adds nothing and the step stays exact; a batch-norm layer averages the empty batch
    to NaN and the run diverges. So with batch norm such a batch is dropped: its b examples
    (b < R·ceil(b/R) − ceil(b/R) + 1), different ones every epoch.
    """
    if replicas <= 1 or last_batch == 0:
        return False
    return (replicas - 1) * -(-last_batch // replicas) >= last_batch


def _is_default(callback, method: str) -> bool:
    fn = getattr(type(callback), method, None)
    return fn is getattr(keras.callbacks.Callback, method)


def fit(spec, **kwargs) -> TrainResult:
    """Train ``spec`` (an ExperimentSpec): ``Trainer(spec, **kwargs).fit()``."""
    return Trainer(spec, **kwargs).fit()
