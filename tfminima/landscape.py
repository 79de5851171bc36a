"""Loss-landscape geometry around SGD solutions: interpolation between minima and ε-sharpness.

* :func:`interpolate` -- loss and accuracy along ``(1−α)θ_a + α θ_b`` (Goodfellow et al. 2015; the
  paper's experiment E2 uses α ∈ [−1, 2]).
* :func:`epsilon_sharpness` -- Keskar et al. (2017): the largest relative loss increase inside the box
  ``|δ_i| ≤ ε(|θ_i| + 1)``.
* :func:`evaluate` -- the mean loss and accuracy both use, with the conventions of :mod:`tfminima.hessian`
  (sum of per-example losses over N plus ``sum(model.losses)``, inference mode).

All of them put the model's weights back as they found them.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import scipy.optimize
import tensorflow as tf

from tfminima.hessian.batches import PlacedBatches, as_batches
from tfminima.hessian.operator import HessianOperator
from tfminima.hessian.options import DEFAULT_BATCH_SIZE, ProductOptions
from tfminima.hessian.products import model_state, traced_functions
from tfminima.hessian.solvers import solver_context
from tfminima.hessian.vectors import get_flat_weights, set_flat_weights

__all__ = [
    "InterpolationResult",
    "SharpnessResult",
    "epsilon_sharpness",
    "evaluate",
    "interpolate",
    "recompute_batch_norm",
]




def alpha_grid(points: int = 31, alpha_min: float = -1.0, alpha_max: float = 2.0) -> np.ndarray:
    """``points`` evenly spaced α in [alpha_min, alpha_max], plus α = 0 and α = 1 when the spacing misses them.

    α = 0 and α = 1 are the two minima themselves: a grid without them (11 points in [−1, 2] step by 0.3)
    never shows the loss at either end point, which is what the curve is read against.
    """
    if points < 2:
        raise ValueError(f"an interpolation grid needs at least 2 points, got {points}")
    if not alpha_min < alpha_max:
        raise ValueError(f"alpha_min {alpha_min} must be below alpha_max {alpha_max}")
    grid = np.linspace(alpha_min, alpha_max, points)
    for end in (0.0, 1.0):
        nearest = np.argmin(np.abs(grid - end))
        if abs(grid[nearest] - end) <= 1e-9 * max(1.0, alpha_max - alpha_min):
            grid[nearest] = end  # exactly, not 0.9999999999999998
        else:
            grid = np.sort(np.append(grid, end))
    return np.round(grid, 12)  # −0.1, not −0.10000000000000009, in the results a user reads


DEFAULT_ALPHAS = alpha_grid(31, -1.0, 2.0)  # the paper's E2 range, steps of 0.1 (0 and 1 included)


def evaluate(model, data, *, loss=None, batch_size: int = DEFAULT_BATCH_SIZE, strategy=None):
    """Mean loss and accuracy over ``data`` in inference mode -- what ``model.evaluate`` reports.

    The loss is ``Σ_i ℓ_i / N + sum(model.losses)`` summed in float64; accuracy is the argmax accuracy
    (NaN for single-output models). Returns ``(loss, accuracy)``.
    """
    options = ProductOptions(loss=loss, strategy=strategy, batch_size=batch_size).resolved()
    fns = traced_functions(model, options)
    return fns.evaluate(model_state(model), PlacedBatches.of(data, batch_size, options.strategy))


# --------------------------------------------------------------------------------------------------
# Batch normalisation
# --------------------------------------------------------------------------------------------------


def _batch_norm_layers(model) -> list:
    layers = model._flatten_layers(include_self=False, recursive=True)
    return [
        layer
        for layer in layers
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and layer.built
    ]


def recompute_batch_norm(model, data, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Set every batch-norm layer's moving statistics to the population statistics of its inputs over ``data``.

    Running statistics belong to the weights they were collected with; at an interpolated point they
    describe neither network. We run ``data`` through the model in training mode (each batch normalised
    by its own statistics, as during SGD) with momentum 0, read each layer's batch mean and variance, and
    combine them exactly over all examples: ``μ = Σ n_t μ_t / N``, ``σ² = Σ n_t (σ_t² + μ_t²) / N − μ²``
    (the torch SWA ``update_bn`` idea, without its average-of-variances approximation). Dropout, if
    any, is active during these passes. Returns the number of layers updated.
    """
    return _recompute_from_batches(model, as_batches(data, batch_size))


def _recompute_from_batches(model, batches: list) -> int:
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    if any(layer.renorm for layer in layers):
        raise NotImplementedError("recompute_batch_norm does not support batch renormalisation")
    momenta = [layer.momentum for layer in layers]
    forward = tf.function(lambda x: model(x, training=True), reduce_retracing=True, autograph=False)
    sums = [[0.0, 0.0] for _ in layers]
    count = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # the moving statistics become exactly the batch's
        for x, _ in batches:
            forward(tf.constant(x))
            n = len(x)
            count += n
            for s, layer in zip(sums, layers):
                mean = np.asarray(layer.moving_mean.numpy(), np.float64)
                var = np.asarray(layer.moving_variance.numpy(), np.float64)
                s[0] = s[0] + n * mean
                s[1] = s[1] + n * (var + mean**2)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    for (s_mean, s_square), layer in zip(sums, layers):
        mean = s_mean / count
        var = np.maximum(s_square / count - mean**2, 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
    return len(layers)


# --------------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class InterpolationResult:
    """Loss and accuracy at ``(1−α)θ_a + αθ_b`` for each α; validation arrays are None without ``val_data``."""

    alphas: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    val_loss: np.ndarray | None
    val_accuracy: np.ndarray | None
    bn: str
    seconds: float


def _mix(a: list, b: list, alpha: float) -> list:
    """``(1−α)a + αb`` for floating arrays (exactly ``a`` at α=0 and ``b`` at α=1); others are kept from ``a``."""
    out = []
    for wa, wb in zip(a, b):
        wa, wb = np.asarray(wa), np.asarray(wb)
        if np.issubdtype(wa.dtype, np.floating):
            out.append(((1.0 - alpha) * wa + alpha * wb).astype(wa.dtype))
        else:
            out.append(wa)
    return out


def interpolate(
    model,
    weights_a: list,
    weights_b: list,
    data,
    alphas=DEFAULT_ALPHAS,
    *,
    val_data=None,
    bn: str = "recompute",
    loss=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy=None,
) -> InterpolationResult:
    """Loss and accuracy along the line ``(1−α)θ_a + αθ_b`` on ``data`` (and ``val_data`` if given).

    ``weights_a``/``weights_b`` are lists as from ``model.get_weights()`` (all weights, batch-norm
    statistics included). ``bn="recompute"`` (default) interpolates the trainable weights and then
    recomputes batch-norm statistics on ``data`` at every α (see :func:`recompute_batch_norm`);
    ``bn="interpolate"`` interpolates the running statistics too, which is only meaningful near the end
    points but reproduces each end point's own evaluation exactly at α = 0 and 1. Models without batch
    norm give the same curve either way. The model's weights are restored afterwards.
    """
    if bn not in ("recompute", "interpolate"):
        raise ValueError(f"bn must be 'recompute' or 'interpolate', got {bn!r}")
    if len(weights_a) != len(model.weights) or len(weights_b) != len(model.weights):
        raise ValueError("weights_a and weights_b must be lists as returned by model.get_weights()")
    start = time.perf_counter()
    alphas = np.array(alphas, np.float64)  # a copy: the result never aliases the caller's array
    strategy = strategy or tf.distribute.get_strategy()
    train = PlacedBatches(data, batch_size, strategy)
    val = PlacedBatches(val_data, batch_size, strategy) if val_data is not None else None
    raw_train = as_batches(data, batch_size) if bn == "recompute" else None
    saved = model.get_weights()
    rows = []
    try:
        for alpha in alphas:
            model.set_weights(_mix(weights_a, weights_b, float(alpha)))
            if bn == "recompute":
                _recompute_from_batches(model, raw_train)
            row = evaluate(model, train, loss=loss, strategy=strategy)
            if val is not None:
                row = row + evaluate(model, val, loss=loss, strategy=strategy)
            rows.append(row)
    finally:
        model.set_weights(saved)
    table = np.asarray(rows, np.float64)
    return InterpolationResult(
        alphas=alphas,
        train_loss=table[:, 0],
        train_accuracy=table[:, 1],
        val_loss=table[:, 2] if val is not None else None,
        val_accuracy=table[:, 3] if val is not None else None,
        bn=bn,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------------
# ε-sharpness
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SharpnessResult:
    """Keskar's ε-sharpness ``value = 100 (max_loss − loss) / (1 + loss)`` and what it came from."""

    value: float
    loss: float
    max_loss: float
    epsilon: float
    steps: int
    gradient_count: int
    method: str
    seconds: float


def epsilon_sharpness(
    model,
    data,
    *,
    epsilon: float = 1e-3,
    steps: int = 20,
    lr: float = 0.25,
    seed: int = 0,
    method: str = "pgd",
    random_start: bool = False,
    loss=None,
    training: bool = False,
    strategy=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> SharpnessResult:
    """ε-sharpness (Keskar et al. 2017): ``100 · (max_{δ∈C_ε} L(θ+δ) − L(θ)) / (1 + L(θ))``.

    ``C_ε = {δ : |δ_i| ≤ ε(|θ_i| + 1)}`` over the trainable weights. ``method="pgd"`` (default) is
    projected sign-gradient ascent: ``δ ← clip(δ + lr · ε(|θ|+1) · sign ∇L(θ+δ))``, so ``lr`` is a fraction
    of the box half-width and the method does not depend on the loss' scale; ``steps`` ascent steps.
    ``method="lbfgsb"`` is Keskar's own choice, SciPy's L-BFGS-B with the box as bounds and ``steps``
    iterations. ``random_start`` starts from a uniform point of the box drawn with ``seed`` (else δ = 0).
    The maximum is over every point evaluated, δ = 0 included, so the value is never negative.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    if method not in ("pgd", "lbfgsb"):
        raise ValueError(f"method must be 'pgd' or 'lbfgsb', got {method!r}")
    start = time.perf_counter()
    op = HessianOperator(model, data, loss=loss, training=training, strategy=strategy, batch_size=batch_size)
    saved = [v.numpy() for v in op.variables]
    theta = get_flat_weights(model)
    box = epsilon * (np.abs(theta) + 1.0)
    calls = [0]

    def loss_grad(delta):
        set_flat_weights(model, theta + delta)
        calls[0] += 1
        return op.loss_and_gradient()

    with solver_context():
        try:
            base, _ = op.loss_and_gradient()
            best = base
            rng = np.random.default_rng(seed)
            delta = rng.uniform(-box, box) if random_start else np.zeros_like(theta)
            if method == "pgd":
                for step in range(steps + 1):
                    value, grad = loss_grad(delta)
                    best = max(best, value)
                    if step < steps:
                        delta = np.clip(delta + lr * box * np.sign(grad), -box, box)
            else:

                def negative(d):
                    nonlocal best
                    value, grad = loss_grad(d)
                    best = max(best, value)
                    return -value, -grad

                scipy.optimize.minimize(
                    negative,
                    delta,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=scipy.optimize.Bounds(-box, box),
                    options={"maxiter": steps},
                )
        finally:
            for v, s in zip(op.variables, saved):
                v.assign(s)
    return SharpnessResult(
        value=100.0 * (best - base) / (1.0 + base),
        loss=base,
        max_loss=best,
        epsilon=float(epsilon),
        steps=int(steps),
        gradient_count=calls[0] + 1,
        method=method,
        seconds=time.perf_counter() - start,
    )
