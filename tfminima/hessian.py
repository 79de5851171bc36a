"""Hessian instruments: Hessian-vector products and the spectral estimators built on them.

Everything here measures the Hessian ``H`` of the **mean loss over a fixed set of examples**::

    L(θ) = (1/N) Σ_i ℓ(f_θ(x_i), y_i)  +  R(θ)

where ``ℓ`` is the per-example loss (the model's compiled loss if it has one, else sparse categorical
cross-entropy from logits), the sum runs over all ``N`` examples however they are batched (a short last
batch weighs by its size, never as a full batch), and ``R`` is ``sum(model.losses)`` -- the weight
regularisation penalties -- added once. The model runs in inference mode by default (``training=False``:
batch-norm running statistics, no dropout), the convention of the paper's follow-up code and of PyHessian.
Variables the loss does not depend on get a zero gradient and zero Hessian rows instead of an error.

Vectors are flat ``float64`` NumPy arrays over ``model.trainable_variables`` in their order (each
variable flattened C-style); the products are computed in the model's own dtype and returned as float64.

Two layers:

* a **model layer**: :func:`hvp`, :func:`top_eigenvalues`, :func:`trace`, :func:`density`,
  :func:`frobenius_norm`, all built on :class:`HessianOperator`, which batches and places the data once
  (for a ``tf.distribute`` strategy too) and calls a ``tf.function`` traced once per model, loss and data
  shape, with the vector and the weights as arguments (``stateless_call``), so models built alike can
  share one trace (``architecture=``);
* a **matrix layer** that only needs ``matvec(v) -> H v``: :func:`lanczos`, :func:`power_iteration`,
  :func:`arpack`, :func:`hutchinson`, :func:`hutch_plus_plus`, :func:`slq`, :func:`frobenius_estimate`.
  These are tested on plain matrices with known spectra.

Example::

    res = top_eigenvalues(model, (x, y), k=2)            # Lanczos, tol 1e-3
    res.eigenvalues, res.residuals, res.hvp_count
    tr = trace(model, (x, y), max_hvps=100)              # Hutchinson: tr.value ± tr.stderr
    dens = density(model, (x, y)); plot_density(dens)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import tensorflow as tf

__all__ = [
    "DensityResult",
    "EigenResult",
    "FrobeniusResult",
    "HessianOperator",
    "TraceResult",
    "arpack",
    "density",
    "density_curve",
    "frobenius_estimate",
    "frobenius_norm",
    "get_flat_weights",
    "hutch_plus_plus",
    "hutchinson",
    "hvp",
    "lanczos",
    "lanczos_tridiagonal",
    "plot_density",
    "power_iteration",
    "resolve_loss",
    "set_flat_weights",
    "slq",
    "top_eigenvalues",
    "trace",
]

DEFAULT_BATCH_SIZE = 1024
_EPS23 = np.finfo(np.float64).eps ** (2.0 / 3.0)  # ARPACK's absolute floor for the relative test

Matvec = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------------
# Loss and data plumbing (also used by landscape.py and noise.py)
# --------------------------------------------------------------------------------------------------


def _sparse_ce_from_logits(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


def resolve_loss(model, loss=None) -> Callable:
    """Return a per-example loss ``(y_true, y_pred) -> (batch,)``.

    ``loss`` may be a callable returning per-example losses, a Keras ``Loss`` object (its unreduced
    ``call`` is used), or a Keras loss name. ``None`` takes the model's compiled loss and falls back to
    sparse categorical cross-entropy from logits, the library's convention for classifiers.
    """
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            return _sparse_ce_from_logits
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if isinstance(loss, (list, tuple, dict)):
        raise TypeError("the Hessian tools need a single-output model with one loss")
    if not callable(loss):
        raise TypeError(f"loss must be callable, a keras Loss or a loss name, got {loss!r}")
    return loss


def _per_example_loss(loss_fn: Callable, y, y_pred):
    """Per-example loss vector; float labels are cast to the prediction dtype."""
    if y.dtype.is_floating and y.dtype != y_pred.dtype:
        y = tf.cast(y, y_pred.dtype)
    values = tf.convert_to_tensor(loss_fn(y, y_pred))
    if values.shape.rank == 0:
        raise ValueError("loss must return one value per example, not a reduced scalar")
    if values.shape.rank > 1:  # e.g. per-timestep losses: an example's loss is their mean
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values


def _regularization(losses, dtype):
    """``R = sum(losses)``: the model's regularisation penalties, as ``stateless_call`` returns them."""
    if not losses:
        return tf.constant(0.0, dtype)
    return tf.cast(tf.add_n([tf.cast(l, dtype) for l in losses]), dtype)


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

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)


def model_state(model) -> tuple[list, list]:
    """The values of the model's trainable and non-trainable variables, as ``stateless_call`` takes them."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


def _stateless_forward(template, state, x, training):
    """``template``'s outputs and ``sum(losses)`` at the variable values ``state`` (no variable touched)."""
    trainable, non_trainable = state
    pred, _, losses = template.stateless_call(list(trainable), list(non_trainable), x, training=training,
                                              return_losses=True)
    return pred, losses


def _flat64(tensors):
    return tf.concat([tf.reshape(tf.cast(t, tf.float64), [-1]) for t in tensors], axis=0)


def _unflatten(vec, variables):
    sizes = [int(np.prod(v.shape)) for v in variables]
    parts = tf.split(vec, sizes) if len(sizes) > 1 else [vec]
    return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, variables)]


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


@contextlib.contextmanager
def solver_context():
    """What every model-level solver runs inside: NumPy's BLAS on one thread.

    Between products the solvers do small vector operations in NumPy; OpenBLAS threads then spin-wait
    for more work and take the cores TensorFlow needs for the next product (measured on 2 cores: each
    product ~70 % slower). TensorFlow does the heavy work, so NumPy's BLAS gets one thread meanwhile.
    """
    with _single_threaded_blas():
        yield


@contextlib.contextmanager
def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional nicety: without it only speed suffers
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------------------------------
# Traced functions, cached per model
# --------------------------------------------------------------------------------------------------


class _Traced:
    """The tf.functions for one (model or architecture, loss, training, mode, strategy) combination.

    Each takes the model's ``state`` (:func:`model_state`), one placed batch and ``inv_n = 1/N`` and
    returns that batch's contribution to the full-data quantity, reduced over replicas; callers sum over
    batches. The model runs through ``stateless_call`` at the values passed in, so a trace holds no
    variable: every model of one architecture can share it (see :func:`traced_functions`).
    ``template()`` returns the model whose code is traced.
    """

    def __init__(self, template: Callable[[], Any], loss_fn, training: bool, mode: str, strategy,
                 jit_compile: bool):
        self.specs = [tf.TensorSpec(tuple(v.shape), v.dtype) for v in template().trainable_variables]
        self.strategy = strategy
        specs = self.specs

        def batch_loss(state, x, y, inv_n):
            # This replica's share of L: its examples' losses over the global N, plus R·n_local/N.
            pred, losses = _stateless_forward(template(), state, x, training)
            per_example = _per_example_loss(loss_fn, y, pred)
            dtype = per_example.dtype
            scale = tf.cast(inv_n, dtype)
            n_local = tf.cast(tf.shape(per_example)[0], dtype)
            return (tf.reduce_sum(per_example) + n_local * _regularization(losses, dtype)) * scale, pred

        def replica_grad(state, x, y, inv_n):
            values = list(state[0])
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss, _ = batch_loss((values, state[1]), x, y, inv_n)
            grads = tape.gradient(loss, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return tf.cast(loss, tf.float64), _flat64(grads)

        def replica_hvp_forward(state, x, y, inv_n, vec):
            values = list(state[0])
            tangents = _unflatten(vec, specs)
            with tf.autodiff.ForwardAccumulator(values, tangents) as acc:
                with tf.GradientTape() as tape:
                    tape.watch(values)
                    loss, _ = batch_loss((values, state[1]), x, y, inv_n)
                grads = tape.gradient(loss, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return _flat64(acc.jvp(grads, unconnected_gradients=tf.UnconnectedGradients.ZERO))

        def replica_hvp_reverse(state, x, y, inv_n, vec):
            values = list(state[0])
            tangents = _unflatten(vec, specs)
            with tf.GradientTape() as outer:
                outer.watch(values)
                with tf.GradientTape() as inner:
                    inner.watch(values)
                    loss, _ = batch_loss((values, state[1]), x, y, inv_n)
                grads = inner.gradient(loss, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                gv = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, tangents)])
            return _flat64(outer.gradient(gv, values, unconnected_gradients=tf.UnconnectedGradients.ZERO))

        def replica_eval(state, x, y, inv_n):
            loss, pred = batch_loss(state, x, y, inv_n)
            return tf.cast(loss, tf.float64), _correct(y, pred)

        replica_hvp = {"forward": replica_hvp_forward, "reverse": replica_hvp_reverse}[mode]

        def distributed(fn):
            def run(*args):
                per_replica = strategy.run(fn, args=args)
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            # No AutoGraph (Keras' fit does not use it either): it made tracing the double-backward
            # HVP 8x slower (2.4 s against 0.3 s on the quickstart MLP), paid once per trace.
            return tf.function(run, reduce_retracing=True, jit_compile=jit_compile or None, autograph=False)

        self.hvp = distributed(replica_hvp)
        self.grad = distributed(replica_grad)
        self.eval = distributed(replica_eval)


def _correct(y, pred):
    """Number of correctly classified examples (argmax); NaN for single-output models."""
    if pred.shape.rank is None or pred.shape[-1] is None or pred.shape[-1] < 2:
        return tf.constant(np.nan, tf.float64)
    predicted = tf.argmax(pred, axis=-1)
    if y.shape.rank == pred.shape.rank and y.shape[-1] == pred.shape[-1]:  # one-hot labels
        labels = tf.argmax(y, axis=-1)
    else:
        labels = tf.cast(tf.reshape(y, tf.shape(predicted)), predicted.dtype)
    return tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float64))


_CACHE: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()
_SHARED: collections.OrderedDict[Any, Any] = collections.OrderedDict()
SHARED_TRACES = 4  # architectures whose traces (and one template model each) are kept


def traced_functions(model, loss=None, *, training=False, mode="forward", strategy=None, jit_compile=False,
                     architecture=None):
    """The cached :class:`_Traced` functions for this model and loss (created and traced on first use).

    ``architecture``: a hashable key that the caller guarantees names how the model was built (layers,
    input shape, dtype policy; not its weights). Models with the same key share one trace -- tracing a
    Hessian-vector product costs about as much as ~50 products on a small model, and a sweep builds one
    model a run. ``None`` gives each model its own trace.
    """
    if mode not in ("forward", "reverse"):
        raise ValueError(f"mode must be 'forward' or 'reverse', got {mode!r}")
    strategy = strategy or tf.distribute.get_strategy()
    key = ("hessian", loss_key(model, loss), bool(training), mode, strategy, bool(jit_compile))

    def make(template: Callable[[], Any]):
        return _Traced(template, resolve_loss(template(), loss), training, mode, strategy, jit_compile)

    return traced(model, key, make, architecture)


def traced(model, key, make: Callable[[Callable[[], Any]], Any], architecture=None):
    """Memo of traced functions: per model (weakly held), or per ``architecture`` (see :func:`traced_functions`).

    ``make(template)`` builds them for the model ``template()``. An architecture's entry keeps its first
    model alive as the template; the :data:`SHARED_TRACES` most recently used architectures are kept.
    """
    if architecture is None:
        ref = weakref.ref(model)
        return cached(model, key + (tuple(id(v) for v in model.variables),), lambda: make(ref))
    layout = tuple((tuple(v.shape), str(v.dtype), bool(v.trainable)) for v in model.variables)
    full = (architecture, layout) + key
    if full in _SHARED:
        _SHARED.move_to_end(full)
        return _SHARED[full]
    _SHARED[full] = value = make(lambda: model)
    while len(_SHARED) > SHARED_TRACES:
        _SHARED.popitem(last=False)
    return value


def loss_key(model, loss):
    """Cache key of a loss argument: the object itself, or the identity of the compiled loss."""
    return loss if loss is not None else ("compiled", id(getattr(model, "loss", None)))


def cached(model, key, factory: Callable):
    """Memo of traced functions, weak on the model: reused across calls, dropped with the model."""
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = factory()
    return per_model[key]


# --------------------------------------------------------------------------------------------------
# The operator
# --------------------------------------------------------------------------------------------------


class HessianOperator:
    """``H`` of the mean loss over fixed data, as ``matvec(v) -> H v`` on flat float64 vectors.

    Build it once and hand :meth:`matvec` to any of the matrix-layer solvers; it counts its products in
    ``hvp_count``. ``mode="forward"`` (default) is forward-over-backward (``ForwardAccumulator`` around a
    gradient tape), ``mode="reverse"`` double backward; both are exact. Products are taken at the
    model's weights as they are at each call. ``architecture``: see :func:`traced_functions` (models
    built alike share one trace).
    """

    def __init__(
        self,
        model,
        data,
        *,
        loss=None,
        training: bool = False,
        mode: str = "forward",
        strategy=None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        jit_compile: bool = False,
        architecture=None,
    ):
        self.model = model
        self.training = bool(training)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.fns = traced_functions(
            model, loss, training=training, mode=mode, strategy=self.strategy, jit_compile=jit_compile,
            architecture=architecture,
        )
        self.variables = list(model.trainable_variables)
        self.n = int(sum(int(np.prod(v.shape)) for v in self.variables))
        if self.n == 0:
            raise ValueError("the model has no trainable variables")
        self.batches = data if isinstance(data, PlacedBatches) else PlacedBatches(data, batch_size, self.strategy)
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
        loss, grad, state = None, None, model_state(self.model)
        for x, y in self.batches:
            l, g = self.fns.grad(state, x, y, self.batches.inv_n)
            loss, grad = (l, g) if loss is None else (loss + l, grad + g)
        return float(loss.numpy()), grad.numpy()

    def evaluate(self) -> tuple[float, float]:
        """Mean loss and accuracy (argmax; NaN for single-output models) at the current weights."""
        loss, correct, state = 0.0, 0.0, model_state(self.model)
        for x, y in self.batches:
            l, c = self.fns.eval(state, x, y, self.batches.inv_n)
            loss += float(l.numpy())
            correct += float(c.numpy())
        return loss, correct / self.num_examples

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


def _flatten_vector(vector, variables) -> np.ndarray:
    if isinstance(vector, (list, tuple)):
        if len(vector) != len(variables):
            raise ValueError(f"got {len(vector)} tensors for {len(variables)} trainable variables")
        return np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in vector])
    return np.asarray(vector, np.float64).reshape(-1)


def hvp(
    model,
    data,
    vector,
    *,
    loss=None,
    training: bool = False,
    mode: str = "forward",
    strategy=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Hessian-vector product ``H v`` of the mean loss over ``data``.

    ``vector`` is a flat vector over ``model.trainable_variables`` (any array-like) or a list of arrays
    shaped like them. Returns a flat float64 NumPy array in the same layout (see :func:`get_flat_weights`).
    """
    op = HessianOperator(
        model, data, loss=loss, training=training, mode=mode, strategy=strategy, batch_size=batch_size
    )
    return op.matvec(_flatten_vector(vector, op.variables))


# --------------------------------------------------------------------------------------------------
# Matrix layer: results
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EigenResult:
    """Extreme eigenpairs of a symmetric operator.

    ``eigenvalues`` descending (largest algebraic first, also for ``which="smallest"``), ``eigenvectors``
    one unit vector a row in the same order (or None), ``residuals`` ``‖H v − λ v‖`` a pair, ``hvp_count``
    operator products used, ``converged`` whether the stopping rule was met before the budget ran out.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    residuals: np.ndarray
    hvp_count: int
    seconds: float
    converged: bool
    method: str

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])


@dataclasses.dataclass
class TraceResult:
    """A stochastic trace estimate: ``value ± stderr`` from ``hvp_count`` products (``samples`` per probe)."""

    value: float
    stderr: float
    hvp_count: int
    seconds: float
    converged: bool
    method: str
    samples: np.ndarray


@dataclasses.dataclass
class DensityResult:
    """Stochastic Lanczos quadrature: the spectral density ≈ Σ weights · δ(t − nodes).

    ``nodes``/``weights`` are ``(runs, steps)`` arrays (runs that stopped early are padded with weight 0);
    the weights sum to 1, so :meth:`moment` ``(p)`` estimates ``tr(H^p)/n``.
    """

    nodes: np.ndarray
    weights: np.ndarray
    hvp_count: int
    seconds: float

    def moment(self, p: int) -> float:
        return float(np.sum(self.weights * self.nodes**p))


@dataclasses.dataclass
class FrobeniusResult:
    """``‖H‖_F`` estimate ``value ± stderr`` from ``E‖H z‖² = tr(H²)`` over ``hvp_count`` probes."""

    value: float
    stderr: float
    hvp_count: int
    seconds: float
    method: str
    samples: np.ndarray


# --------------------------------------------------------------------------------------------------
# Matrix layer: Lanczos
# --------------------------------------------------------------------------------------------------


class _LanczosProcess:
    """The Lanczos recurrence with full reorthogonalisation (classical Gram-Schmidt applied twice).

    Full reorthogonalisation keeps the basis orthonormal to rounding, so Ritz values never duplicate and
    the residual of a Ritz pair is exactly ``β_m |s_mi|``. On breakdown (an invariant subspace) it either
    stops or, with ``restart=True``, continues from a random vector orthogonal to the basis, so eigenvalues
    outside the first Krylov space are found too. The basis grows on demand.
    """

    def __init__(self, matvec: Matvec, v0: np.ndarray, max_steps: int, rng, restart: bool = True):
        self.matvec = matvec
        self.n = v0.size
        self.max_steps = int(max_steps)
        self.rng = rng
        self.restart = restart
        self.Q = np.empty((min(self.max_steps + 1, 32), self.n))
        self.Q[0] = v0 / np.linalg.norm(v0)
        self.alpha: list[float] = []
        self.beta: list[float] = []  # beta[j] couples q_j and q_{j+1} in T (0 after a restart)
        self.last_beta = np.inf  # β of the newest step: the Ritz residual scale
        self.norm_estimate = 0.0
        self.done = False

    @property
    def steps(self) -> int:
        return len(self.alpha)

    def _grow(self):
        if self.steps + 1 >= self.Q.shape[0]:
            bigger = np.empty((min(2 * self.Q.shape[0], self.max_steps + 1), self.n))
            bigger[: self.Q.shape[0]] = self.Q
            self.Q = bigger

    def step(self) -> None:
        j = self.steps
        q = self.Q[j]
        w = np.asarray(self.matvec(q), np.float64).reshape(-1)
        a = float(q @ w)
        w -= a * q
        if j > 0:
            w -= self.beta[j - 1] * self.Q[j - 1]
        basis = self.Q[: j + 1]
        for _ in range(2):
            w -= basis.T @ (basis @ w)
        b = float(np.linalg.norm(w))
        self.alpha.append(a)
        self.last_beta = b
        self.norm_estimate = max(self.norm_estimate, abs(a) + b)
        if self.steps >= min(self.n, self.max_steps):
            self.beta.append(b)
            self.done = True
            return
        self._grow()
        if b > 1e-12 * max(self.norm_estimate, np.finfo(float).tiny):
            self.beta.append(b)
            self.Q[j + 1] = w / b
            return
        # Breakdown: the Krylov space is invariant.
        if not self.restart:
            self.beta.append(b)
            self.done = True
            return
        r = self.rng.standard_normal(self.n)
        for _ in range(2):
            r -= basis.T @ (basis @ r)
        self.beta.append(0.0)
        self.Q[j + 1] = r / np.linalg.norm(r)

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.steps
        return np.asarray(self.alpha), np.asarray(self.beta[: m - 1])

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors of T."""
        d, e = self.tridiagonal()
        return scipy.linalg.eigh_tridiagonal(d, e)


def _start_vector(init, n: int, rng) -> np.ndarray:
    """A random start, or the warm start ``init`` (a vector, or rows of vectors that are summed)."""
    if init is None:
        return rng.standard_normal(n)
    v = np.asarray(init, np.float64)
    v = v.sum(axis=0) if v.ndim == 2 else v.reshape(-1)
    if v.size != n:
        raise ValueError(f"init has {v.size} entries, expected {n}")
    if not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        return rng.standard_normal(n)
    return v


def _check_which(which: str) -> None:
    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")


def lanczos(
    matvec: Matvec,
    n: int,
    k: int = 1,
    *,
    tol: float = 1e-3,
    max_iter: int | None = None,
    seed: int = 0,
    which: str = "largest",
    init=None,
    return_eigenvectors: bool = True,
) -> EigenResult:
    """The ``k`` largest (or smallest) eigenpairs of a symmetric operator by Lanczos.

    Stops when every wanted Ritz pair has ``‖H v − θ v‖ ≤ tol · max(|θ|, ε^(2/3)·‖T‖)`` (ARPACK's test):
    the residual bounds the eigenvalue error, so the relative error is at most ``tol`` and in practice
    far below (it shrinks like residual² / gap). One product per iteration; ``max_iter`` defaults to
    ``min(n, 300)``. Repeated eigenvalues appear once (a single-vector Krylov method cannot see more).
    """
    _check_which(which)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    max_iter = min(n, 300 if max_iter is None else int(max_iter))
    if max_iter < k:
        raise ValueError(f"max_iter={max_iter} is smaller than k={k}")
    proc = _LanczosProcess(matvec, _start_vector(init, n, rng), max_iter, rng, restart=True)
    converged = False
    while True:
        proc.step()
        if proc.steps >= k:
            theta, S = proc.ritz()
            idx = np.arange(len(theta) - k, len(theta))[::-1] if which == "largest" else np.arange(k)[::-1]
            residuals = proc.last_beta * np.abs(S[-1, idx])
            scale = max(np.max(np.abs(theta)), np.finfo(float).tiny)
            converged = bool(np.all(residuals <= tol * np.maximum(np.abs(theta[idx]), _EPS23 * scale)))
            if converged or proc.done or proc.steps >= max_iter:
                break
    if not converged:
        warnings.warn(
            f"Lanczos stopped after {proc.steps} products without reaching tol={tol}; "
            f"residuals {residuals}",
            RuntimeWarning,
            stacklevel=2,
        )
    vectors = None
    if return_eigenvectors:
        vectors = S[:, idx].T @ proc.Q[: proc.steps]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return EigenResult(
        eigenvalues=theta[idx],
        eigenvectors=vectors,
        residuals=residuals,
        hvp_count=proc.steps,
        seconds=time.perf_counter() - start,
        converged=converged,
        method="lanczos",
    )


def lanczos_tridiagonal(matvec: Matvec, v0: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal and off-diagonal of the Lanczos matrix ``T`` for start ``v0`` (stops early on breakdown)."""
    proc = _LanczosProcess(matvec, np.asarray(v0, np.float64), min(steps, v0.size), None, restart=False)
    while not proc.done:
        proc.step()
    return proc.tridiagonal()


# --------------------------------------------------------------------------------------------------
# Matrix layer: power iteration and ARPACK, for comparison
# --------------------------------------------------------------------------------------------------


def _power_core(matvec, n, k, tol, max_iter, rng, init, shift=0.0):
    """PyHessian's loop on ``H − shift·I``: stop when the Rayleigh quotient changes by < tol (relative)."""
    values, vectors, residuals, count, converged = [], [], [], 0, True
    for i in range(k):
        v = _start_vector(init if i == 0 else None, n, rng)
        value, done = None, False
        for _ in range(max_iter):
            for u in vectors:  # deflation, as PyHessian's orthnormal()
                v = v - (u @ v) * u
            v = v / np.linalg.norm(v)
            hv = np.asarray(matvec(v), np.float64).reshape(-1) - shift * v
            count += 1
            rayleigh = float(v @ hv)
            residual = float(np.linalg.norm(hv - rayleigh * v))
            previous, value = value, rayleigh
            current = v
            norm = np.linalg.norm(hv)
            if norm == 0:
                done = True
                break
            v = hv / norm
            if previous is not None and abs(previous - rayleigh) / (abs(previous) + 1e-6) < tol:
                done = True
                break
        converged &= done
        values.append(value)
        vectors.append(current)
        residuals.append(residual)
    return np.asarray(values), np.asarray(vectors), np.asarray(residuals), count, converged


def power_iteration(
    matvec: Matvec,
    n: int,
    k: int = 1,
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    which: str = "largest",
    init=None,
    return_eigenvectors: bool = True,
) -> EigenResult:
    """PyHessian-style power iteration (its defaults: ``maxIter=100``, ``tol=1e-3`` relative change).

    Kept for comparison: the relative-change stop fires long before the error is ``tol`` when the top
    two eigenvalues are close. Power iteration finds the eigenvalue σ of largest *magnitude*; when σ is
    at the wrong end of the spectrum (negative for ``which="largest"``, positive for ``"smallest"``) it
    iterates again on ``H − σ I`` (all products counted). ``k > 1`` uses deflation, as PyHessian.
    """
    _check_which(which)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    values, vectors, residuals, count, converged = _power_core(matvec, n, k, tol, max_iter, rng, init)
    dominant = float(values[0])
    if (which == "smallest") == (dominant > 0):  # the dominant eigenvalue is at the other end
        values, vectors, residuals, more, ok = _power_core(matvec, n, k, tol, max_iter, rng, None, dominant)
        values, count, converged = values + dominant, count + more, ok
    order = np.argsort(values)[::-1]
    return EigenResult(
        eigenvalues=values[order],
        eigenvectors=vectors[order] if return_eigenvectors else None,
        residuals=residuals[order],
        hvp_count=count,
        seconds=time.perf_counter() - start,
        converged=bool(converged),
        method="power",
    )


def arpack(
    matvec: Matvec,
    n: int,
    k: int = 1,
    *,
    tol: float = 1e-3,
    max_iter: int | None = None,
    seed: int = 0,
    which: str = "largest",
    init=None,
    return_eigenvectors: bool = True,
) -> EigenResult:
    """``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos) on the operator, for comparison."""
    _check_which(which)
    start = time.perf_counter()
    count = [0]

    def counted(v):
        count[0] += 1
        return np.asarray(matvec(np.ravel(v)), np.float64)

    op = scipy.sparse.linalg.LinearOperator((n, n), matvec=counted, dtype=np.float64)
    v0 = _start_vector(init, n, np.random.default_rng(seed))
    try:
        values, vectors = scipy.sparse.linalg.eigsh(
            op, k=k, which="LA" if which == "largest" else "SA", tol=tol, v0=v0, maxiter=max_iter
        )
        converged = True
    except scipy.sparse.linalg.ArpackNoConvergence as err:
        values, vectors, converged = err.eigenvalues, err.eigenvectors, False
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order].T
    products = count[0]
    residuals = np.array([np.linalg.norm(matvec(v) - lam * v) for lam, v in zip(values, vectors)])
    return EigenResult(
        eigenvalues=values,
        eigenvectors=vectors if return_eigenvectors else None,
        residuals=residuals,
        hvp_count=products,  # the residual check above is not counted: it is a verification
        seconds=time.perf_counter() - start,
        converged=converged,
        method="eigsh",
    )


# --------------------------------------------------------------------------------------------------
# Matrix layer: trace, density, Frobenius norm
# --------------------------------------------------------------------------------------------------


def _rademacher(rng, shape) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


def _mean_stderr(samples: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(samples))
    stderr = float(np.std(samples, ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    return mean, stderr


def hutchinson(
    matvec: Matvec,
    n: int,
    *,
    tol: float | None = None,
    max_probes: int = 100,
    min_probes: int = 10,
    seed: int = 0,
) -> TraceResult:
    """Hutchinson's ``tr(H) ≈ mean zᵀHz`` over Rademacher probes ``z``.

    With ``tol``, stops once ``stderr ≤ tol·|mean|`` (after ``min_probes``, so the standard error itself
    is estimated from enough samples) -- a stop on the estimator's uncertainty, not on how much the running
    mean moved, which stops early whenever two probes happen to agree.
    """
    if max_probes < 1:
        raise ValueError(f"max_probes must be >= 1, got {max_probes}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples: list[float] = []
    converged = tol is None
    for _ in range(max_probes):
        z = _rademacher(rng, n)
        samples.append(float(z @ np.asarray(matvec(z), np.float64).reshape(-1)))
        if tol is not None and len(samples) >= max(min_probes, 2):
            mean, stderr = _mean_stderr(np.asarray(samples))
            if stderr <= tol * abs(mean):
                converged = True
                break
    mean, stderr = _mean_stderr(np.asarray(samples))
    return TraceResult(
        value=mean,
        stderr=stderr,
        hvp_count=len(samples),
        seconds=time.perf_counter() - start,
        converged=converged,
        method="hutchinson",
        samples=np.asarray(samples),
    )


def hutch_plus_plus(matvec: Matvec, n: int, *, max_probes: int = 100, seed: int = 0) -> TraceResult:
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021): exact trace on a sketched top subspace + Hutchinson on the rest.

    A third of the budget sketches ``H S``, a third computes ``tr(QᵀHQ)`` on its orthonormal basis, the
    last third probes the deflated remainder; ``stderr`` is that remainder's standard error. Much more
    accurate than Hutchinson when a few eigenvalues dominate, as in trained networks.
    """
    if max_probes < 3:
        raise ValueError(f"hutch++ needs max_probes >= 3, got {max_probes}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    s = min(max_probes // 3, n)
    mv = lambda v: np.asarray(matvec(v), np.float64).reshape(-1)
    sketch = np.stack([mv(z) for z in _rademacher(rng, (s, n))], axis=1)
    Q, _ = np.linalg.qr(sketch)
    top = float(sum(q @ mv(q) for q in Q.T))
    rest = max_probes - 2 * s
    samples = []
    for g in _rademacher(rng, (rest, n)):
        g = g - Q @ (Q.T @ g)
        samples.append(float(g @ mv(g)))
    samples = np.asarray(samples)
    mean, stderr = _mean_stderr(samples) if len(samples) else (0.0, float("nan"))
    return TraceResult(
        value=top + mean,
        stderr=stderr,
        hvp_count=2 * s + rest,
        seconds=time.perf_counter() - start,
        converged=True,
        method="hutch++",
        samples=samples,
    )


def slq(matvec: Matvec, n: int, *, runs: int = 10, steps: int = 80, seed: int = 0) -> DensityResult:
    """Stochastic Lanczos quadrature (Golub-Meurant; Ghorbani et al. 2019, PyHessian's ``density``).

    Each run starts Lanczos from a normalised Rademacher vector ``v``; the eigenvalues of ``T`` are the
    nodes and the squared first components of its eigenvectors the weights of a Gauss quadrature for
    ``vᵀ f(H) v``, exact for polynomials of degree < 2·steps. Averaging runs estimates ``tr f(H) / n``.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    steps = min(int(steps), n)
    nodes = np.zeros((runs, steps))
    weights = np.zeros((runs, steps))
    count = 0
    for r in range(runs):
        proc = _LanczosProcess(matvec, _rademacher(rng, n), steps, rng, restart=False)
        while not proc.done:
            proc.step()
        count += proc.steps
        theta, S = proc.ritz()
        nodes[r, : len(theta)] = theta
        weights[r, : len(theta)] = S[0] ** 2 / runs
    return DensityResult(nodes=nodes, weights=weights, hvp_count=count, seconds=time.perf_counter() - start)


def frobenius_estimate(matvec: Matvec, n: int, *, probes: int = 30, seed: int = 0) -> FrobeniusResult:
    """``‖H‖_F = sqrt(E‖H z‖²)`` over Rademacher probes (``E zzᵀ = I``, so ``E‖Hz‖² = tr(HᵀH)``).

    The standard error comes from the samples of ``‖Hz‖²`` through the square root (delta method).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples = np.array(
        [np.sum(np.asarray(matvec(z), np.float64) ** 2) for z in _rademacher(rng, (probes, n))]
    )
    mean, stderr = _mean_stderr(samples)
    value = float(np.sqrt(mean))
    return FrobeniusResult(
        value=value,
        stderr=stderr / (2 * value) if value > 0 else float("nan"),
        hvp_count=probes,
        seconds=time.perf_counter() - start,
        method="hvp",
        samples=samples,
    )


# --------------------------------------------------------------------------------------------------
# Model layer
# --------------------------------------------------------------------------------------------------

_EIGEN_METHODS = {"lanczos": lanczos, "power": power_iteration, "eigsh": arpack}


def _operator(model, data, loss, training, mode, strategy, batch_size) -> HessianOperator:
    if isinstance(model, HessianOperator):
        return model
    return HessianOperator(
        model, data, loss=loss, training=training, mode=mode, strategy=strategy, batch_size=batch_size
    )


def top_eigenvalues(
    model,
    data,
    k: int = 1,
    *,
    loss=None,
    method: str = "lanczos",
    tol: float = 1e-3,
    max_hvps: int | None = None,
    training: bool = False,
    seed: int = 0,
    which: str = "largest",
    init=None,
    mode: str = "forward",
    strategy=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    return_eigenvectors: bool = True,
) -> EigenResult:
    """The ``k`` largest (``which="smallest"``: smallest) Hessian eigenvalues of the mean loss over ``data``.

    ``method="lanczos"`` (default; see :func:`lanczos` for the stopping rule), ``"power"`` (PyHessian's
    power iteration: ``max_hvps`` is then its ``maxIter`` per eigenvalue, default 100, and ``tol`` its
    relative-change threshold) or ``"eigsh"`` (SciPy/ARPACK). ``init`` warm-starts from a previous
    eigenvector (or rows of them). ``hvp_count`` counts every product the method used.
    ``model`` may also be a prebuilt :class:`HessianOperator` (``data`` is then ignored).
    """
    if method not in _EIGEN_METHODS:
        raise ValueError(f"method must be one of {sorted(_EIGEN_METHODS)}, got {method!r}")
    start = time.perf_counter()
    op = _operator(model, data, loss, training, mode, strategy, batch_size)
    kwargs = {} if max_hvps is None else {"max_iter": max_hvps}
    with solver_context():
        result = _EIGEN_METHODS[method](
            op.matvec,
            op.n,
            k,
            tol=tol,
            seed=seed,
            which=which,
            init=init,
            return_eigenvectors=return_eigenvectors,
            **kwargs,
        )
    result.seconds = time.perf_counter() - start
    return result


def trace(
    model,
    data,
    *,
    loss=None,
    tol: float | None = None,
    max_hvps: int = 100,
    seed: int = 0,
    method: str = "hutchinson",
    min_probes: int = 10,
    training: bool = False,
    mode: str = "forward",
    strategy=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TraceResult:
    """``tr(H)`` by Hutchinson (Rademacher probes; with ``tol`` stops when ``stderr/|mean| < tol``)
    or ``method="hutch++"`` (uses the whole ``max_hvps`` budget)."""
    start = time.perf_counter()
    op = _operator(model, data, loss, training, mode, strategy, batch_size)
    with solver_context():
        if method == "hutchinson":
            result = hutchinson(op.matvec, op.n, tol=tol, max_probes=max_hvps, min_probes=min_probes, seed=seed)
        elif method == "hutch++":
            result = hutch_plus_plus(op.matvec, op.n, max_probes=max_hvps, seed=seed)
        else:
            raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    result.seconds = time.perf_counter() - start
    return result


def density(
    model,
    data,
    *,
    runs: int = 10,
    steps: int = 80,
    seed: int = 0,
    loss=None,
    training: bool = False,
    mode: str = "forward",
    strategy=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> DensityResult:
    """Hessian spectral density by stochastic Lanczos quadrature (``runs × steps`` products); see :func:`slq`."""
    start = time.perf_counter()
    op = _operator(model, data, loss, training, mode, strategy, batch_size)
    with solver_context():
        result = slq(op.matvec, op.n, runs=runs, steps=steps, seed=seed)
    result.seconds = time.perf_counter() - start
    return result


def frobenius_norm(
    model,
    data,
    *,
    probes: int = 30,
    seed: int = 0,
    method: str = "hvp",
    epsilon: float = 1e-3,
    loss=None,
    training: bool = False,
    mode: str = "forward",
    strategy=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> FrobeniusResult:
    """``‖H‖_F`` estimated as ``sqrt(mean ‖H z‖²)`` over Rademacher probes ``z``.

    ``method="hvp"`` uses exact products; ``method="finite_difference"`` the paper's v1 variant,
    ``H z ≈ ‖z‖ (∇L(θ+εu) − ∇L(θ−εu)) / 2ε`` with ``u = z/‖z‖`` (two gradients a probe; the truncation
    error is O(ε²), the rounding error O(machine-ε·‖∇L‖/ε)).
    """
    start = time.perf_counter()
    op = _operator(model, data, loss, training, mode, strategy, batch_size)
    if method == "hvp":
        matvec = op.matvec
    elif method == "finite_difference":
        matvec = lambda v: op.finite_difference_matvec(v, epsilon)
    else:
        raise ValueError(f"method must be 'hvp' or 'finite_difference', got {method!r}")
    with solver_context():
        result = frobenius_estimate(matvec, op.n, probes=probes, seed=seed)
    result.method = method
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------------------------------
# Density plots
# --------------------------------------------------------------------------------------------------


def density_curve(result: DensityResult, *, sigma: float | None = None, num: int = 1000):
    """Gaussian-broadened density on a grid: ``φ(t) = Σ w_j N(t; θ_j, σ²)``, integrating to 1.

    ``sigma`` defaults to 1 % of the node range (PyHessian scales its width with the range too).
    """
    mask = result.weights > 0
    nodes, weights = result.nodes[mask], result.weights[mask]
    lo, hi = float(nodes.min()), float(nodes.max())
    span = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    sigma = 0.01 * span if sigma is None else float(sigma)
    grid = np.linspace(lo - 5 * sigma - 0.01 * span, hi + 5 * sigma + 0.01 * span, num)
    z = (grid[:, None] - nodes[None, :]) / sigma
    values = (np.exp(-0.5 * z**2) @ weights) / (sigma * np.sqrt(2 * np.pi))
    return grid, values


def plot_density(result: DensityResult, ax=None, *, sigma: float | None = None, num: int = 1000):
    """Plot the broadened density on a log y axis (as Ghorbani et al. and PyHessian); returns the axes."""
    import matplotlib.pyplot as plt

    grid, values = density_curve(result, sigma=sigma, num=num)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    floor = max(values.max() * 1e-12, np.finfo(float).tiny)
    ax.semilogy(grid, np.maximum(values, floor))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log)")
    return ax
