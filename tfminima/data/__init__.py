"""Datasets: load, split, normalise, corrupt labels, and build per-epoch tf.data pipelines.

``load(spec)`` returns :class:`Splits` (numpy, normalised float32) for any registered dataset:
offline ``mnist1d`` and ``digits``, and TFDS ``mnist``, ``fashion_mnist``, ``cifar10``,
``cifar100`` (which must have been prepared: ``tfminima data prepare NAME``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfminima.data.noise import corrupt_labels
from tfminima.data.sources import (
    TFDS_NAMES,
    DataNotPrepared,
    NoNetwork,
    check_prepared,
    offline_pool,
    prepare,
    tfds_data,
    tfds_status,
)

OFFLINE = ("mnist1d", "digits")
DATASETS = OFFLINE + tuple(TFDS_NAMES)

__all__ = ["Splits", "load", "DataNotPrepared", "NoNetwork", "prepare", "check_prepared", "tfds_status", "DATASETS",
           "corrupt_labels", "normalize"]


@dataclasses.dataclass
class Splits:
    """Normalised float32 inputs and int labels of one experiment's data.

    ``y_train`` holds the labels SGD trains on (noisy where label noise is on); ``y_train_clean``
    the true ones; ``noise_mask`` marks the corrupted indices.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    y_train_clean: np.ndarray
    noise_mask: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load(spec) -> Splits:
    """Load ``spec`` (a ``config.DatasetSpec``) into :class:`Splits`.

    Writes nothing but a whole cache file, so a stop request may end it anywhere
    (:func:`tfminima.interrupt.abortable`); generation also checks it between chunks.
    """
    from tfminima import interrupt

    with interrupt.abortable(f"loading the {spec.name} dataset"):
        return _load(spec)


def _load(spec) -> Splits:
    name = spec.name
    train_n, val_n, test_n = spec.train_size, spec.val_size, spec.test_size
    if name in OFFLINE:
        total = train_n + val_n + test_n
        x, y, num_classes = offline_pool(name, total, spec.split_seed)
        if len(x) < total:
            raise ValueError(
                f"dataset {name!r} has {len(x)} examples; train+val+test sizes ask for {total}"
            )
        perm = np.random.default_rng(spec.split_seed).permutation(len(x))
        test_idx = perm[:test_n]
        val_idx = perm[test_n : test_n + val_n]
        train_idx = perm[test_n + val_n : test_n + val_n + train_n]
        x_tr, y_tr, x_va, y_va, x_te, y_te = (
            x[train_idx], y[train_idx], x[val_idx], y[val_idx], x[test_idx], y[test_idx]
        )
    elif name in TFDS_NAMES:
        raw = tfds_data(name, spec.data_dir)
        num_classes = raw.num_classes
        if train_n + val_n > len(raw.x_train):
            raise ValueError(
                f"dataset {name!r} has {len(raw.x_train)} training examples; "
                f"train_size + val_size ask for {train_n + val_n}"
            )
        perm = np.random.default_rng(spec.split_seed).permutation(len(raw.x_train))
        val_idx, train_idx = perm[:val_n], perm[val_n : val_n + train_n]
        x_tr, y_tr = raw.x_train[train_idx], raw.y_train[train_idx]
        x_va, y_va = raw.x_train[val_idx], raw.y_train[val_idx]
        x_te, y_te = raw.x_test[:test_n], raw.y_test[:test_n]
    else:
        raise KeyError(f"unknown dataset {name!r}; known: {DATASETS}")

    x_tr, x_va, x_te = normalize(spec.normalization, x_tr, x_va, x_te)
    if spec.label_noise > 0:
        y_noisy, mask = corrupt_labels(y_tr, spec.label_noise, num_classes, spec.noise_seed)
    else:
        y_noisy, mask = y_tr.copy(), np.zeros(len(y_tr), dtype=bool)
    return Splits(
        x_train=x_tr, y_train=y_noisy.astype(np.int32), y_train_clean=y_tr.astype(np.int32),
        noise_mask=mask, x_val=x_va, y_val=y_va.astype(np.int32), x_test=x_te,
        y_test=y_te.astype(np.int32), num_classes=num_classes, name=name,
    )


def normalize(method: str, x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Normalise with statistics of the training split only; returns float32 arrays.

    ``per_pixel_mean_global_std``: subtract the per-pixel (and channel) training mean, divide by
    the global training std (the paper's CIFAR preprocessing). ``standardize``: global mean / std.
    ``scale``: divide by the training maximum (uint8 images -> [0, 1]). ``none``: cast only.
    """
    xt = x_train.astype(np.float32)
    if method == "per_pixel_mean_global_std":
        mean = xt.mean(axis=0, keepdims=True)
        std = float(np.std(xt - mean)) or 1.0
        f = lambda a: (a.astype(np.float32) - mean) / std  # noqa: E731
    elif method == "standardize":
        mean, std = float(xt.mean()), float(xt.std()) or 1.0
        f = lambda a: (a.astype(np.float32) - mean) / std  # noqa: E731
    elif method == "scale":
        peak = float(np.abs(xt).max()) or 1.0
        f = lambda a: a.astype(np.float32) / peak  # noqa: E731
    elif method == "none":
        f = lambda a: a.astype(np.float32)  # noqa: E731
    else:
        raise ValueError(f"unknown normalization {method!r}")
    return [f(x_train)] + [f(a) for a in others]
