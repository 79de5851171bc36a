"""Evaluation in inference mode under the run's strategy: loss, accuracy and argmax predictions.

The trainer evaluates the validation split every epoch, and the memorisation monitor passes over the
training set: the pipelines of the trainer's own split arrays are built once and kept.

The traced evaluation step runs the model through ``stateless_call`` at its variable values passed in,
so every model of one architecture shares one trace (:mod:`tfminima.hessian.cache`): a sweep trained in
one process (the CLI, a TUI worker) traces it once, not once a run. A function traced anew for every
run's model is what TensorFlow's "triggered tf.function retracing" warning reported on short runs.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfminima.data.pipeline import eval_dataset, steps_per_epoch
from tfminima.hessian.cache import shareable, traced
from tfminima.steps import ReplicaSteps, per_example_loss


class EvalStep:
    """One batch's (loss sum, correct, count, predictions) for a model state; ``traces`` counts its traces.

    ``template()`` returns a model of the architecture (never stored: see :func:`tfminima.hessian.cache.traced`).
    """

    def __init__(self, template, strategy: tf.distribute.Strategy):
        self.template = template
        self.strategy = strategy
        self.traces = 0
        # No AutoGraph, as in Keras' fit: no tensor-dependent Python control flow here.
        self.function = tf.function(self._function, autograph=False)

    def __call__(self, state, iterator):
        return self.function(state, iterator)

    def _replica(self, state, x, y):
        logits, _ = self.template().stateless_call(list(state[0]), list(state[1]), x, training=False)
        per_example = per_example_loss(y, logits)
        pred = tf.argmax(logits, -1, output_type=y.dtype)
        correct = tf.reduce_sum(tf.cast(tf.equal(pred, y), tf.float32))
        # all_gather keeps the examples' order across replicas and workers (uneven shares included)
        preds = tf.distribute.get_replica_context().all_gather(pred, axis=0)
        return tf.stack([tf.reduce_sum(per_example), correct, tf.cast(tf.shape(y)[0], tf.float32)]), preds

    def _function(self, state, iterator):
        self.traces += 1  # runs at trace time only
        x, y = next(iterator)
        stats, preds = self.strategy.run(self._replica, args=(state, x, y))
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)
        return total[0], total[1], total[2], self.strategy.experimental_local_results(preds)[0]


def eval_step(model, strategy: tf.distribute.Strategy, architecture: str | None = None) -> EvalStep:
    """The evaluation step of ``model`` under ``strategy``: shared by the models of one ``architecture``
    (a key naming how they were built, e.g. :meth:`tfminima.train.Trainer.architecture`), else its own."""
    return traced(model, ("eval-step", strategy), lambda template: EvalStep(template, strategy),
                  shareable(architecture, strategy))


class Evaluator:
    """Evaluate ``steps``' model on arrays, in batches of ``batch_size`` (rounded to the replicas).

    ``splits`` are the arrays whose pipelines are cached (:class:`tfminima.data.Splits`);
    ``architecture`` lets models built alike share one traced step (:func:`eval_step`).
    """

    def __init__(self, steps: ReplicaSteps, splits, batch_size: int, architecture: str | None = None):
        self.steps = steps
        self.splits = splits
        self.step = eval_step(steps.model, steps.strategy, architecture)
        replicas = steps.replicas
        self.batch_size = max(replicas, batch_size - batch_size % replicas)
        self.pipelines: dict = {}  # (id(x), id(y)) -> (x, y, distributed dataset, steps)
        self.kept: list[np.ndarray] = []  # other arrays evaluated again and again (a target's subset)
        self._no_labels = np.zeros(0, dtype=np.int32)

    def _data(self, x: np.ndarray, y: np.ndarray):
        """The distributed eval pipeline of ``(x, y)``; built once for the trainer's own split arrays.

        The same splits are evaluated every epoch (validation; the memorisation monitor's pass over the
        training set): rebuilding the pipeline each time cost as much as the pass itself on small
        models. Arrays from elsewhere (``evaluate`` called by a user) get a fresh pipeline every call,
        so changing them in place between calls is safe.
        """
        bs, s = self.batch_size, self.splits
        if not any(x is a for a in (s.x_train, s.x_val, s.x_test, *self.kept)):
            return self.steps.distribute(eval_dataset(x, y, bs)), steps_per_epoch(len(x), bs, False)
        key = (id(x), id(y))
        hit = self.pipelines.get(key)
        if hit is None or hit[0] is not x or hit[1] is not y:
            hit = (x, y, self.steps.distribute(eval_dataset(x, y, bs)), steps_per_epoch(len(x), bs, False))
            self.pipelines[key] = hit
        return hit[2], hit[3]

    def keep(self, x: np.ndarray) -> None:
        """Cache the pipeline of ``x`` too (arrays checked every few steps; not changed in place afterwards)."""
        if not any(x is a for a in self.kept):
            self.kept.append(x)

    def run(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """Mean loss, accuracy and the predictions (in order) on ``(x, y)``."""
        dist, steps = self._data(x, y)
        it = iter(dist)
        model = self.steps.model
        state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        loss = correct = count = 0.0
        preds = []
        for _ in range(steps):
            l_, c_, n_, p_ = self.step(state, it)
            loss += float(l_)
            correct += float(c_)
            count += float(n_)
            preds.append(p_.numpy())
        return loss / max(count, 1), correct / max(count, 1), np.concatenate(preds) if preds else np.array([])

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean loss and accuracy on ``(x, y)`` in inference mode."""
        loss, acc, _ = self.run(x, y)
        return {"loss": loss, "accuracy": acc}

    def predict_classes(self, x: np.ndarray) -> np.ndarray:
        """Argmax predictions in inference mode (order preserved)."""
        if len(self._no_labels) != len(x):
            self._no_labels = np.zeros(len(x), dtype=np.int32)
        _, _, preds = self.run(x, self._no_labels)
        return preds
