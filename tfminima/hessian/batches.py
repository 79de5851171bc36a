"""The examples of one measurement: materialised once, converted to tensors once, split over replicas.

Every product of a measurement must see the same examples (a shuffling pipeline would change the
Hessian between products), and converting arrays to tensors on every product would cost as much as a
small product itself: :class:`PlacedBatches` does both once.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfminima.hessian.options import DEFAULT_BATCH_SIZE

__all__ = ["DEFAULT_BATCH_SIZE", "PlacedBatches", "as_batches"]


def as_batches(data, batch_size: int = DEFAULT_BATCH_SIZE) -> list[tuple[np.ndarray, np.ndarray]]:
    """Materialise ``data`` -- ``(x, y)`` arrays or a ``tf.data.Dataset`` of ``(x, y)`` batches -- as a list.

    A dataset is iterated exactly once: every product of one measurement then sees the same examples
    (a shuffling or augmenting pipeline would otherwise change the Hessian between products).
    """
    if isinstance(data, tf.data.Dataset):
        out = []
        for element in data:
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ValueError("a dataset for the Hessian tools must yield (x, y) batches")
            out.append((np.asarray(element[0]), np.asarray(element[1])))
        if not out:
            raise ValueError("the dataset is empty")
        return out
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be an (x, y) tuple of arrays or a tf.data.Dataset of (x, y) batches")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("data has no examples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


class PlacedBatches:
    """The batches of one measurement, converted to tensors once and split over the strategy's replicas.

    Each batch is cut into contiguous, nearly equal parts, one a replica; every replica normalises by the
    global example count, so summing replica results gives the single-device value.
    """

    def __init__(self, data, batch_size: int = DEFAULT_BATCH_SIZE, strategy=None):
        self.strategy = strategy or tf.distribute.get_strategy()
        raw = as_batches(data, batch_size)
        self.num_examples = int(sum(len(b[0]) for b in raw))
        self.inv_n = tf.constant(1.0 / self.num_examples, tf.float64)
        self.items = [self._place(x, y) for x, y in raw]
        self._merged = None

    @classmethod
    def of(cls, data, batch_size: int = DEFAULT_BATCH_SIZE, strategy=None) -> PlacedBatches:
        """``data`` itself if it is already placed (a monitor places its subset once a run), else placed now."""
        return data if isinstance(data, cls) else cls(data, batch_size, strategy)

    def _place(self, x, y):
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return tf.constant(x), tf.constant(y)

        def part(arr):
            def fn(ctx):
                i, r = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
                return tf.constant(arr[len(arr) * i // r : len(arr) * (i + 1) // r])

            return self.strategy.experimental_distribute_values_from_function(fn)

        return part(x), part(y)

    def merged(self) -> PlacedBatches:
        """The same examples as one batch (each replica's parts concatenated): what a retained product
        over all of them takes. Only equal to these batches where examples do not interact (inference
        mode: batch statistics would change)."""
        if len(self.items) == 1:
            return self
        if self._merged is None:
            merged = object.__new__(PlacedBatches)
            merged.strategy, merged.num_examples, merged.inv_n = self.strategy, self.num_examples, self.inv_n
            merged.items = [tuple(self._concatenated(i) for i in (0, 1))]
            merged._merged = None
            self._merged = merged
        return self._merged

    def _concatenated(self, position: int):
        parts = [item[position] for item in self.items]
        if self.strategy.num_replicas_in_sync == 1:
            return tf.concat(parts, 0)
        local = [self.strategy.experimental_local_results(p) for p in parts]
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.concat([p[ctx.replica_id_in_sync_group] for p in local], 0)
        )

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)
