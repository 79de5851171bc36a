"""The Hessian of the mean loss over fixed data as an operator: ``matvec(v) -> H v`` on flat float64 vectors.

It places the data once, looks its traced functions up once, and hands the solvers of
:mod:`tfminima.hessian.solvers` a plain function of NumPy vectors.
"""

from __future__ import annotations

from typing import Unpack

import numpy as np
import scipy.sparse.linalg
import tensorflow as tf

from tfminima.hessian.batches import PlacedBatches
from tfminima.hessian.options import ProductKeywords, ProductOptions
from tfminima.hessian.products import model_state, traced_functions
from tfminima.hessian.vectors import set_flat_weights

__all__ = ["HessianOperator"]


class HessianOperator:
    """``H`` of the mean loss over fixed data, as ``matvec(v) -> H v`` on flat float64 vectors.

    Build it once and hand :meth:`matvec` to any of the matrix-level solvers; it counts its products in
    ``hvp_count``. Options as :class:`~tfminima.hessian.options.ProductOptions` (``options=``) and/or
    its fields as keywords: ``loss``, ``training``, ``mode`` (``"forward"``, the default, is
    forward-over-backward; ``"reverse"`` double backward; both exact), ``strategy``, ``batch_size``,
    ``jit_compile`` and ``architecture`` (models built alike share one trace). ``data`` may be a
    :class:`~tfminima.hessian.batches.PlacedBatches`, used as it is. Products are taken at the model's
    weights as they are at each call.
    """

    def __init__(self, model, data, *, options: ProductOptions | None = None, **changes: Unpack[ProductKeywords]):
        self.options = ProductOptions.of(options, **changes).resolved()
        self.model = model
        self.training = self.options.training
        self.strategy = self.options.strategy
        self.fns = traced_functions(model, self.options)
        self.variables = list(model.trainable_variables)
        self.n = int(sum(int(np.prod(v.shape)) for v in self.variables))
        if self.n == 0:
            raise ValueError("the model has no trainable variables")
        self.batches = PlacedBatches.of(data, self.options.batch_size, self.strategy)
        self.num_examples = self.batches.num_examples
        self.hvp_count = 0
        self._hvp_calls = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def matvec(self, v) -> np.ndarray:
        """``H v`` for a flat vector ``v`` (float64 result)."""
        vec = tf.constant(np.asarray(v, np.float64).reshape(-1))
        if vec.shape[0] != self.n:
            raise ValueError(f"vector has {vec.shape[0]} entries, the model has {self.n} trainable weights")
        state = model_state(self.model)
        if self._hvp_calls is None:
            # Concrete functions, one a batch: calling them skips tf.function's per-call dispatch,
            # about half the overhead of a product on small models.
            inv_n = self.batches.inv_n
            self._hvp_calls = [
                (self.fns.hvp.get_concrete_function(state, x, y, inv_n, vec), x, y) for x, y in self.batches
            ]
        total = None
        for call, x, y in self._hvp_calls:
            part = call(state, x, y, self.batches.inv_n, vec)
            total = part if total is None else total + part
        self.hvp_count += 1
        return total.numpy()

    __call__ = matvec

    def loss_and_gradient(self) -> tuple[float, np.ndarray]:
        """Mean loss and its flat float64 gradient at the current weights."""
        return self.fns.loss_and_gradient(model_state(self.model), self.batches)

    def evaluate(self) -> tuple[float, float]:
        """Mean loss and accuracy (argmax; NaN for single-output models) at the current weights."""
        return self.fns.evaluate(model_state(self.model), self.batches)

    def finite_difference_matvec(self, v, epsilon: float = 1e-3) -> np.ndarray:
        """``H v ≈ ‖v‖ (∇L(θ+εu) − ∇L(θ−εu)) / 2ε`` with ``u = v/‖v‖``: the paper's v1 Hessian norm.

        Costs two gradients and moves the weights, which are restored exactly afterwards.
        """
        v = np.asarray(v, np.float64).reshape(-1)
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            return np.zeros_like(v)
        u = v / norm
        saved = [w.numpy() for w in self.variables]
        theta = np.concatenate([s.astype(np.float64).ravel() for s in saved])
        try:
            set_flat_weights(self.model, theta + epsilon * u)
            _, g_plus = self.loss_and_gradient()
            set_flat_weights(self.model, theta - epsilon * u)
            _, g_minus = self.loss_and_gradient()
        finally:
            for w, s in zip(self.variables, saved):
                w.assign(s)
        self.hvp_count += 1
        return norm * (g_plus - g_minus) / (2.0 * epsilon)

    def as_linear_operator(self) -> scipy.sparse.linalg.LinearOperator:
        """A SciPy ``LinearOperator`` (for ``eigsh``, ``cg``, ...) that counts into ``hvp_count``."""
        return scipy.sparse.linalg.LinearOperator(
            self.shape, matvec=lambda v: self.matvec(np.ravel(v)), dtype=np.float64
        )
