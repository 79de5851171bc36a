"""tf.data pipelines: a fresh, deterministic training pipeline per epoch, and evaluation batches.

The training order of epoch ``e`` is a permutation drawn from ``(seed, e)`` and augmentation uses
stateless random ops seeded by ``(seed, e, example position)``. Nothing depends on hidden RNG
state, so a run resumed from the checkpoint of epoch k sees exactly the data an uninterrupted
run would have seen.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_PAD = 4  # the paper's 4-pixel shifts (zero padding + random crop)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of training examples in ``epoch``."""
    return np.random.default_rng([int(seed), int(epoch), 0xDA7A]).permutation(n)


def host_tensors(x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    """The training arrays as tensors in host memory, made once for a trainer.

    Each epoch's pipeline then gathers its permuted copy in TensorFlow instead of NumPy's fancy
    indexing followed by a second copy into a tensor: 0.18 s an epoch's build and first batch instead
    of 1.1 s at CIFAR-10's size (50,000 images), the same bits (BENCHMARKS.md, Trainer against
    ``model.fit``). The price is one more copy of the training set while the trainer lives (the
    epoch's permuted copy was made anyway).
    """
    with tf.device("/cpu:0"):
        return tf.constant(x), tf.constant(y)


def _in_order(x, y, order: np.ndarray):
    """``x[order], y[order]`` for arrays or for tensors (:func:`host_tensors`)."""
    if tf.is_tensor(x):
        with tf.device("/cpu:0"):
            return tf.gather(x, order), tf.gather(y, order)
    return x[order], y[order]


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)


def train_dataset(
    x: np.ndarray | tf.Tensor,
    y: np.ndarray | tf.Tensor,
    batch_size: int,
    *,
    epoch: int,
    seed: int,
    augmentation: str = "none",
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Shuffled (by ``seed``, ``epoch``), augmented, batched training data for one epoch (``x``, ``y``:
    arrays, or their :func:`host_tensors`)."""
    perm = epoch_permutation(int(x.shape[0]), seed, epoch)
    ds = tf.data.Dataset.from_tensor_slices(_in_order(x, y, perm))
    if augmentation != "none" and len(x.shape) == 4:
        shift, flip = "shift" in augmentation, "flip" in augmentation
        base = tf.constant([int(seed) % (2**31 - 1), int(epoch)], dtype=tf.int64)

        def augment(i, xy):
            image, label = xy
            s = tf.stack([base[0], base[1] * 1_000_003 + i])
            if shift:
                h, w, c = image.shape
                padded = tf.pad(image, [[_PAD, _PAD], [_PAD, _PAD], [0, 0]])
                image = tf.image.stateless_random_crop(padded, [h, w, c], seed=s)
            if flip:
                image = tf.image.stateless_random_flip_left_right(image, seed=s + 1)
            return image, label

        ds = ds.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def svag_dataset(
    x: np.ndarray | tf.Tensor, y: np.ndarray | tf.Tensor, batch_size: int, *, epoch: int, seed: int, l: int
) -> tf.data.Dataset:
    """Batches of 2S examples for SVAG: S from one permutation (flag 0), S from another (flag 1).

    Each of the ``l`` passes of the epoch draws two fresh permutations, so the two halves of every
    step are independent batches. Remainders are dropped (every half has exactly S examples);
    ``l`` passes of ``len(x) // S`` steps make the epoch. Memory: 2l copies of the training set.
    """
    n, s = int(x.shape[0]), batch_size
    steps = n // s
    order, flag = [], []
    for j in range(l):
        a = np.random.default_rng([int(seed), int(epoch), 2 * j, 0x5FA6]).permutation(n)
        b = np.random.default_rng([int(seed), int(epoch), 2 * j + 1, 0x5FA6]).permutation(n)
        for k in range(steps):
            order += [a[k * s:(k + 1) * s], b[k * s:(k + 1) * s]]
            flag += [np.zeros(s, np.int32), np.ones(s, np.int32)]
    order_arr = np.concatenate(order)
    ds = tf.data.Dataset.from_tensor_slices((*_in_order(x, y, order_arr), np.concatenate(flag)))
    ds = ds.batch(2 * s, drop_remainder=True)
    return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def _options() -> tf.data.Options:
    opts = tf.data.Options()
    opts.deterministic = True
    # Multi-worker: every worker reads the same global batch and keeps its share of it.
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return opts
