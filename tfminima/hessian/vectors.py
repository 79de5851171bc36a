"""The one vector layout of the Hessian tools: flat float64 over ``model.trainable_variables``.

Each variable is flattened C-style, in the order of ``trainable_variables``; products are computed in
the model's own dtype and returned in this layout as float64.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["flatten_tensors", "flatten_vector", "get_flat_weights", "set_flat_weights", "unflatten_vector"]


def flatten_tensors(tensors) -> tf.Tensor:
    """Tensors shaped like the variables (gradients, products) as one flat float64 tensor."""
    return tf.concat([tf.reshape(tf.cast(t, tf.float64), [-1]) for t in tensors], axis=0)


def unflatten_vector(vec, variables) -> list:
    """A flat vector cut into tensors shaped like ``variables`` (or their ``TensorSpec``) in their dtypes."""
    sizes = [int(np.prod(v.shape)) for v in variables]
    parts = tf.split(vec, sizes) if len(sizes) > 1 else [vec]
    return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, variables)]


def flatten_vector(vector, variables) -> np.ndarray:
    """A flat float64 array from a flat array-like or a list of arrays shaped like ``variables``."""
    if isinstance(vector, (list, tuple)):
        if len(vector) != len(variables):
            raise ValueError(f"got {len(vector)} tensors for {len(variables)} trainable variables")
        return np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in vector])
    return np.asarray(vector, np.float64).reshape(-1)


def get_flat_weights(model) -> np.ndarray:
    """Trainable weights as one flat float64 vector (the layout every vector here uses)."""
    return np.concatenate([np.ravel(np.asarray(v.numpy(), np.float64)) for v in model.trainable_variables])


def set_flat_weights(model, flat: np.ndarray) -> None:
    """Assign a flat vector (layout of :func:`get_flat_weights`) to the trainable weights."""
    flat = np.asarray(flat, np.float64)
    offset = 0
    for v in model.trainable_variables:
        size = int(np.prod(v.shape))
        v.assign(flat[offset : offset + size].reshape(v.shape).astype(v.dtype))
        offset += size
    if offset != flat.size:
        raise ValueError(f"vector has {flat.size} entries, the model has {offset} trainable weights")
