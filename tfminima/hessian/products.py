"""The products layer: a model's loss at variable values passed in, and tf.functions of its gradient and
Hessian-vector products, one placed batch at a time.

The loss is the **mean over a fixed set of N examples** plus the regularisation once::

    L(θ) = (1/N) Σ_i ℓ(f_θ(x_i), y_i)  +  R(θ),    R = sum(model.losses)

A batch contributes ``(Σ_batch ℓ_i + n_batch·R)/N`` (a short last batch weighs by its size), a replica its
share of the batch, and the replicas' contributions are summed. The model runs through
``stateless_call`` at the ``state`` passed in (:func:`model_state`), so a trace holds no variable and every
model of one architecture can share it (:mod:`tfminima.hessian.cache`).

Products come recomputed (``hvp``: a forward pass, a first and a second backward pass each) or retained
(:meth:`HessianProducts.retained_gradient` keeps one forward pass and first gradient on a persistent
tape, and each product is then a second backward pass alone, :meth:`HessianProducts.second_backward`;
:mod:`tfminima.hessian.retained` loops over them for a block of vectors or a whole Lanczos run).

To add a product (several vectors at once, a loop in the graph): write its replica function on
:meth:`HessianProducts.replica_loss` or :meth:`HessianProducts.retained_gradient` (or
:class:`StatelessLoss` for per-example quantities, as :mod:`tfminima.noise` does) and wrap it with
:func:`distributed_function`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tfminima.hessian.batches import PlacedBatches
from tfminima.hessian.cache import Template, loss_key, shareable, traced
from tfminima.hessian.memory import graph_tensor_bytes
from tfminima.hessian.options import ProductOptions
from tfminima.hessian.vectors import flatten_tensors, unflatten_vector

__all__ = [
    "HessianProducts",
    "StatelessLoss",
    "distributed_function",
    "model_state",
    "resolve_loss",
    "traced_functions",
    "without_grappler",
]

_ZERO = tf.UnconnectedGradients.ZERO  # a variable the loss does not use: zero gradient, no error


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


def model_state(model) -> tuple[list, list]:
    """The values of the model's trainable and non-trainable variables, as ``stateless_call`` takes them."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


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


class StatelessLoss:
    """The loss terms of the model ``template()`` at variable values passed in; no variable is read or moved.

    Batch-norm statistics never move, also with ``training=True`` (``stateless_call`` returns the new
    values instead of assigning them, and they are dropped).
    """

    def __init__(self, template: Template, loss_fn: Callable, training: bool):
        self.template = template
        self.loss_fn = loss_fn
        self.training = bool(training)

    def terms(self, state, x, y):
        """``(ℓ_i per example, R = sum(model.losses) in ℓ's dtype, predictions)`` at ``state``."""
        trainable, non_trainable = state
        pred, _, losses = self.template().stateless_call(
            list(trainable), list(non_trainable), x, training=self.training, return_losses=True
        )
        per_example = _per_example_loss(self.loss_fn, y, pred)
        return per_example, _regularization(losses, per_example.dtype), pred


def distributed_function(replica_fn: Callable, strategy, *, reduce: bool = True, jit_compile: bool = False):
    """``replica_fn`` run on every replica of ``strategy`` as one tf.function: its results summed over the
    replicas, or with ``reduce=False`` the per-replica values."""

    def run(*args):
        per_replica = strategy.run(replica_fn, args=args)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None) if reduce else per_replica

    # No AutoGraph (Keras' fit does not use it either): it made tracing the double-backward
    # HVP 8x slower (2.4 s against 0.3 s on the quickstart MLP), paid once per trace.
    return tf.function(run, reduce_retracing=True, jit_compile=jit_compile or None, autograph=False)


@contextlib.contextmanager
def without_grappler():
    """Calls of traced functions made inside are instantiated without Grappler's graph rewrites.

    TensorFlow instantiates a traced function again after every ``tf.random.set_seed`` (it clears its
    kernel caches), which every training run does once, so a monitor pays the instantiation of its
    functions in every run. Grappler's rewrites were 40-70 % of it for the Hessian's functions (the
    quickstart's MLP and the batch-norm CNN, ``benchmarks/bench_hessian.py --only instantiation``),
    while the products take the same CPU time without them (within the noise: 0.95-1.05× on the CNN,
    0.8-1.1× on the MLP). The numbers are the same to
    float round-off. The option is TensorFlow's own (``tf.config.optimizer.set_experimental_options``);
    calls made meanwhile by other threads are instantiated alike, and the setting is put back on exit
    (left alone if the user already disabled Grappler).
    """
    if tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False):
        yield
        return
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})


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


class HessianProducts:
    """The tf.functions for one (model or architecture, loss, training, mode, strategy, XLA) combination.

    ``hvp(state, x, y, inv_n, vec)``, ``grad(state, x, y, inv_n) -> (loss, flat gradient)`` and
    ``eval(state, x, y, inv_n) -> (loss, correct)`` take the model's ``state`` (:func:`model_state`), one
    placed batch and ``inv_n = 1/N``, and return that batch's contribution to the full-data quantity,
    summed over replicas; :meth:`loss_and_gradient` and :meth:`evaluate` sum them over the batches.
    :attr:`retained` holds the retained products (:class:`~tfminima.hessian.retained.RetainedProducts`).
    ``template()`` returns the model whose code is traced; nothing here holds a model.
    """

    def __init__(self, template: Template, options: ProductOptions):
        options = options.resolved()
        self.strategy = options.strategy
        self.mode = options.mode
        self.jit_compile = options.jit_compile
        self.specs = [tf.TensorSpec(tuple(v.shape), v.dtype) for v in template().trainable_variables]
        self.loss = StatelessLoss(template, resolve_loss(template(), options.loss), options.training)
        replica_hvp = {"forward": self._replica_hvp_forward, "reverse": self._replica_hvp_reverse}[self.mode]
        self.hvp = self.distributed(replica_hvp)
        self.grad = self.distributed(self._replica_gradient)
        self.eval = self.distributed(self._replica_evaluate)
        self._forward_bytes: dict = {}
        self._retained = None

    def distributed(self, replica_fn: Callable):
        """``replica_fn`` as a tf.function summed over this strategy's replicas (see :func:`distributed_function`)."""
        return distributed_function(replica_fn, self.strategy, jit_compile=self.jit_compile)

    # ---------------------------------------------------------------------------- replica functions

    def replica_loss(self, state, x, y, inv_n):
        """This replica's share of L and its predictions: its examples' losses over the global N, plus R·n_local/N."""
        per_example, regularization, pred = self.loss.terms(state, x, y)
        dtype = per_example.dtype
        scale = tf.cast(inv_n, dtype)
        n_local = tf.cast(tf.shape(per_example)[0], dtype)
        return (tf.reduce_sum(per_example) + n_local * regularization) * scale, pred

    def _replica_gradient(self, state, x, y, inv_n):
        values = list(state[0])
        with tf.GradientTape() as tape:
            tape.watch(values)
            loss, _ = self.replica_loss((values, state[1]), x, y, inv_n)
        grads = tape.gradient(loss, values, unconnected_gradients=_ZERO)
        return tf.cast(loss, tf.float64), flatten_tensors(grads)

    def _replica_hvp_forward(self, state, x, y, inv_n, vec):
        # Forward-over-backward: a ForwardAccumulator around the gradient tape.
        values = list(state[0])
        tangents = unflatten_vector(vec, self.specs)
        with tf.autodiff.ForwardAccumulator(values, tangents) as acc:
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss, _ = self.replica_loss((values, state[1]), x, y, inv_n)
            grads = tape.gradient(loss, values, unconnected_gradients=_ZERO)
        return flatten_tensors(acc.jvp(grads, unconnected_gradients=_ZERO))

    def _replica_hvp_reverse(self, state, x, y, inv_n, vec):
        # Double backward: the gradient of ⟨∇L, v⟩.
        values = list(state[0])
        tangents = unflatten_vector(vec, self.specs)
        with tf.GradientTape() as outer:
            outer.watch(values)
            with tf.GradientTape() as inner:
                inner.watch(values)
                loss, _ = self.replica_loss((values, state[1]), x, y, inv_n)
            grads = inner.gradient(loss, values, unconnected_gradients=_ZERO)
            gv = tf.add_n([tf.reduce_sum(g * t) for g, t in zip(grads, tangents)])
        return flatten_tensors(outer.gradient(gv, values, unconnected_gradients=_ZERO))

    def retained_gradient(self, values, non_trainable, x, y, inv_n):
        """``(tape, gradient)``: this replica's first gradient, recorded on a persistent tape so that any
        number of second backward passes (:meth:`second_backward`) reuse its forward and backward pass."""
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(values)
            with tf.GradientTape() as inner:
                inner.watch(values)
                loss, _ = self.replica_loss((values, non_trainable), x, y, inv_n)
            grads = inner.gradient(loss, values, unconnected_gradients=_ZERO)
        return outer, grads

    def second_backward(self, tape, grads, values, vec):
        """``H v`` on this replica: the gradient of ``⟨∇L, v⟩`` from a retained first gradient (``H`` is
        symmetric, so ``∇(gᵀv) = Jᵀ_g v = H v``)."""
        tangents = unflatten_vector(vec, self.specs)
        return flatten_tensors(tape.gradient(grads, values, output_gradients=tangents, unconnected_gradients=_ZERO))

    def _replica_evaluate(self, state, x, y, inv_n):
        loss, pred = self.replica_loss(state, x, y, inv_n)
        return tf.cast(loss, tf.float64), _correct(y, pred)

    # ------------------------------------------------------------------------------ sums over batches

    def loss_and_gradient(self, state, batches: PlacedBatches) -> tuple[float, np.ndarray]:
        """Mean loss and its flat float64 gradient over ``batches`` at ``state``."""
        loss, grad = None, None
        for x, y in batches:
            l, g = self.grad(state, x, y, batches.inv_n)
            loss, grad = (l, g) if loss is None else (loss + l, grad + g)
        return float(loss.numpy()), grad.numpy()

    def forward_bytes(self, state, x, y) -> int:
        """Bytes of the floating-point tensors one replica's forward pass over ``(x, y)`` produces (its
        largest shard), from the traced graph: what a retained product keeps, up to a factor
        (:mod:`tfminima.hessian.memory`). Traced once a batch shape (a forward pass traces in ~0.03 s)."""
        xs, ys = (self.strategy.experimental_local_results(t) for t in (x, y))
        i = max(range(len(xs)), key=lambda r: int(xs[r].shape[0]))
        key = (tuple(xs[i].shape), xs[i].dtype, tuple(ys[i].shape), ys[i].dtype)
        if key not in self._forward_bytes:
            forward = tf.function(lambda s, a, b: self.loss.terms(s, a, b)[0], autograph=False)
            self._forward_bytes[key] = graph_tensor_bytes(forward.get_concrete_function(state, xs[i], ys[i]).graph)
        return self._forward_bytes[key]

    @property
    def retained(self):
        """The retained products: blocks and Lanczos runs over one retained first gradient, one traced
        function (:class:`~tfminima.hessian.retained.RetainedProducts`; never XLA-compiled)."""
        if self._retained is None:
            from tfminima.hessian.retained import (
                RetainedProducts,  # it builds on this class
            )

            self._retained = RetainedProducts(self)
        return self._retained

    def evaluate(self, state, batches: PlacedBatches) -> tuple[float, float]:
        """Mean loss and accuracy (argmax; NaN for single-output models) over ``batches`` at ``state``."""
        loss, correct = 0.0, 0.0
        for x, y in batches:
            l, c = self.eval(state, x, y, batches.inv_n)
            loss += float(l.numpy())
            correct += float(c.numpy())
        return loss, correct / batches.num_examples


def traced_functions(model, options: ProductOptions | None = None, **changes) -> HessianProducts:
    """The cached :class:`HessianProducts` for this model and options (built on first use, traced on first call).

    Options as :class:`ProductOptions` and/or its fields as keywords (``batch_size`` plays no part here).
    Models with the same ``architecture`` share one trace; ``None`` gives each model its own.
    """
    opts = ProductOptions.of(options, **changes).resolved()
    key = ("hessian", loss_key(model, opts.loss), opts.training, opts.mode, opts.strategy, opts.jit_compile)
    return traced(model, key, lambda template: HessianProducts(template, opts),
                  shareable(opts.architecture, opts.strategy))
