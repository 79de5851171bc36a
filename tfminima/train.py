"""The trainer: SGD on a Keras model under a tf.distribute strategy, epoch by epoch.

Why not ``model.fit``: the batch size must change between epochs (batch-size schedules), which
``fit`` cannot do without losing steps. So each epoch gets a freshly built distributed dataset
of the scheduled batch size, and one traced train step serves every batch size (the batch
dimension is None). Everything else follows Keras: the standard ``keras.callbacks.Callback``
protocol (Keras' TensorBoard, CSVLogger and EarlyStopping work), ``model.optimizer`` and
``model.stop_training``.

The loss of a step is the sum of per-example losses divided by the GLOBAL number of examples in
the step (``tf.nn.compute_average_loss`` semantics), so a mirrored run equals a one-device run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfminima import checkpoint as ckpt
from tfminima import data as data_lib
from tfminima import schedules
from tfminima.callbacks import BatchSizeScheduler, LearningRateScheduler, RunLogger
from tfminima.data.pipeline import eval_dataset, steps_per_epoch, svag_dataset, train_dataset
from tfminima.distribute import DistributionError, agree, describe, is_chief, is_multi_worker, make_strategy
from tfminima.models import build_model
from tfminima.monitors import Monitor, MonitorContext, build_all
from tfminima.optim import make_optimizer

DIVERGENCE_CHECK_EVERY = 50  # steps between (cheap) mid-epoch divergence checks


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
    """Seed Python, NumPy and TensorFlow; with ``deterministic`` also force deterministic ops."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def per_example_loss(labels, logits):
    """Sparse categorical cross-entropy from logits, one value per example (float32)."""
    return keras.losses.sparse_categorical_crossentropy(labels, tf.cast(logits, tf.float32), from_logits=True)


class Trainer:
    """Train one experiment spec.

    >>> from tfminima import config
    >>> spec = config.load_text("epochs: 2\\ndataset: {train_size: 512, val_size: 128, test_size: 128}")
    >>> result = Trainer(spec).fit()          # doctest: +SKIP
    >>> result.final["val_accuracy"]          # doctest: +SKIP

    ``callbacks`` are extra Keras callbacks. ``run_dir`` (a :class:`tfminima.rundir.RunDir`) turns
    on metrics.jsonl, TensorBoard and checkpoints; ``resume=True`` continues from its latest
    checkpoint. ``splits`` lets a caller pass data already loaded.
    """

    def __init__(
        self,
        spec,
        *,
        run_dir=None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        strategy: tf.distribute.Strategy | None = None,
        splits: data_lib.Splits | None = None,
        resume: bool = False,
        writer=None,
        stop_event=None,
    ):
        self.spec = spec
        self.run_dir = run_dir
        self.user_callbacks = list(callbacks)
        self.resume = resume
        self.writer = writer
        self.stop_event = stop_event  # a threading.Event-like: set() to stop at the next step
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
        self.train_traces = 0
        self.eval_traces = 0
        self._build()

    # ------------------------------------------------------------------------------ build
    def _build(self) -> None:
        s, dist = self.splits, self.spec.distribution
        previous_policy = keras.config.dtype_policy()
        if dist.mixed_precision != "none":
            keras.config.set_dtype_policy(dist.mixed_precision)
        try:
            with self.strategy.scope():
                self.model = build_model(self.spec.model, s.input_shape, s.num_classes)
                self.optimizer = make_optimizer(self.spec.optimizer)
                if dist.mixed_precision == "mixed_float16":  # float16 gradients underflow without it
                    self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
                self.optimizer.build(self.model.trainable_variables)
                self.model.compile(
                    optimizer=self.optimizer,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"],
                )
        finally:
            keras.config.set_dtype_policy(previous_policy)
        # Accumulators live outside the strategy: updated from the cross-replica context.
        with tf.init_scope():
            self._sum_loss = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            self._sum_correct = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            self._count = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            # Multi-worker: a stop requested on any worker is summed into every step's reduction,
            # so all workers stop after the same step.
            self._stop_local = tf.Variable(0.0, dtype=tf.float32, trainable=False)
            self._stop_any = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.jit_compile = self._use_jit()
        self._batch_norm = any(isinstance(layer, keras.layers.BatchNormalization)
                               for layer in self.model._flatten_layers(include_self=False))  # noqa: SLF001
        self._plain_input = isinstance(self.strategy, tf.distribute.OneDeviceStrategy) and \
            "CPU" in self.strategy.extended.worker_devices[0].upper()
        # XLA: the whole replica step on one replica. With several replicas only the gradient is
        # compiled: a compiled optimizer update of mirrored variables is placed on the first
        # device and fails ("Trying to access resource ... located in device CPU:1").
        self._grads_fn = self._compute_grads
        self._step_fn = self._replica_train_step
        if self.jit_compile and self.replicas == 1:
            self._step_fn = tf.function(self._replica_train_step, jit_compile=True, autograph=False)
        elif self.jit_compile:
            self._grads_fn = tf.function(self._compute_grads, jit_compile=True, autograph=False)
        # No AutoGraph (as in Keras' own fit): the steps have no tensor-dependent Python control flow,
        # and converting Keras' layer code made tracing several times slower.
        self._train_fn = tf.function(self._train_function, autograph=False)
        self._eval_fn = tf.function(self._eval_function, autograph=False)
        self._eval_cache: dict = {}
        self._no_labels = np.zeros(0, dtype=np.int32)

    def _distribute(self, ds: tf.data.Dataset):
        """The dataset as the strategy's replicas take it.

        One CPU device: the dataset itself (``strategy.run`` takes its tensors as they are). A
        distributed iterator over it costs ~200 ms to create on this CPU, every epoch, which was
        most of an epoch of the small models here; on GPUs it prefetches to the device, so it stays.
        """
        if self._plain_input:
            return ds
        return self.strategy.experimental_distribute_dataset(ds)

    def _use_jit(self) -> bool:
        """XLA for the replica step: on, off, or auto (on with GPUs; on this CPU it was slower for CNNs)."""
        mode = self.spec.distribution.jit_compile
        if mode == "auto":
            return bool(tf.config.list_logical_devices("GPU"))
        return mode == "on"

    def _replica_train_step(self, x, y, half=None):
        """One SGD step on this replica's share of the global batch: (loss sum, correct, count)."""
        ctx = tf.distribute.get_replica_context()
        count = tf.cast(tf.shape(y)[0], tf.float32)
        n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
        grads, loss_sum, correct = self._grads_fn(x, y, half, n_global)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss_sum, correct, count

    def _compute_grads(self, x, y, half, n_global):
        """Gradients of this replica's share of the loss (sum over its examples / global count).

        With SVAG (``half`` given: 0/1 per example), the loss is c1·L(batch 0) + c2·L(batch 1),
        c1,2 = (1 ± sqrt(2l − 1)) / 2, whose gradient has the mean of one batch's and l× its noise.
        """
        model, tvars = self.model, self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            per_example = per_example_loss(y, logits)
            if half is None:
                loss = tf.reduce_sum(per_example) / n_global
            else:
                root = math.sqrt(2 * self.spec.optimizer.svag - 1)
                weights = tf.where(tf.equal(half, 0), (1.0 + root) / 2, (1.0 - root) / 2)
                loss = tf.reduce_sum(weights * per_example) / (n_global / 2)
            if model.losses:
                loss += tf.add_n(model.losses) / self.replicas
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)  # apply_gradients unscales
        grads = tape.gradient(loss, tvars)
        grads = [g if g is not None else tf.zeros_like(v) for g, v in zip(grads, tvars)]
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=y.dtype), y), tf.float32))
        return grads, tf.reduce_sum(per_example), correct

    def _replica_step_stats(self, *batch):
        loss_sum, correct, count = self._step_fn(*batch)
        return tf.stack([loss_sum, correct, count, tf.identity(self._stop_local)])

    def _train_function(self, iterator):
        self.train_traces += 1  # runs at trace time only
        batch = next(iterator)
        stats = self.strategy.run(self._replica_step_stats, args=tuple(batch))
        # One reduction for all numbers: under MultiWorkerMirroredStrategy each is a collective.
        total = tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None), tf.float64)
        self._sum_loss.assign_add(total[0])
        self._sum_correct.assign_add(total[1])
        self._count.assign_add(total[2])
        self._stop_any.assign(total[3])

    def _replica_eval_step(self, x, y):
        logits = self.model(x, training=False)
        per_example = per_example_loss(y, logits)
        pred = tf.argmax(logits, -1, output_type=y.dtype)
        correct = tf.reduce_sum(tf.cast(tf.equal(pred, y), tf.float32))
        # all_gather keeps the examples' order across replicas and workers (uneven shares included)
        preds = tf.distribute.get_replica_context().all_gather(pred, axis=0)
        return tf.stack([tf.reduce_sum(per_example), correct, tf.cast(tf.shape(y)[0], tf.float32)]), preds

    def _eval_function(self, iterator):
        self.eval_traces += 1
        x, y = next(iterator)
        stats, preds = self.strategy.run(self._replica_eval_step, args=(x, y))
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)
        return total[0], total[1], total[2], self.strategy.experimental_local_results(preds)[0]

    # ------------------------------------------------------------------------------ eval
    def _eval_data(self, x: np.ndarray, y: np.ndarray):
        """The distributed eval pipeline of ``(x, y)``; built once for the trainer's own split arrays.

        The same splits are evaluated every epoch (validation; the memorisation monitor's pass over the
        training set): rebuilding the pipeline each time cost as much as the pass itself on small
        models. Arrays from elsewhere (``evaluate`` called by a user) get a fresh pipeline every call,
        so changing them in place between calls is safe.
        """
        bs = self.spec.eval_batch_size
        bs = max(self.replicas, bs - bs % self.replicas)
        s = self.splits
        if not any(x is a for a in (s.x_train, s.x_val, s.x_test)):
            return self._distribute(eval_dataset(x, y, bs)), steps_per_epoch(len(x), bs, False)
        key = (id(x), id(y))
        hit = self._eval_cache.get(key)
        if hit is None or hit[0] is not x or hit[1] is not y:
            hit = (x, y, self._distribute(eval_dataset(x, y, bs)), steps_per_epoch(len(x), bs, False))
            self._eval_cache[key] = hit
        return hit[2], hit[3]

    def _run_eval(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        dist, steps = self._eval_data(x, y)
        it = iter(dist)
        loss = correct = count = 0.0
        preds = []
        for _ in range(steps):
            l_, c_, n_, p_ = self._eval_fn(it)
            loss += float(l_)
            correct += float(c_)
            count += float(n_)
            preds.append(p_.numpy())
        return loss / max(count, 1), correct / max(count, 1), np.concatenate(preds) if preds else np.array([])

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean loss and accuracy on ``(x, y)`` in inference mode."""
        loss, acc, _ = self._run_eval(x, y)
        return {"loss": loss, "accuracy": acc}

    def predict_classes(self, x: np.ndarray) -> np.ndarray:
        """Argmax predictions in inference mode (order preserved)."""
        if len(self._no_labels) != len(x):
            self._no_labels = np.zeros(len(x), dtype=np.int32)
        _, _, preds = self._run_eval(x, self._no_labels)
        return preds

    # ------------------------------------------------------------------------------ callbacks
    def _monitors(self) -> list[Monitor]:
        return build_all(self.spec)

    def _callbacks(self, monitors: list[Monitor]) -> list[keras.callbacks.Callback]:
        plan = self.plan
        svag = self.spec.optimizer.svag  # SVAG steps at η/l; logs keep the nominal η
        self.lr_callback = LearningRateScheduler(lambda e: plan[e].lr / svag)
        self.bs_callback = BatchSizeScheduler(lambda e: plan[e].batch_size)
        user_bs = [c for c in self.user_callbacks if isinstance(c, BatchSizeScheduler)]
        user_lr = [c for c in self.user_callbacks if isinstance(c, LearningRateScheduler)]
        if user_bs:
            self.bs_callback = user_bs[-1]
        if user_lr:
            self.lr_callback = user_lr[-1]
        others = [c for c in self.user_callbacks if c is not self.bs_callback and c is not self.lr_callback]
        cbs = [self.lr_callback, self.bs_callback] + monitors + others
        self.logger = None
        if self.writer is not None and self.chief:
            tb = self.run_dir.tb_dir if self.run_dir is not None else None
            self.logger = RunLogger(self.writer, tb, monitors)
            cbs.append(self.logger)
        return cbs

    def _context(self) -> MonitorContext:
        s = self.splits
        return MonitorContext(
            train_x=s.x_train, train_y=s.y_train, clean_y=s.y_train_clean, noise_mask=s.noise_mask,
            val_x=s.x_val, val_y=s.y_val, num_classes=s.num_classes, strategy=self.strategy,
            loss_fn=per_example_loss, seed=self.spec.seed, epochs=self.spec.epochs,
            lr_at=lambda e: self.plan[min(e, len(self.plan) - 1)].lr,
            batch_size_at=lambda e: self.plan[min(e, len(self.plan) - 1)].batch_size,
            momentum=self.spec.optimizer.momentum, run_dir=self.run_dir,
            eval_batch_size=self.spec.eval_batch_size, evaluate=self.evaluate,
            predict_classes=self.predict_classes, architecture=self.architecture(),
        )

    def architecture(self) -> str:
        """What the model is built from (not its weights): runs that agree here share traced functions."""
        return json.dumps({
            "model": self.spec.model.model_dump(mode="json"), "input_shape": list(self.splits.input_shape),
            "num_classes": self.splits.num_classes, "mixed_precision": self.spec.distribution.mixed_precision,
        }, sort_keys=True)

    # ------------------------------------------------------------------------------ fit
    def fit(self) -> TrainResult:
        spec, s = self.spec, self.splits
        monitors = self._monitors()
        self._monitor_list = monitors
        for m in monitors:
            m.setup(self._context())
        cbs = keras.callbacks.CallbackList(
            self._callbacks(monitors), model=self.model, epochs=spec.epochs, verbose=0,
            steps=steps_per_epoch(len(s.x_train), self.plan[0].batch_size, spec.dataset.drop_remainder),
        )
        batch_hooks = any(
            not _is_default(c, "on_train_batch_begin") or not _is_default(c, "on_train_batch_end")
            for c in cbs.callbacks
        )
        start_epoch, state = 0, {}
        if self.resume and self.run_dir is not None:
            start_epoch, state = self._restore()
        self.first_loss = state.get("first_loss")
        self.history: list[dict] = list(state.get("history", []))
        skip, partial = int(state.get("step_in_epoch", 0)), state.get("partial_sums")
        status, reason = "completed", ""
        self.model.stop_training = False
        self._stop_any.assign(0.0)
        self._stop_local.assign(0.0)
        self._stop_sent = 0.0
        cbs.on_train_begin()
        epoch = start_epoch
        try:
            for epoch in range(start_epoch, spec.epochs):
                logs = self._train_epoch(epoch, cbs, batch_hooks, skip, partial)
                skip, partial = 0, None
                if logs is None:  # stopped inside the epoch: keep exactly where we are
                    if self.run_dir is not None and self.chief:
                        self._save(epoch, step=self._steps_done)
                    status, reason = "cancelled", "stop requested"
                    break
                self.history.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})
                last_epoch = epoch == spec.epochs - 1
                if self.run_dir is not None and self.chief and (
                    (epoch + 1) % spec.checkpoint_every == 0 or last_epoch or self._stop_requested()
                ):
                    self._save(epoch + 1)
                if self.run_dir is not None and self.chief:  # progress for readers of status.json
                    self.run_dir.write_status("running", epochs_done=epoch + 1)
                if self._stop_requested() and not last_epoch:
                    status, reason = "cancelled", "stop requested"
                    break
                if self.model.stop_training:
                    reason = "stopped early by a callback"
                    break
        except Diverged as err:
            status, reason = "diverged", str(err)
        cbs.on_train_end()
        final = self._final(status)
        # Every worker evaluates (a collective under multi-worker); the chief logs.
        if status == "completed" and (self.writer is not None or self.run_dir is not None) and len(s.x_test):
            test = self.evaluate(s.x_test, s.y_test)
            final.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
            if self.logger is not None:
                self.logger.log_final("test", test, max(len(self.history) - 1, 0))
        if self.logger is not None:
            self.logger.close()
        return TrainResult(status, len(self.history), self.history, final, self.model, reason)

    def _stop_requested(self) -> bool:
        """A stop was asked for (multi-worker: on any worker, as of the last step)."""
        if self.multi_worker:
            return bool(self._stop_any.numpy() > 0)
        return bool(self.stop_event is not None and self.stop_event.is_set())

    def _share_stop_request(self) -> None:
        """Multi-worker: put this worker's stop request into the next step's reduction."""
        wanted = float(self.stop_event is not None and self.stop_event.is_set())
        if wanted != self._stop_sent:
            self._stop_local.assign(wanted)
            self._stop_sent = wanted

    def distribution_info(self) -> dict:
        """Strategy, replicas and the split of the (base) global batch, for status.json and summary.json."""
        return describe(self.strategy, self.spec.optimizer.batch_size, [p.batch_size for p in self.plan])

    def _train_epoch(self, epoch: int, cbs, batch_hooks: bool, skip: int = 0, partial=None) -> dict | None:
        """Train one epoch; returns its logs, or None when a stop was requested inside it.

        ``skip`` batches already done (a resume inside an epoch) are skipped, and ``partial``
        restores the running sums of that epoch's loss and accuracy.
        """
        spec, s = self.spec, self.splits
        cbs.on_epoch_begin(epoch)
        bs = self.bs_callback.current
        if bs % self.replicas:
            raise ValueError(f"batch size {bs} at epoch {epoch} is not divisible by {self.replicas} replicas")
        svag = spec.optimizer.svag
        if svag > 1:
            ds = svag_dataset(s.x_train, s.y_train, bs, epoch=epoch, seed=spec.seed, l=svag)
            steps = svag * (len(s.x_train) // bs)
        else:
            ds = train_dataset(
                s.x_train, s.y_train, bs, epoch=epoch, seed=spec.seed,
                augmentation=spec.dataset.augmentation, drop_remainder=spec.dataset.drop_remainder,
            )
            steps = steps_per_epoch(len(s.x_train), bs, spec.dataset.drop_remainder)
            if self._batch_norm and not spec.dataset.drop_remainder and \
                    leaves_a_replica_empty(len(s.x_train) % bs, self.replicas):
                ds, steps = ds.take(steps - 1), steps - 1
        if skip:
            ds = ds.skip(skip)
        iterator = iter(self._distribute(ds))
        cbs.params["steps"] = steps
        for v, value in zip((self._sum_loss, self._sum_correct, self._count), partial or (0.0, 0.0, 0.0)):
            v.assign(value)
        t0 = time.perf_counter()
        self._steps_done = skip
        for step in range(skip, steps):
            if self._stop_requested():
                return None
            if self.multi_worker:
                self._share_stop_request()
            if batch_hooks:
                cbs.on_train_batch_begin(step)
            self._train_fn(iterator)
            self._steps_done = step + 1
            if batch_hooks:
                cbs.on_train_batch_end(step, None)
            if self.first_loss is None:
                self.first_loss = float(self._sum_loss.numpy() / max(self._count.numpy(), 1.0))
            if (step + 1) % DIVERGENCE_CHECK_EVERY == 0:
                self._check_divergence(epoch, step)
        done = steps - skip
        seconds = time.perf_counter() - t0
        count = float(self._count.numpy())
        logs = {
            "loss": float(self._sum_loss.numpy()) / max(count, 1.0),
            "accuracy": float(self._sum_correct.numpy()) / max(count, 1.0),
            "steps": done,
            "seconds": seconds,
            "examples_per_second": count / seconds if seconds > 0 else 0.0,
        }
        self._check_divergence(epoch, steps - 1, logs["loss"])
        if len(s.x_val):
            val_loss, val_acc, _ = self._run_eval(s.x_val, s.y_val)
            logs.update(val_loss=val_loss, val_accuracy=val_acc)
        # The scheduled value (a Python float, not float32-rounded); with SVAG the nominal η = l × step size.
        lr = self.lr_callback.current * svag
        momentum = spec.optimizer.momentum
        logs.update(lr=lr, batch_size=bs, eta_over_s=lr / bs, eta_over_s_momentum=lr / (bs * (1 - momentum)))
        logs["eta_over_s_finite"] = schedules.eta_over_s_finite(lr, bs, len(s.x_train))
        if svag > 1:
            logs["svag"] = svag
        cbs.on_epoch_end(epoch, logs)  # Keras copies logs: collect what the monitors measured
        for m in self._monitor_list:
            logs.update({f"{m.kind}/{k}": v for k, v in m.last.items() if not isinstance(v, list)})
        return logs

    def _check_divergence(self, epoch: int, step: int, loss: float | None = None) -> None:
        if loss is None:
            loss = float(self._sum_loss.numpy() / max(self._count.numpy(), 1.0))
        limit = self.spec.divergence_factor * max(self.first_loss or 0.0, 1e-3)
        if not math.isfinite(loss) or loss > limit:
            raise Diverged(
                f"training loss {loss:.4g} at epoch {epoch}, step {step} "
                + ("is not finite" if not math.isfinite(loss) else f"exceeds {self.spec.divergence_factor:g}× the first loss")
            )

    def _final(self, status: str) -> dict:
        final: dict[str, Any] = {"status": status, "epochs_done": len(self.history)}
        if self.history:
            last = self.history[-1]
            for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "batch_size", "eta_over_s"):
                if k in last:
                    final[k] = last[k]
            vals = [h["val_accuracy"] for h in self.history if "val_accuracy" in h]
            if vals:
                final["best_val_accuracy"] = max(vals)
            for k, v in last.items():
                if "/" in k:
                    final[k] = v
            # Latest value of each monitor quantity, even if not measured in the last epoch.
            for h in self.history:
                for k, v in h.items():
                    if "/" in k:
                        final[k] = v
        return final

    # ------------------------------------------------------------------------------ checkpoints
    def _save(self, epochs_done: int, step: int = 0) -> None:
        state = {
            "partial_sums": [float(v.numpy()) for v in (self._sum_loss, self._sum_correct, self._count)]
            if step else None,
            "first_loss": self.first_loss,
            "history": self.history,
            "seed": self.spec.seed,
            "data_order": "permutation of (seed, epoch); augmentation stateless in (seed, epoch, index)",
            "schedule": [dataclasses.asdict(p) for p in self.plan[: epochs_done + (1 if step else 0)]],
        }
        ckpt.save(self.run_dir.checkpoints_dir, epochs_done, self.model, self.optimizer, state, step=step)

    def _restore(self) -> tuple[int, dict]:
        path = ckpt.latest(self.run_dir.checkpoints_dir)
        if self.multi_worker:  # every worker reads the checkpoint the chief reads, or none starts
            mine = [0, 0, 0] if path is None else [1, *ckpt.position(path)]
            chief, same = agree(self.strategy, mine)
            if not same:
                raise DistributionError(
                    f"workers disagree on the checkpoint to resume: the chief has {ckpt.describe_position(chief)}, "
                    f"this worker {ckpt.describe_position(mine)} in {self.run_dir.checkpoints_dir}; put the runs "
                    "directory on a file system every worker mounts at the same path"
                )
        if path is None:
            return 0, {}
        with self.strategy.scope():
            state = ckpt.restore(path, self.model, self.optimizer)
        return int(state["epochs_done"]), state


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
