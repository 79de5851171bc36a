"""Gradient noise: the per-example gradient covariance ``C`` and the paper's theory check.

The paper models SGD as ``θ ← θ − η g_S`` with ``g_S = G + noise`` of covariance ``C/S``, where

    C = (1/N) Σ_i (g_i − G)(g_i − G)ᵀ,   G = (1/N) Σ_i g_i,

``g_i`` the gradient of example ``i``'s loss (plus the regularisation ``sum(model.losses)``, which shifts
every ``g_i`` alike and so only moves ``G``). The ``1/N`` normalisation is the covariance of one example
drawn uniformly with replacement -- exactly the noise of a minibatch of such draws.

* :func:`gradient_covariance_trace` -- ``Tr(C)`` from per-example gradients, vectorised with
  ``tf.vectorized_map`` (in training mode ``GradientTape.jacobian``, both pfor) in chunks, the chunks
  merged with Chan et al.'s pairwise formula (no ``E‖g‖² − ‖G‖²`` cancellation).
* :func:`gradient_noise_scale` -- McCandlish et al. (2018)'s ``B_simple = Tr(C) / ‖G‖²``.
* :class:`CovarianceOperator` -- ``C v`` without per-example gradients: a forward-mode pass gives every
  ``g_i·v`` at once and one backward pass with those as output gradients gives ``Σ g_i (g_i·v)``.
* :func:`theory_check` -- the paper's own test at an end point: ``E[L]`` against ``(η/4S) Tr(H)``,
  ``Tr(C)/Tr(H)`` and the alignment of the top directions of ``C`` and ``H``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Unpack

import numpy as np
import tensorflow as tf

from tfminima.hessian.batches import PlacedBatches
from tfminima.hessian.cache import Template, loss_key, traced
from tfminima.hessian.operator import HessianOperator
from tfminima.hessian.options import DEFAULT_BATCH_SIZE, ProductKeywords, ProductOptions
from tfminima.hessian.products import StatelessLoss, distributed_function, model_state, resolve_loss
from tfminima.hessian.solvers import hutchinson, lanczos, solver_context
from tfminima.hessian.vectors import flatten_tensors, unflatten_vector

__all__ = [
    "CovarianceOperator",
    "CovarianceProducts",
    "GradientNoise",
    "TheoryCheck",
    "covariance_functions",
    "gradient_covariance_trace",
    "gradient_noise_scale",
    "theory_check",
]

_ZERO = tf.UnconnectedGradients.ZERO


class CovarianceProducts:
    """tf.functions for per-example statistics and covariance products, on the model's ``state``
    (:func:`tfminima.hessian.products.model_state`) like :class:`tfminima.hessian.products.HessianProducts`,
    so shareable alike.

    ``stats(state, x, y)`` gives each replica's count, mean and centred sum of squares of its per-example
    gradients (not reduced); ``cov(state, x, y, vec)`` ``Σ_i g_i (g_i·v)`` over the batch.
    """

    def __init__(self, template: Template, options: ProductOptions):
        options = options.resolved()
        self.specs = [tf.TensorSpec(tuple(v.shape), v.dtype) for v in template().trainable_variables]
        self.strategy = options.strategy
        self.training = options.training
        self.loss = StatelessLoss(template, resolve_loss(template(), options.loss), options.training)
        self.stats = distributed_function(self._replica_stats, self.strategy, reduce=False)
        self.cov = distributed_function(self._replica_cov, self.strategy)

    def _example_losses(self, values, non_trainable, x, y):
        per_example, regularization, _ = self.loss.terms((values, non_trainable), x, y)
        return per_example + regularization

    def _per_example_gradients(self, state, x, y):
        values = list(state[0])
        if self.training:  # batch statistics couple the examples: differentiate each loss of the batch
            with tf.GradientTape() as tape:
                tape.watch(values)
                losses = self._example_losses(values, state[1], x, y)
            return tape.jacobian(losses, values, unconnected_gradients=_ZERO, experimental_use_pfor=True)

        # In inference mode examples do not interact, so a vectorised one-example gradient gives the
        # same numbers as the Jacobian of the batch's losses -- ~13x faster on the quickstart MLP.
        def one(example):
            xi, yi = example
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss = self._example_losses(values, state[1], xi[None], yi[None])[0]
            return tape.gradient(loss, values, unconnected_gradients=_ZERO)

        return tf.vectorized_map(one, (x, y))

    def _replica_stats(self, state, x, y):
        # Count, mean and centred sum of squares of this replica's per-example gradients.
        jac = self._per_example_gradients(state, x, y)
        b = tf.shape(x)[0]
        grads = tf.concat([tf.reshape(tf.cast(j, tf.float64), [b, -1]) for j in jac], axis=1)
        count = tf.cast(b, tf.float64)
        mean = tf.reduce_sum(grads, axis=0) / tf.maximum(count, 1.0)
        return count, mean, tf.reduce_sum(tf.square(grads - mean))

    def _replica_cov(self, state, x, y, vec):
        # Σ_i g_i (g_i·v) over this replica's examples.
        values = list(state[0])
        with tf.GradientTape() as tape:
            tape.watch(values)
            with tf.autodiff.ForwardAccumulator(values, unflatten_vector(vec, self.specs)) as acc:
                losses = self._example_losses(values, state[1], x, y)
        directional = acc.jvp(losses, unconnected_gradients=_ZERO)
        out = tape.gradient(losses, values, output_gradients=directional, unconnected_gradients=_ZERO)
        return flatten_tensors(out)


def covariance_functions(model, options: ProductOptions) -> CovarianceProducts:
    """The cached :class:`CovarianceProducts` for this model and options (``loss``, ``training``,
    ``strategy``, ``architecture`` matter), memoised like the Hessian's (:mod:`tfminima.hessian.cache`)."""
    opts = options.resolved()
    key = ("noise", loss_key(model, opts.loss), opts.training, opts.strategy)
    return traced(model, key, lambda template: CovarianceProducts(template, opts), opts.architecture)


def _auto_chunk(n_params: int) -> int:
    # The chunk's Jacobian is chunk × n_params floats: keep it near 2^24 entries (~128 MB in float64).
    return int(max(1, min(256, 2**24 // max(n_params, 1))))


@dataclasses.dataclass
class GradientNoise:
    """Per-example gradient statistics over ``num_examples`` examples.

    ``trace_cov`` is ``Tr(C)`` (``1/N`` normalisation), ``grad_norm_sq`` ``‖G‖²`` of the mean gradient,
    ``mean_sq_norm`` ``(1/N) Σ ‖g_i‖²`` (= ``trace_cov + grad_norm_sq``).
    """

    trace_cov: float
    grad_norm_sq: float
    mean_sq_norm: float
    num_examples: int
    seconds: float

    @property
    def b_simple(self) -> float:
        """McCandlish et al.'s simple noise scale ``Tr(C)/‖G‖²`` (a critical batch size estimate)."""
        return self.trace_cov / self.grad_norm_sq if self.grad_norm_sq > 0 else float("inf")


def _per_example_moments(model, data, options: ProductOptions, chunk_size: int | None):
    """``(N, G, M2)`` with ``M2 = Σ ‖g_i − G‖²``, merging chunk/replica moments pairwise (Chan et al.)."""
    fns = covariance_functions(model, options)
    n_params = sum(int(np.prod(v.shape)) for v in fns.specs)
    state = model_state(model)
    batches = PlacedBatches(data, chunk_size or _auto_chunk(n_params), fns.strategy)
    count, mean, m2 = 0.0, np.zeros(n_params), 0.0
    for x, y in batches:
        parts = [fns.strategy.experimental_local_results(t) for t in fns.stats(state, x, y)]
        for c, mu, q in zip(*parts):
            c, mu, q = float(c.numpy()), mu.numpy(), float(q.numpy())
            if c == 0:
                continue
            total = count + c
            diff = mu - mean
            m2 = m2 + q + float(diff @ diff) * count * c / total
            mean = mean + diff * (c / total)
            count = total
    return int(count), mean, m2


def _gradient_noise(model, data, options: ProductOptions, chunk_size: int | None) -> GradientNoise:
    start = time.perf_counter()
    with solver_context():
        n, mean, m2 = _per_example_moments(model, data, options, chunk_size)
    g2 = float(mean @ mean)
    return GradientNoise(
        trace_cov=m2 / n,
        grad_norm_sq=g2,
        mean_sq_norm=m2 / n + g2,
        num_examples=n,
        seconds=time.perf_counter() - start,
    )


def gradient_covariance_trace(
    model,
    data,
    *,
    loss=None,
    chunk_size: int | None = None,
    training: bool = False,
    strategy=None,
    architecture=None,
) -> GradientNoise:
    """``Tr(C)`` of the per-example gradients over ``data`` (and ``‖G‖²``, hence :attr:`GradientNoise.b_simple`).

    Per-example gradients come ``chunk_size`` examples at a time (default: as many as keep the chunk's
    Jacobian near 2^24 numbers) and are never stored beyond one chunk. ``loss``, ``training``,
    ``strategy``, ``architecture``: as in :class:`tfminima.hessian.options.ProductOptions`.
    """
    options = ProductOptions(loss=loss, training=training, strategy=strategy, architecture=architecture)
    return _gradient_noise(model, data, options, chunk_size)


def gradient_noise_scale(model, data, **kwargs) -> float:
    """``B_simple = Tr(C) / ‖G‖²`` (McCandlish et al. 2018); keyword arguments as :func:`gradient_covariance_trace`."""
    return gradient_covariance_trace(model, data, **kwargs).b_simple


class CovarianceOperator:
    """``C`` of the per-example gradients over fixed data, as ``matvec(v) -> C v`` on flat float64 vectors.

    ``C v = (1/N) Σ g_i (g_i·v) − G (G·v)``: one forward-mode and one backward pass a product, about the
    cost of a Hessian-vector product, no per-example gradients stored. Counts products in ``count``.
    Options as :class:`tfminima.hessian.HessianOperator`'s, whose operator on the same data it carries
    (``hessian``, for ``G`` and the Hessian side of :func:`theory_check`).
    """

    def __init__(self, model, data, *, options: ProductOptions | None = None, **changes: Unpack[ProductKeywords]):
        self.hessian = HessianOperator(model, data, options=options, **changes)
        self.model = model
        self.fns = covariance_functions(model, self.hessian.options)
        self.n = self.hessian.n
        self.count = 0
        self._gradient = None

    @property
    def gradient(self) -> np.ndarray:
        """The mean gradient ``G`` (computed once)."""
        if self._gradient is None:
            _, self._gradient = self.hessian.loss_and_gradient()
        return self._gradient

    def matvec(self, v) -> np.ndarray:
        v = np.asarray(v, np.float64).reshape(-1)
        vec = tf.constant(v)
        batches = self.hessian.batches
        total, state = None, model_state(self.model)
        for x, y in batches:
            part = self.fns.cov(state, x, y, vec)
            total = part if total is None else total + part
        self.count += 1
        g = self.gradient
        return total.numpy() / batches.num_examples - g * float(g @ v)

    __call__ = matvec


@dataclasses.dataclass
class TheoryCheck:
    """The paper's predictions tested at one point θ (its end point, in the paper).

    Theory (§1): near a minimum with ``C ≈ H`` the stationary loss is ``E[L] = (η/4S) Tr(H)``; with
    momentum β we use the usual effective rate ``η/(1−β)``.

    ``loss`` mean loss L(θ) on the examples; ``predicted_loss`` ``(η_eff/4S)·Tr(H)``; ``loss_ratio``
    ``loss / predicted_loss`` (1 when the theory holds). ``trace_h ± trace_h_stderr`` Hutchinson's
    ``Tr(H)``; ``trace_c`` ``Tr(C)``; ``trace_ratio`` ``Tr(C)/Tr(H)`` (1 when ``C = H``).
    ``lambda_max_h``/``lambda_max_c`` top eigenvalues; ``top_cosine`` ``|cos|`` between their eigenvectors;
    ``rayleigh_alignment`` ``v_Hᵀ C v_H / λ_max(C)`` (1 when H's sharpest direction is C's noisiest).
    ``grad_norm_sq`` ``‖G‖²`` and ``b_simple`` ``Tr(C)/‖G‖²``. ``hvps``/``cov_products`` the products used.
    ``hvp_mode`` how the Hessian's products were computed (see :class:`tfminima.hessian.ProductOptions`).
    """

    lr: float
    batch_size: int
    momentum: float
    noise_scale: float
    loss: float
    predicted_loss: float
    loss_ratio: float
    trace_h: float
    trace_h_stderr: float
    trace_c: float
    trace_ratio: float
    lambda_max_h: float
    lambda_max_c: float
    top_cosine: float
    rayleigh_alignment: float
    grad_norm_sq: float
    b_simple: float
    num_examples: int
    hvps: int
    cov_products: int
    seconds: float
    hvp_mode: str = "recomputed"
    top_vector_h: np.ndarray = dataclasses.field(default=None, repr=False)
    top_vector_c: np.ndarray = dataclasses.field(default=None, repr=False)

    def as_dict(self) -> dict:
        """The numeric fields (no eigenvectors, no ``hvp_mode``), e.g. for a metrics log."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("top_vector_h", "top_vector_c", "hvp_mode")
        }


def theory_check(
    model,
    data,
    lr: float,
    batch_size: int,
    *,
    momentum: float = 0.0,
    loss=None,
    trace_probes: int = 100,
    trace_tol: float | None = None,
    tol: float = 1e-3,
    seed: int = 0,
    init_h=None,
    init_c=None,
    chunk_size: int | None = None,
    training: bool = False,
    strategy=None,
    eval_batch_size: int = DEFAULT_BATCH_SIZE,
    mode: str = "forward",
    architecture=None,
    hvp_mode: str = "auto",
) -> TheoryCheck:
    """Test the paper's stationary-state predictions at the model's current weights on ``data``.

    ``lr``/``batch_size``/``momentum`` are the η, S, β SGD ran with. ``Tr(H)`` by Hutchinson
    (``trace_probes`` products, optional ``trace_tol``), ``Tr(C)`` exactly from per-example gradients,
    the top eigenpairs of H and C by Lanczos (``tol``; ``init_h``/``init_c`` warm starts).
    ``mode`` is the recomputed Hessian products' ``mode`` (``"reverse"`` is cheaper to trace);
    ``hvp_mode`` (``"auto"``: retained where it fits), ``loss``, ``training``, ``strategy``,
    ``architecture`` as in :class:`tfminima.hessian.options.ProductOptions`, ``eval_batch_size`` its
    ``batch_size``. Where retained, the Hutchinson probes go in blocks over one forward pass and the
    Lanczos run for ``H`` is one traced loop.
    """
    if lr <= 0 or batch_size < 1 or not 0 <= momentum < 1:
        raise ValueError(f"need lr > 0, batch_size >= 1, 0 <= momentum < 1; got {lr}, {batch_size}, {momentum}")
    start = time.perf_counter()
    options = ProductOptions(
        loss=loss, training=training, mode=mode, strategy=strategy, batch_size=eval_batch_size,
        architecture=architecture, hvp_mode=hvp_mode,
    )
    cov = CovarianceOperator(model, data, options=options)
    op = cov.hessian
    blocks = {"matmat": op.matmat, "block_size": op.block_size} if op.plan.blocks else {}
    with solver_context():
        loss_value, _ = op.loss_and_gradient()
        tr = hutchinson(op.matvec, op.n, tol=trace_tol, max_probes=trace_probes, seed=seed, **blocks)
        eig_h = lanczos(op.matvec, op.n, 1, tol=tol, seed=seed, init=init_h, runner=op.lanczos_runner())
        eig_c = lanczos(cov.matvec, cov.n, 1, tol=tol, seed=seed + 1, init=init_c)
    noise = _gradient_noise(model, data, op.options, chunk_size)
    v_h, v_c = eig_h.eigenvectors[0], eig_c.eigenvectors[0]
    lambda_c = float(eig_c.eigenvalues[0])
    eta_eff = lr / (1.0 - momentum)
    predicted = eta_eff / (4.0 * batch_size) * tr.value
    return TheoryCheck(
        lr=float(lr),
        batch_size=int(batch_size),
        momentum=float(momentum),
        noise_scale=eta_eff / batch_size,
        loss=loss_value,
        predicted_loss=predicted,
        loss_ratio=loss_value / predicted if predicted != 0 else float("nan"),
        trace_h=tr.value,
        trace_h_stderr=tr.stderr,
        trace_c=noise.trace_cov,
        trace_ratio=noise.trace_cov / tr.value if tr.value != 0 else float("nan"),
        lambda_max_h=float(eig_h.eigenvalues[0]),
        lambda_max_c=lambda_c,
        top_cosine=float(abs(v_h @ v_c)),
        rayleigh_alignment=float(v_h @ cov.matvec(v_h)) / lambda_c if lambda_c > 0 else float("nan"),
        grad_norm_sq=noise.grad_norm_sq,
        b_simple=noise.b_simple,
        num_examples=noise.num_examples,
        hvps=op.hvp_count,
        cov_products=cov.count,
        seconds=time.perf_counter() - start,
        hvp_mode=op.hvp_mode,
        top_vector_h=v_h,
        top_vector_c=v_c,
    )
