"""The Hessian of the mean loss over fixed data as an operator: ``matvec(v) -> H v`` on flat float64 vectors.

It places the data once, looks its traced functions up once, and hands the solvers of
:mod:`tfminima.hessian.solvers` plain functions of NumPy vectors: ``matvec`` (one product, recomputed),
``matmat`` (a block of products over one retained forward pass and first gradient) and
``lanczos_runner`` (a whole Lanczos run in one traced loop), with the retained/recomputed choice made
once from the memory budget (:mod:`tfminima.hessian.memory`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Unpack

import numpy as np
import scipy.sparse.linalg
import tensorflow as tf

from tfminima.hessian import products
from tfminima.hessian.batches import PlacedBatches
from tfminima.hessian.krylov import Runner
from tfminima.hessian.memory import plan_block, retained_bytes
from tfminima.hessian.options import ProductKeywords, ProductOptions
from tfminima.hessian.products import model_state, traced_functions
from tfminima.hessian.solvers import solver_context
from tfminima.hessian.vectors import set_flat_weights

__all__ = ["HessianOperator", "ProductPlan", "measuring"]


@contextlib.contextmanager
def measuring():
    """What a measurement runs inside: NumPy's BLAS on one thread between products
    (:func:`~tfminima.hessian.solvers.solver_context`) and its products' functions instantiated without
    Grappler (:func:`~tfminima.hessian.products.without_grappler`: a training run instantiates them
    again, and Grappler was most of that). Entered once a measurement, not once a product (a toggle
    costs ~0.2 ms)."""
    with solver_context(), products.without_grappler():
        yield


@dataclasses.dataclass(frozen=True)
class ProductPlan:
    """How an operator computes its products: ``blocks`` retained over ``batches`` in blocks of
    ``block_size`` (else one recomputed product at a time), ``lanczos`` retained in one traced loop over
    ``batches`` (then a single batch), ``kept_bytes`` the estimate of what a retained call keeps."""

    blocks: bool
    lanczos: bool
    batches: PlacedBatches
    block_size: int
    kept_bytes: int


class HessianOperator:
    """``H`` of the mean loss over fixed data, as ``matvec(v) -> H v`` on flat float64 vectors.

    Build it once and hand :meth:`matvec` to any of the matrix-level solvers; it counts its products in
    ``hvp_count``. Options as :class:`~tfminima.hessian.options.ProductOptions` (``options=``) and/or
    its fields as keywords: ``loss``, ``training``, ``mode`` (``"forward"``, the default, is
    forward-over-backward; ``"reverse"`` double backward; both exact), ``strategy``, ``batch_size``,
    ``jit_compile``, ``architecture`` (models built alike share one trace), ``hvp_mode`` and
    ``memory_budget``. ``data`` may be a :class:`~tfminima.hessian.batches.PlacedBatches`, used as it
    is. Products are taken at the model's weights as they are at each call.

    :attr:`plan` (made on first use) says what is retained: with ``hvp_mode="auto"``, all examples as one
    batch if what that keeps fits in ``memory_budget`` (the blocks and a whole Lanczos run then cost one
    forward pass each), else each batch for a block if one batch fits, else nothing. ``"retained"``
    retains all examples whatever the budget, ``"recomputed"`` nothing. In training mode the batches
    are never merged (batch statistics tie the examples of a batch), so Lanczos then recomputes unless
    the data are one batch.
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
        self._block_calls = None
        self._plan: ProductPlan | None = None

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

    @property
    def plan(self) -> ProductPlan:
        """What is retained, decided on first use (a forward pass is traced to measure its activations)."""
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    def _make_plan(self) -> ProductPlan:
        mode, budget = self.options.hvp_mode, self.options.memory_budget
        if mode == "recomputed":
            return ProductPlan(False, False, self.batches, 1, 0)
        state = model_state(self.model)
        if not self.training or len(self.batches) == 1:
            whole = self.batches.merged()
            kept = retained_bytes(self.fns.forward_bytes(state, *whole.items[0]))
            if mode == "retained" or kept <= budget:
                return ProductPlan(True, True, whole, plan_block(budget, kept, self.n), kept)
        kept = retained_bytes(self.fns.forward_bytes(state, *self.batches.items[0]))  # the first is the largest
        if mode == "retained" or kept <= budget:
            return ProductPlan(True, False, self.batches, plan_block(budget, kept, self.n), kept)
        return ProductPlan(False, False, self.batches, 1, kept)

    @property
    def hvp_mode(self) -> str:
        """``"retained"`` if blocks of products share a forward pass and first gradient, else ``"recomputed"``."""
        return "retained" if self.plan.blocks else "recomputed"

    @property
    def lanczos_mode(self) -> str:
        """``"retained"`` if a Lanczos run is one traced loop over one forward pass, else ``"recomputed"``."""
        return "retained" if self.plan.lanczos else "recomputed"

    @property
    def along_gradient_mode(self) -> str:
        """``"retained"`` if :meth:`curvature_along_gradient` is one call over one forward pass (the data
        retained as one batch), else ``"recomputed"``."""
        return "retained" if self.plan.blocks and len(self.plan.batches) == 1 else "recomputed"

    @property
    def block_size(self) -> int:
        """Products a block: what the memory budget allows (1 when products are recomputed)."""
        return self.plan.block_size

    def matmat(self, vectors) -> np.ndarray:
        """``H V`` for the rows of ``vectors`` (float64, ``(b, n)``): retained, one forward pass and first
        gradient a batch for the whole block, or one recomputed product a row (same numbers)."""
        vectors = np.asarray(vectors, np.float64).reshape(-1, self.n)
        if len(vectors) == 0:
            return vectors.copy()
        if not self.plan.blocks:
            return np.stack([self.matvec(v) for v in vectors])
        state, block = model_state(self.model), tf.constant(vectors)
        batches, retained = self.plan.batches, self.fns.retained
        if self._block_calls is None:
            self._block_calls = [(retained.concrete(state, x, y, batches.inv_n, self.n), x, y) for x, y in batches]
        total = None
        for start in range(0, len(vectors), self.block_size):
            part = block[start : start + self.block_size]
            rows = None
            for call, x, y in self._block_calls:
                out = retained.block(call, state, x, y, batches.inv_n, part)
                rows = out if rows is None else rows + out
            total = rows if total is None else tf.concat([total, rows], 0)
        self.hvp_count += len(vectors)
        return total.numpy()

    def lanczos_runner(self) -> Runner | None:
        """The runner that makes a whole Lanczos run one traced loop (None when Lanczos recomputes)."""
        if not self.plan.lanczos:
            return None
        (x, y), batches = self.plan.batches.items[0], self.plan.batches

        def count(products: int) -> None:
            self.hvp_count += products

        return self.fns.retained.runner(
            lambda: model_state(self.model), x, y, batches.inv_n, self.n, on_products=count
        )

    def curvature_along_gradient(self) -> tuple[float, float]:
        """``(gᵀ H g, ‖g‖²)`` for the gradient ``g`` of the mean loss at the current weights: one
        retained call (one forward pass and first gradient for both) when the data are retained as one
        batch, else a gradient and a recomputed product. Counts one product."""
        if self.along_gradient_mode == "retained":
            (x, y), batches = self.plan.batches.items[0], self.plan.batches
            norm_sq, curvature = self.fns.retained.along_gradient(model_state(self.model), x, y, batches.inv_n)
            self.hvp_count += 1
            return float(curvature), float(norm_sq)
        _, g = self.loss_and_gradient()
        return float(g @ self.matvec(g)), float(g @ g)

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
