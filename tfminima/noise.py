"""Gradient noise: the per-example gradient covariance ``C`` and the paper's theory check.

The paper models SGD as ``θ ← θ − η g_S`` with ``g_S = G + noise`` of covariance ``C/S``, where

    C = (1/N) Σ_i (g_i − G)(g_i − G)ᵀ,   G = (1/N) Σ_i g_i,

``g_i`` the gradient of example ``i``'s loss (plus the regularisation ``sum(model.losses)``, which shifts
every ``g_i`` alike and so only moves ``G``). The ``1/N`` normalisation is the covariance of one example
drawn uniformly with replacement -- exactly the noise of a minibatch of such draws.

* :func:`gradient_covariance_trace` -- ``Tr(C)`` and ``‖G‖²`` from per-example gradients, vectorised with
  ``tf.vectorized_map`` (in training mode ``GradientTape.jacobian``, both pfor) in chunks, the chunks
  merged with Chan et al.'s pairwise formula (no ``E‖g‖² − ‖G‖²`` cancellation); estimated without
  bias for the population the examples were drawn from (:class:`GradientNoise`).
* :func:`gradient_noise_scale` -- McCandlish et al. (2018)'s ``B_simple = Tr(C) / ‖G‖²`` from those.
* :class:`CovarianceOperator` -- ``C v`` without per-example gradients: a forward-mode pass gives every
  ``g_i·v`` at once and one backward pass with those as output gradients gives ``Σ g_i (g_i·v)``.
* :func:`theory_check` -- the paper's own test at an end point: ``E[L]`` against ``(η/4S) Tr(H)`` and
  ``(η/4S) Tr(C)``,
  ``Tr(C)/Tr(H)`` and the alignment of the top directions of ``C`` and ``H``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Unpack

import numpy as np
import tensorflow as tf

from tfminima.hessian.batches import PlacedBatches
from tfminima.hessian.cache import Template, loss_key, shareable, traced
from tfminima.hessian.operator import HessianOperator, measuring
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
    return traced(model, key, lambda template: CovarianceProducts(template, opts),
                  shareable(opts.architecture, opts.strategy))


def _auto_chunk(n_params: int) -> int:
    # The chunk's Jacobian is chunk × n_params floats: keep it near 2^24 entries (~128 MB in float64).
    return int(max(1, min(256, 2**24 // max(n_params, 1))))


@dataclasses.dataclass
class GradientNoise:
    """Per-example gradient statistics of ``num_examples`` examples, and what they estimate.

    The examples are a sample of a population of ``population`` examples drawn without replacement
    (``None``: drawn independently, or from an unlimited population; ``population == num_examples``: the
    data are the whole population and nothing is estimated). The mean gradient ``Ĝ`` of a sample is
    noisy, ``E‖Ĝ‖² = ‖G‖² + Tr(C)(1/n − 1/N)·N/(N−1)``, so the raw ``‖Ĝ‖²`` overstates ``‖G‖²`` and the
    raw ``Tr(C)/‖Ĝ‖²`` cannot grow much beyond ``n`` (McCandlish et al. 2018, appendix A). With
    ``s² = Σ‖g_i − Ĝ‖²/(n−1)``, an unbiased estimate of ``Σ‖g_i − G‖²/(N−1)`` over the population:

    * ``grad_norm_sq`` = ``‖Ĝ‖² − s²(1/n − 1/N)``: unbiased for ``‖G‖²`` (``1/N → 0`` when
      ``population`` is None). It is left as it is when it comes out negative (clipping would bias it).
    * ``trace_cov`` = ``s²(N−1)/N`` (``s²`` when None): unbiased for ``Tr(C)`` with the ``1/N``
      normalisation of the module docstring.
    * ``grad_norm_sq_raw`` = ``‖Ĝ‖²`` and ``trace_cov_raw`` = ``Σ‖g_i − Ĝ‖²/n``: the examples' own
      moments (``trace_cov_raw`` is the trace of :class:`CovarianceOperator`'s ``C`` on the same data).
    * ``mean_sq_norm`` = ``(1/n) Σ ‖g_i‖²`` = ``trace_cov + grad_norm_sq`` = ``trace_cov_raw +
      grad_norm_sq_raw``: both splits of the same unbiased ``E‖g‖²``.
    """

    trace_cov: float
    grad_norm_sq: float
    trace_cov_raw: float
    grad_norm_sq_raw: float
    mean_sq_norm: float
    num_examples: int
    population: int | None
    seconds: float

    @classmethod
    def from_moments(
        cls, n: int, mean: np.ndarray, m2: float, population: int | None = None, seconds: float = 0.0
    ) -> GradientNoise:
        """From ``n`` examples' mean gradient and ``m2 = Σ‖g_i − Ĝ‖²``; raises ValueError when nothing
        can be estimated (fewer than 2 examples of a larger population, or more examples than it has)."""
        g2 = float(mean @ mean)
        if population is not None and not 1 <= n <= population:
            raise ValueError(f"{n} examples cannot be a sample of a population of {population}")
        if population == n:  # the whole population: its moments are known exactly
            trace_cov, grad_norm_sq = m2 / n, g2
        elif n < 2:
            raise ValueError("estimating Tr(C) and ‖G‖² of a population needs at least 2 of its examples")
        else:
            s2 = m2 / (n - 1)
            inv_population = 0.0 if population is None else 1.0 / population
            trace_cov = s2 * (1.0 - inv_population)
            grad_norm_sq = g2 - s2 * (1.0 / n - inv_population)
        return cls(
            trace_cov=trace_cov, grad_norm_sq=grad_norm_sq, trace_cov_raw=m2 / n, grad_norm_sq_raw=g2,
            mean_sq_norm=m2 / n + g2, num_examples=int(n), population=population, seconds=seconds,
        )

    @property
    def gradient_resolved(self) -> bool:
        """Whether the unbiased ``‖G‖²`` is positive: the mean gradient stands out of the sample's noise."""
        return self.grad_norm_sq > 0

    @property
    def b_simple(self) -> float:
        """McCandlish et al.'s simple noise scale ``Tr(C)/‖G‖²`` (a critical batch size estimate), from the
        unbiased estimates.

        ``inf`` when :attr:`gradient_resolved` is False: the true ``B_simple`` is then too large for this
        sample to resolve (the sample's gradient noise hides ``G``). ``inf`` orders above every finite
        value, so medians and thresholds over repeated measurements stay meaningful (NaN would not);
        ``metrics.jsonl`` writes it as null, beside ``gradient_resolved = 0``.
        """
        return self.trace_cov / self.grad_norm_sq if self.gradient_resolved else float("inf")

    @property
    def b_simple_raw(self) -> float:
        """``trace_cov_raw / grad_norm_sq_raw``: the biased-low plug-in ratio, kept for comparison."""
        return self.trace_cov_raw / self.grad_norm_sq_raw if self.grad_norm_sq_raw > 0 else float("inf")


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


def _gradient_noise(
    model, data, options: ProductOptions, chunk_size: int | None, population: int | None = None
) -> GradientNoise:
    start = time.perf_counter()
    with solver_context():
        n, mean, m2 = _per_example_moments(model, data, options, chunk_size)
    return GradientNoise.from_moments(n, mean, m2, population, time.perf_counter() - start)


def gradient_covariance_trace(
    model,
    data,
    *,
    population: int | None = None,
    loss=None,
    chunk_size: int | None = None,
    training: bool = False,
    strategy=None,
    architecture=None,
) -> GradientNoise:
    """Unbiased ``Tr(C)`` and ``‖G‖²`` of a population from the per-example gradients of ``data``, a sample
    of it (hence :attr:`GradientNoise.b_simple`), and the sample's own raw moments beside them.

    ``population``: the number of examples ``data`` were drawn from without replacement (e.g. the training
    set's size for a random subset of it; ``len(data)`` when ``data`` is the whole set); None: drawn
    independently from an unlimited population (see :class:`GradientNoise`).
    Per-example gradients come ``chunk_size`` examples at a time (default: as many as keep the chunk's
    Jacobian near 2^24 numbers) and are never stored beyond one chunk. ``loss``, ``training``,
    ``strategy``, ``architecture``: as in :class:`tfminima.hessian.options.ProductOptions`.
    """
    options = ProductOptions(loss=loss, training=training, strategy=strategy, architecture=architecture)
    return _gradient_noise(model, data, options, chunk_size, population)


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
            self.loss_and_gradient()
        return self._gradient

    def loss_and_gradient(self) -> tuple[float, np.ndarray]:
        """The mean loss and gradient ``G`` at the current weights; ``G`` is kept for the products."""
        loss, self._gradient = self.hessian.loss_and_gradient()
        return loss, self._gradient

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

    Theory (§1): near a minimum, SGD's stationary loss above it is ``E[L] = (η/4S)·Tr(C)`` (a quadratic
    loss, gradient noise of covariance ``C/S``); the paper assumes ``C ≈ H`` and writes ``(η/4S)·Tr(H)``.
    With momentum β we use the usual effective rate ``η/(1−β)``.

    ``loss`` the mean loss L(θ) on the examples (one evaluation at θ); ``predicted_loss``
    ``(η_eff/4S)·Tr(H)`` and ``predicted_loss_c`` ``(η_eff/4S)·Tr(C)`` (no ``C = H`` assumption);
    ``loss_ratio``/``loss_ratio_c`` ``loss`` over each (1 when the theory holds). ``trace_h ±
    trace_h_stderr`` Hutchinson's ``Tr(H)``; ``trace_c`` the unbiased ``Tr(C)`` and ``trace_c_raw`` the
    examples' own (see :class:`GradientNoise`); ``trace_ratio`` ``Tr(C)/Tr(H)`` (1 when ``C = H``).
    ``lambda_max_h``/``lambda_max_c`` top eigenvalues (``C`` of the examples, ``1/n``); ``top_cosine``
    ``|cos|`` between their eigenvectors; ``rayleigh_alignment`` ``v_Hᵀ C v_H / λ_max(C)`` (1 when H's
    sharpest direction is C's noisiest). ``grad_norm_sq`` the unbiased ``‖G‖²`` and ``b_simple``
    ``Tr(C)/‖G‖²`` (inf when ``gradient_resolved`` is False), ``grad_norm_sq_raw`` and ``b_simple_raw``
    the sample's plug-in values (biased low); ``population`` what the examples were drawn from.
    ``hvps``/``cov_products`` the products used.
    ``hvp_mode`` how the Hessian's products were computed (see :class:`tfminima.hessian.ProductOptions`).
    """

    lr: float
    batch_size: int
    momentum: float
    noise_scale: float
    loss: float
    predicted_loss: float
    loss_ratio: float
    predicted_loss_c: float
    loss_ratio_c: float
    trace_h: float
    trace_h_stderr: float
    trace_c: float
    trace_c_raw: float
    trace_ratio: float
    lambda_max_h: float
    lambda_max_c: float
    top_cosine: float
    rayleigh_alignment: float
    grad_norm_sq: float
    grad_norm_sq_raw: float
    b_simple: float
    b_simple_raw: float
    gradient_resolved: bool
    num_examples: int
    population: int | None
    hvps: int
    cov_products: int
    seconds: float
    hvp_mode: str = "recomputed"
    top_vector_h: np.ndarray = dataclasses.field(default=None, repr=False)
    top_vector_c: np.ndarray = dataclasses.field(default=None, repr=False)

    def as_dict(self) -> dict:
        """The numeric fields (no eigenvectors, no ``hvp_mode``; ``population`` only when known), e.g. for a metrics log."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("top_vector_h", "top_vector_c", "hvp_mode") and getattr(self, f.name) is not None
        }


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else float("nan")


def theory_check(
    model,
    data,
    lr: float,
    batch_size: int,
    *,
    momentum: float = 0.0,
    population: int | None = None,
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

    ``lr``/``batch_size``/``momentum`` are the η, S, β SGD ran with; ``population`` the size of the set
    ``data`` were drawn from (as in :func:`gradient_covariance_trace`). ``Tr(H)`` by Hutchinson
    (``trace_probes`` products, optional ``trace_tol``), ``Tr(C)`` and ``‖G‖²`` from per-example gradients,
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
    with measuring():  # the Hessian side, as the hessian instruments (Grappler off: see measuring)
        loss_value, _ = cov.loss_and_gradient()
        tr = hutchinson(op.matvec, op.n, tol=trace_tol, max_probes=trace_probes, seed=seed, **blocks)
        eig_h = lanczos(op.matvec, op.n, 1, tol=tol, seed=seed, init=init_h, runner=op.lanczos_runner())
    with solver_context():  # C's products keep Grappler: its rewrites save ~10 % of their CPU time
        eig_c = lanczos(cov.matvec, cov.n, 1, tol=tol, seed=seed + 1, init=init_c)
    noise = _gradient_noise(model, data, op.options, chunk_size, population)
    v_h, v_c = eig_h.eigenvectors[0], eig_c.eigenvectors[0]
    lambda_c = float(eig_c.eigenvalues[0])
    eta_eff = lr / (1.0 - momentum)
    predicted = eta_eff / (4.0 * batch_size) * tr.value
    predicted_c = eta_eff / (4.0 * batch_size) * noise.trace_cov
    return TheoryCheck(
        lr=float(lr),
        batch_size=int(batch_size),
        momentum=float(momentum),
        noise_scale=eta_eff / batch_size,
        loss=loss_value,
        predicted_loss=predicted,
        loss_ratio=_ratio(loss_value, predicted),
        predicted_loss_c=predicted_c,
        loss_ratio_c=_ratio(loss_value, predicted_c),
        trace_h=tr.value,
        trace_h_stderr=tr.stderr,
        trace_c=noise.trace_cov,
        trace_c_raw=noise.trace_cov_raw,
        trace_ratio=_ratio(noise.trace_cov, tr.value),
        lambda_max_h=float(eig_h.eigenvalues[0]),
        lambda_max_c=lambda_c,
        top_cosine=float(abs(v_h @ v_c)),
        rayleigh_alignment=float(v_h @ cov.matvec(v_h)) / lambda_c if lambda_c > 0 else float("nan"),
        grad_norm_sq=noise.grad_norm_sq,
        grad_norm_sq_raw=noise.grad_norm_sq_raw,
        b_simple=noise.b_simple,
        b_simple_raw=noise.b_simple_raw,
        gradient_resolved=noise.gradient_resolved,
        num_examples=noise.num_examples,
        population=noise.population,
        hvps=op.hvp_count,
        cov_products=cov.count,
        seconds=time.perf_counter() - start,
        hvp_mode=op.hvp_mode,
        top_vector_h=v_h,
        top_vector_c=v_c,
    )
