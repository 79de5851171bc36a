"""Retained products: one traced function, one forward pass and first gradient a call, many products.

:class:`RetainedProducts` traces, once per (model or architecture, options), a function that computes
each replica's first gradient on a persistent tape; every product is then one second backward pass per
replica over the gradient it retained, summed. The function first multiplies a block of given vectors
(a ``tf.map_fn``, two products at once) and then, if asked, continues the Lanczos recurrence of
:class:`tfminima.hessian.krylov.LanczosProcess` in a ``tf.while_loop`` -- orthogonalisation against the
whole basis twice, β, and the stopping rule of :class:`~tfminima.hessian.krylov.StopRule` on the Ritz
values of ``T`` -- until the rule is met, the step limit is reached or the Krylov space breaks down. It
hands the basis back to :func:`~tfminima.hessian.krylov.lanczos`, which checks the rule again in NumPy,
restarts after a breakdown as it always does, and builds the result: the warm start, the minimum Krylov
dimension and the stopping rule are those of the NumPy loop.

Blocks and Lanczos share the function on purpose: a traced function is instantiated again after every
``tf.random.set_seed`` (TensorFlow clears its kernel caches), which a training run does once, and
instantiating a loop around a second backward pass costs ~0.3 s, about a hundred products of the
quickstart's MLP (BENCHMARKS.md).

:meth:`RetainedProducts.along_gradient` is the batch sharpness's product (a second, straight-line
function): the batch's gradient ``g`` and ``H g`` over one forward pass and first gradient, the
second backward pass taking the retained gradient itself as its vector.

Under a ``tf.distribute`` strategy the loop runs in cross-replica context (a collective inside a
replica's while loop is not allowed): each iteration runs the second backward pass on every replica
over the gradient that replica retained on its shard, and sums; ``along_gradient`` sums the replicas'
gradients before their second backward passes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfminima.hessian.krylov import (
    BREAKDOWN,
    EPS23,
    LanczosProcess,
    RunnerOutcome,
    StopRule,
)
from tfminima.hessian.memory import PARALLEL_PRODUCTS
from tfminima.hessian.vectors import flatten_tensors

__all__ = ["RetainedProducts", "retained_loop"]

RUNNING, CONVERGED, LIMIT, BROKEN = 0, 1, 2, 3
_STATUS = {CONVERGED: "converged", LIMIT: "limit", BROKEN: "breakdown"}
_TINY = float(np.finfo(np.float64).tiny)


def _converged(alpha, beta, last_beta, k, tol, largest):
    """The stopping rule of :meth:`StopRule.check` on ``T`` built from ``alpha`` and ``beta``."""
    m = tf.shape(alpha)[0]
    T = tf.linalg.diag(alpha) + tf.linalg.diag(beta[: m - 1], k=1) + tf.linalg.diag(beta[: m - 1], k=-1)
    theta, S = tf.linalg.eigh(T)
    idx = tf.where(largest, tf.range(m - k, m), tf.range(k))
    residuals = last_beta * tf.abs(tf.gather(S[-1], idx))
    wanted = tf.abs(tf.gather(theta, idx))
    scale = tf.maximum(tf.reduce_max(tf.abs(theta)), _TINY)
    return tf.reduce_all(residuals <= tol * tf.maximum(wanted, EPS23 * scale))


def _lanczos_step(w, basis, alpha, beta, norm_estimate, k, tol, largest, min_steps, max_steps):
    """One step of :meth:`LanczosProcess.absorb` given ``w = H q_j``, and the rule, in the graph."""
    j = tf.shape(alpha)[0]
    q = basis[j]
    a = tf.tensordot(q, w, 1)
    previous = basis[tf.maximum(j - 1, 0)] * tf.cast(j > 0, tf.float64)
    coupling = tf.concat([[0.0], beta], 0)[j]  # β_{j-1}; nothing on the first step
    w = w - a * q - coupling * previous
    kept = basis[: j + 1]
    for _ in range(2):  # classical Gram-Schmidt, twice
        w = w - tf.linalg.matvec(kept, tf.linalg.matvec(kept, w), transpose_a=True)
    b = tf.norm(w)
    alpha = tf.concat([alpha, [a]], 0)
    norm_estimate = tf.maximum(norm_estimate, tf.abs(a) + b)
    steps = j + 1
    at_limit = steps >= max_steps
    broken = tf.logical_and(tf.logical_not(at_limit), b <= BREAKDOWN * tf.maximum(norm_estimate, _TINY))
    extends = tf.logical_not(tf.logical_or(at_limit, broken))
    # Always appended; what a limit or a breakdown leaves over is dropped by RetainedProducts.runner.
    beta = tf.concat([beta, [b]], 0)
    basis = tf.concat([basis, [tf.math.divide_no_nan(w, b)]], 0)
    checked = tf.logical_and(extends, steps >= min_steps)  # min_steps >= k: T has k Ritz values
    done = tf.cond(checked, lambda: _converged(alpha, beta, b, k, tol, largest), lambda: tf.constant(False))
    status = tf.where(at_limit, LIMIT, tf.where(broken, BROKEN, tf.where(done, CONVERGED, RUNNING)))
    return basis, alpha, beta, b, norm_estimate, status


def retained_loop(matvec, vectors, basis, alpha, beta, norm_estimate, k, tol, largest, min_steps, max_steps):
    """``H`` times each row of ``vectors``, then Lanczos steps until the rule, the limit or a breakdown.

    ``matvec`` is a traceable function of a float64 vector. ``basis`` holds ``q_0 … q_m`` (``q_m`` next
    to multiply), ``alpha`` and ``beta`` the ``m`` steps so far; ``max_steps <= m`` asks for no step.
    Returns ``(products, basis, alpha, beta, last_beta, norm_estimate, status)`` (status as an int code);
    ``basis`` and ``beta`` then carry one entry more than a limit or a breakdown keeps.
    """
    n = vectors.shape[1]
    # The block: independent products, PARALLEL_PRODUCTS at once (what the memory plan counts with).
    products = tf.map_fn(matvec, vectors, parallel_iterations=PARALLEL_PRODUCTS, fn_output_signature=tf.float64)

    def more(basis, alpha, beta, last_beta, norm_estimate, status):
        return tf.logical_and(max_steps > tf.shape(alpha)[0], tf.equal(status, RUNNING))

    def body(basis, alpha, beta, last_beta, norm_estimate, status):
        w = matvec(basis[tf.shape(alpha)[0]])
        return _lanczos_step(w, basis, alpha, beta, norm_estimate, k, tol, largest, min_steps, max_steps)

    loop_vars = (basis, alpha, beta, tf.constant(np.inf, tf.float64), norm_estimate, tf.constant(RUNNING))
    matrix, vector, scalar = tf.TensorShape([None, n]), tf.TensorShape([None]), tf.TensorShape([])
    invariants = (matrix, vector, vector, scalar, scalar, scalar)
    return (products,) + tuple(tf.while_loop(more, body, loop_vars, shape_invariants=invariants))


class RetainedProducts:
    """The traced retained-product function of a :class:`~tfminima.hessian.products.HessianProducts`.

    :meth:`block` multiplies a block of vectors; :meth:`runner` makes the
    :data:`~tfminima.hessian.krylov.Runner` that :func:`~tfminima.hessian.krylov.lanczos` takes; both
    over one placed batch, through one traced function (traced once a batch shape).
    """

    def __init__(self, fns):
        self.fns = fns
        self.run = tf.function(self._run, autograph=False, reduce_retracing=True)
        self.along_gradient = tf.function(self._along_gradient, autograph=False, reduce_retracing=True)

    def _retain(self, state, x, y, inv_n):
        """Each replica's first gradient, kept on its tape: ``(gradient, matvec)``, the flat float64
        gradient (per replica) and ``matvec(v)``, ``H v`` summed over the replicas' second backward passes."""
        fns, strategy = self.fns, self.fns.strategy
        retained: dict[int, tuple] = {}  # replica id -> (tape, gradient, values), filled at trace time

        def replica_id() -> int:
            return int(tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group))

        def first(state, x, y, inv_n):
            values = list(state[0])
            tape, grads = fns.retained_gradient(values, state[1], x, y, inv_n)
            retained[replica_id()] = (tape, grads, values)
            return flatten_tensors(grads)

        def second(vec):
            tape, grads, values = retained[replica_id()]
            return fns.second_backward(tape, grads, values, vec)

        gradient = strategy.run(first, args=(state, x, y, inv_n))

        def matvec(vec):
            return self._summed(strategy.run(second, args=(vec,)))

        return gradient, matvec

    def _summed(self, per_replica):
        strategy = self.fns.strategy
        if strategy.num_replicas_in_sync == 1:
            return per_replica
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def _run(self, state, x, y, inv_n, vectors, basis, alpha, beta, norm_estimate, controls, tol):
        _, matvec = self._retain(state, x, y, inv_n)
        k, min_steps, max_steps, largest = (controls[i] for i in range(4))
        return retained_loop(
            matvec, vectors, basis, alpha, beta, norm_estimate, k, tol, tf.cast(largest, tf.bool), min_steps, max_steps
        )

    def _along_gradient(self, state, x, y, inv_n):
        """``(‖g‖², gᵀ H g)`` for the gradient ``g`` of the batch's loss, over one forward pass and first
        gradient: the second backward pass takes ``g`` itself (summed over the replicas first)."""
        gradient, matvec = self._retain(state, x, y, inv_n)
        g = self._summed(gradient)
        return tf.tensordot(g, g, 1), tf.tensordot(g, matvec(g), 1)

    def concrete(self, state, x, y, inv_n, n: int):
        """The concrete function for this batch, whatever the block and the basis passed in."""
        matrix, vector = tf.TensorSpec([None, n], tf.float64), tf.TensorSpec([None], tf.float64)
        scalar = tf.TensorSpec([], tf.float64)
        return self.run.get_concrete_function(
            state, x, y, inv_n, matrix, matrix, vector, vector, scalar, tf.TensorSpec([4], tf.int32), scalar
        )

    def block(self, call, state, x, y, inv_n, vectors) -> tf.Tensor:
        """``H`` times the rows of ``vectors`` (float64 ``(b, n)``) on this batch, through ``call``
        (:meth:`concrete`): no Lanczos step is asked for."""
        n = int(vectors.shape[1])
        empty = tf.zeros([0], tf.float64)
        out = call(
            state, x, y, inv_n, vectors, tf.zeros([1, n], tf.float64), empty, empty, tf.constant(0.0, tf.float64),
            tf.constant([1, 1, 0, 1], tf.int32), tf.constant(0.0, tf.float64),
        )
        return out[0]

    def runner(self, state_fn, x, y, inv_n, n: int, on_products=None):
        """A runner over the placed batch ``(x, y)`` at the weights ``state_fn()`` returns at each call;
        ``on_products(count)`` is told how many products each call took."""
        call = self.concrete(state_fn(), x, y, inv_n, n)
        none = tf.zeros([0, n], tf.float64)

        def run(process: LanczosProcess, rule: StopRule) -> RunnerOutcome:
            before = process.steps
            controls = tf.constant([rule.k, rule.min_steps, process.max_steps, int(rule.largest)], tf.int32)
            out = call(
                state_fn(), x, y, inv_n, none, tf.constant(process.basis()), tf.constant(process.alpha, tf.float64),
                tf.constant(process.beta, tf.float64), tf.constant(process.norm_estimate, tf.float64), controls,
                tf.constant(rule.tol, tf.float64),
            )
            _, basis, alpha, beta, last_beta, norm_estimate, status = (t.numpy() for t in out)
            status = _STATUS[int(status)]
            if status != "converged":  # the last basis vector is not kept, nor β after a breakdown
                basis = basis[:-1]
                beta = beta[:-1] if status == "breakdown" else beta
            if on_products is not None:
                on_products(len(alpha) - before)
            return RunnerOutcome(basis, alpha, beta, float(last_beta), float(norm_estimate), status)

        return run
