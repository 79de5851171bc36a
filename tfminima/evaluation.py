"""Evaluation in inference mode under the run's strategy: loss, accuracy and argmax predictions.

The trainer evaluates the validation split every epoch, and the memorisation monitor passes over the
training set: the pipelines of the trainer's own split arrays are built once and kept.
"""

from __future__ import annotations

import numpy as np

from tfminima.data.pipeline import eval_dataset, steps_per_epoch
from tfminima.steps import ReplicaSteps


class Evaluator:
    """Evaluate ``steps``' model on arrays, in batches of ``batch_size`` (rounded to the replicas).

    ``splits`` are the arrays whose pipelines are cached (:class:`tfminima.data.Splits`).
    """

    def __init__(self, steps: ReplicaSteps, splits, batch_size: int):
        self.steps = steps
        self.splits = splits
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
        loss = correct = count = 0.0
        preds = []
        for _ in range(steps):
            l_, c_, n_, p_ = self.steps.eval_step(it)
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
