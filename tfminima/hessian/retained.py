"""Lanczos in one traced function over a retained first gradient: one forward pass a run, not a product.

:class:`RetainedLanczos` traces, once per (model or architecture, options), a function that computes
each replica's first gradient on a persistent tape and then runs the Lanczos recurrence of
:class:`tfminima.hessian.krylov.LanczosProcess` in a ``tf.while_loop`` -- product (a second backward
pass per replica, summed), orthogonalisation against the whole basis twice, β, and the stopping rule of
:class:`~tfminima.hessian.krylov.StopRule` on the Ritz values of ``T`` -- until the rule is met, the
step limit is reached or the Krylov space breaks down. It returns the extended basis to
:func:`~tfminima.hessian.krylov.lanczos`, which checks the rule again in NumPy, restarts after a
breakdown as it always does, and builds the result: the warm start, the minimum Krylov dimension and
the stopping rule are those of the NumPy loop.

Under a ``tf.distribute`` strategy the loop runs in cross-replica context (a collective inside a
replica's while loop is not allowed): each iteration runs the second backward pass on every replica
over the gradient that replica retained on its shard, and sums.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfminima.hessian.krylov import BREAKDOWN, EPS23, LanczosProcess, RunnerOutcome, StopRule

__all__ = ["RetainedLanczos", "lanczos_loop"]

RUNNING, CONVERGED, LIMIT, BROKEN = 0, 1, 2, 3
_STATUS = {CONVERGED: "converged", LIMIT: "limit", BROKEN: "breakdown"}
_TINY = float(np.finfo(np.float64).tiny)


def _converged(alpha, beta, last_beta, k, tol, largest):
    """The stopping rule of :meth:`StopRule.check` on ``T`` built from ``alpha`` and ``beta``."""
    m = tf.shape(alpha)[0]
    T = tf.linalg.diag(alpha) + tf.linalg.diag(beta[: m - 1], k=1) + tf.linalg.diag(beta[: m - 1], k=-1)
    theta, S = tf.linalg.eigh(T)
    idx = tf.cond(largest, lambda: tf.range(m - k, m), lambda: tf.range(k))
    residuals = last_beta * tf.abs(tf.gather(S[-1], idx))
    wanted = tf.abs(tf.gather(theta, idx))
    scale = tf.maximum(tf.reduce_max(tf.abs(theta)), _TINY)
    return tf.reduce_all(residuals <= tol * tf.maximum(wanted, EPS23 * scale))


def lanczos_loop(matvec, basis, alpha, beta, norm_estimate, k, tol, largest, min_steps, max_steps):
    """Continue the Lanczos recurrence in the graph; ``matvec`` a traceable function of a float64 vector.

    ``basis`` holds ``q_0 … q_m`` (``q_m`` next to multiply), ``alpha`` and ``beta`` the ``m`` steps so far.
    Returns ``(basis, alpha, beta, last_beta, norm_estimate, status)`` as
    :class:`~tfminima.hessian.krylov.RunnerOutcome` describes (status as an int code).
    """

    def body(basis, alpha, beta, last_beta, norm_estimate, status):
        j = tf.shape(alpha)[0]
        q = basis[j]
        w = matvec(q)
        a = tf.tensordot(q, w, 1)
        w = w - a * q
        w = tf.cond(j > 0, lambda: w - beta[j - 1] * basis[j - 1], lambda: w)
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
        beta = tf.cond(broken, lambda: beta, lambda: tf.concat([beta, [b]], 0))
        basis = tf.cond(extends, lambda: tf.concat([basis, [w / b]], 0), lambda: basis)
        checked = tf.logical_and(extends, steps >= min_steps)  # min_steps >= k: T has k Ritz values
        done = tf.cond(checked, lambda: _converged(alpha, beta, b, k, tol, largest), lambda: tf.constant(False))
        status = tf.case(
            [(at_limit, lambda: LIMIT), (broken, lambda: BROKEN), (done, lambda: CONVERGED)],
            default=lambda: RUNNING,
        )
        return basis, alpha, beta, b, norm_estimate, status

    n = basis.shape[1]
    loop_vars = (basis, alpha, beta, tf.constant(np.inf, tf.float64), norm_estimate, tf.constant(RUNNING))
    invariants = (
        tf.TensorShape([None, n]),
        tf.TensorShape([None]),
        tf.TensorShape([None]),
        tf.TensorShape([]),
        tf.TensorShape([]),
        tf.TensorShape([]),
    )
    return tf.while_loop(
        lambda *v: tf.equal(v[-1], RUNNING), body, loop_vars, shape_invariants=invariants, maximum_iterations=None
    )


class RetainedLanczos:
    """The traced Lanczos loop of a :class:`~tfminima.hessian.products.HessianProducts`.

    ``run(state, x, y, inv_n, basis, alpha, beta, norm_estimate, controls)`` with ``controls`` =
    ``[k, min_steps, max_steps, largest]`` (int32) and ``tol`` float64; see :func:`lanczos_loop`.
    :meth:`runner` makes the :data:`~tfminima.hessian.krylov.Runner` that
    :func:`~tfminima.hessian.krylov.lanczos` takes, for one placed batch.
    """

    def __init__(self, fns):
        self.fns = fns
        self.run = tf.function(self._run, autograph=False, reduce_retracing=True)

    def _run(self, state, x, y, inv_n, basis, alpha, beta, norm_estimate, controls, tol):
        fns, strategy = self.fns, self.fns.strategy
        retained: dict[int, tuple] = {}  # replica id -> (tape, gradient, values), filled at trace time

        def replica_id() -> int:
            return int(tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group))

        def first(state, x, y, inv_n):
            values = list(state[0])
            tape, grads = fns.retained_gradient(values, state[1], x, y, inv_n)
            retained[replica_id()] = (tape, grads, values)
            return tf.add_n([tf.reduce_sum(tf.cast(g, tf.float64)) for g in grads])

        def second(vec):
            tape, grads, values = retained[replica_id()]
            return fns.second_backward(tape, grads, values, vec)

        strategy.run(first, args=(state, x, y, inv_n))

        def matvec(vec):
            return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(second, args=(vec,)), axis=None)

        k, min_steps, max_steps, largest = (controls[i] for i in range(4))
        return lanczos_loop(
            matvec, basis, alpha, beta, norm_estimate, k, tol, tf.cast(largest, tf.bool), min_steps, max_steps
        )

    def concrete(self, state, x, y, inv_n, n: int):
        """The concrete function for this batch, whatever the size of the basis passed in."""
        dynamic = tf.TensorSpec([None], tf.float64)
        return self.run.get_concrete_function(
            state, x, y, inv_n, tf.TensorSpec([None, n], tf.float64), dynamic, dynamic,
            tf.TensorSpec([], tf.float64), tf.TensorSpec([4], tf.int32), tf.TensorSpec([], tf.float64),
        )

    def runner(self, state_fn, x, y, inv_n, n: int, on_products=None):
        """A runner over the placed batch ``(x, y)`` at the weights ``state_fn()`` returns at each call;
        ``on_products(count)`` is told how many products each call took."""
        call = self.concrete(state_fn(), x, y, inv_n, n)

        def run(process: LanczosProcess, rule: StopRule) -> RunnerOutcome:
            before = process.steps
            controls = tf.constant([rule.k, rule.min_steps, process.max_steps, int(rule.largest)], tf.int32)
            out = call(
                state_fn(), x, y, inv_n, tf.constant(process.basis()), tf.constant(process.alpha, tf.float64),
                tf.constant(process.beta, tf.float64), tf.constant(process.norm_estimate, tf.float64), controls,
                tf.constant(rule.tol, tf.float64),
            )
            basis, alpha, beta, last_beta, norm_estimate, status = (t.numpy() for t in out)
            if on_products is not None:
                on_products(len(alpha) - before)
            return RunnerOutcome(basis, alpha, beta, float(last_beta), float(norm_estimate), _STATUS[int(status)])

        return run
