"""The replica steps: one SGD step of a model under a tf.distribute strategy (evaluation: :mod:`tfminima.evaluation`).

One traced train step serves every batch size (the batch dimension is None), so a batch-size
schedule never retraces. The loss of a step is the sum of per-example losses divided by the GLOBAL
number of examples in the step (``tf.nn.compute_average_loss`` semantics), so a mirrored run equals
a one-device run. SVAG (``optimizer.svag = l``) weights the two halves of a step's batch, and XLA
compiles the replica step (or, with several replicas, its gradient) when the spec asks for it.

The running sums of an epoch (loss, correct, count) and the multi-worker stop flag live here:
they are updated from the step's one cross-replica reduction.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from tfminima import interrupt


def per_example_loss(labels, logits):
    """Sparse categorical cross-entropy from logits, one value per example (float32)."""
    return keras.losses.sparse_categorical_crossentropy(labels, tf.cast(logits, tf.float32), from_logits=True)


def use_jit(mode: str) -> bool:
    """XLA for the replica step: on, off, or auto (on with GPUs; on this CPU it was slower for CNNs)."""
    if mode == "auto":
        return bool(tf.config.list_logical_devices("GPU"))
    return mode == "on"


class ReplicaSteps:
    """The traced train step of ``model`` under ``strategy`` (model and optimizer built).

    ``train(iterator)`` takes one global batch from a distributed iterator, steps the optimizer on
    every replica and adds the batch's loss sum, correct count and example count to the running
    sums. ``train_traces`` counts the traces (a batch-size change must not add one).
    """

    def __init__(self, model: keras.Model, optimizer, strategy: tf.distribute.Strategy, *, svag: int = 1,
                 jit_compile: str = "off"):
        self.model, self.optimizer, self.strategy = model, optimizer, strategy
        self.replicas = strategy.num_replicas_in_sync
        self.svag = svag
        self.train_traces = 0
        # Accumulators live outside the strategy: updated from the cross-replica context.
        with tf.init_scope():
            self.sum_loss = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            self.sum_correct = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            self.count = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            # Multi-worker: a stop requested on any worker is summed into every step's reduction,
            # so all workers stop after the same step.
            self.stop_local = tf.Variable(0.0, dtype=tf.float32, trainable=False)
            self.stop_any = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.jit_compile = use_jit(jit_compile)
        self.plain_input = isinstance(strategy, tf.distribute.OneDeviceStrategy) and \
            "CPU" in strategy.extended.worker_devices[0].upper()
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
        self._train_traced = tf.function(self._train_function, autograph=False)

    def train(self, iterator) -> None:
        """One global step. The first call traces it (seconds for a large model): a stop request
        ends that at once (:func:`tfminima.interrupt.abortable`), nothing being written meanwhile."""
        if self.train_traces:
            return self._train_traced(iterator)
        with interrupt.abortable("tracing the training step"):
            return self._train_traced(iterator)

    def distribute(self, ds: tf.data.Dataset):
        """The dataset as the strategy's replicas take it.

        One CPU device: the dataset itself (``strategy.run`` takes its tensors as they are). A
        distributed iterator over it costs ~200 ms to create on this CPU, every epoch, which was
        most of an epoch of the small models here; on GPUs it prefetches to the device, so it stays.
        """
        if self.plain_input:
            return ds
        return self.strategy.experimental_distribute_dataset(ds)

    # ------------------------------------------------------------------------------ running sums
    def reset_sums(self, values=None) -> None:
        """Start an epoch's running sums at zero, or at ``values`` (loss, correct, count) of a resume."""
        for v, value in zip((self.sum_loss, self.sum_correct, self.count), values or (0.0, 0.0, 0.0)):
            v.assign(value)

    def sums(self) -> list[float]:
        """The running sums (loss, correct, count) as a checkpoint stores them."""
        return [float(v.numpy()) for v in (self.sum_loss, self.sum_correct, self.count)]

    def running_loss(self) -> float:
        """The mean loss of the epoch's steps so far."""
        return float(self.sum_loss.numpy() / max(self.count.numpy(), 1.0))

    # ------------------------------------------------------------------------------ train step
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
                root = math.sqrt(2 * self.svag - 1)
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
        return tf.stack([loss_sum, correct, count, tf.identity(self.stop_local)])

    def _train_function(self, iterator):
        self.train_traces += 1  # runs at trace time only
        batch = next(iterator)
        stats = self.strategy.run(self._replica_step_stats, args=tuple(batch))
        # One reduction for all numbers: under MultiWorkerMirroredStrategy each is a collective.
        total = tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None), tf.float64)
        self.sum_loss.assign_add(total[0])
        self.sum_correct.assign_add(total[1])
        self.count.assign_add(total[2])
        self.stop_any.assign(total[3])
