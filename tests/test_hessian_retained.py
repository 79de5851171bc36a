"""Retained products (blocks over one forward pass and first gradient, Lanczos in one traced loop) against
exact float64 Hessians, against the recomputed path, and the choice between them."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_hessian import _bn, _conv, _mlp, _unused, exact_hessian

from tfminima import hessian as H
from tfminima.hessian import krylov, memory
from tfminima.hessian.retained import retained_loop

MODELS = {"mlp": _mlp, "conv": _conv, "bn": _bn, "unused": _unused}


@pytest.fixture(scope="module")
def zoo(float64_policy):
    keras.utils.set_random_seed(31)
    rng = np.random.default_rng(31)
    out = {}
    for name, build in MODELS.items():
        model = build()
        x = rng.standard_normal((37,) + ((6, 6, 1) if name == "conv" else (5,)))
        y = rng.integers(0, 3, 37)
        out[name] = (model, x, y, exact_hessian(model, x, y))
    return out


def _close(got, want, scale=None):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * max(1.0, np.abs(want).max() if scale is None else scale))


# --------------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("name", sorted(MODELS))
def test_block_products_match_the_exact_hessian(zoo, name):
    model, x, y, hess = zoo[name]
    vectors = np.random.default_rng(1).standard_normal((7, hess.shape[0]))
    # batches of 10 (10/10/10/7): retained as one merged batch by default, batch by batch under a budget
    # that fits one batch of 10 but not all 37 examples
    op = H.HessianOperator(model, (x, y), batch_size=10)
    assert op.plan.blocks and op.plan.lanczos and len(op.plan.batches) == 1 and op.hvp_mode == "retained"
    _close(op.matmat(vectors), vectors @ hess)
    assert op.hvp_count == 7
    per_batch = memory.retained_bytes(op.fns.forward_bytes(H.model_state(model), *op.batches.items[0]))
    assert per_batch < op.plan.kept_bytes
    chunked = H.HessianOperator(model, (x, y), batch_size=10, memory_budget=per_batch)
    assert chunked.plan.blocks and not chunked.plan.lanczos and len(chunked.plan.batches) == 4
    _close(chunked.matmat(vectors), vectors @ hess)
    assert chunked.lanczos_runner() is None
    nothing = H.HessianOperator(model, (x, y), batch_size=10, memory_budget=per_batch - 1)
    assert not nothing.plan.blocks and nothing.hvp_mode == "recomputed" and nothing.block_size == 1
    _close(nothing.matmat(vectors), vectors @ hess)


def test_the_budget_sets_the_block_size_and_hvp_mode_overrides_it(zoo):
    model, x, y, hess = zoo["mlp"]
    n = hess.shape[0]
    op = H.HessianOperator(model, (x, y))
    assert op.block_size == memory.MAX_BLOCK
    tight = H.HessianOperator(model, (x, y), memory_budget=op.plan.kept_bytes + 16 * n * 3)
    assert tight.block_size == 3
    forced = H.HessianOperator(model, (x, y), hvp_mode="retained", memory_budget=1)
    assert forced.hvp_mode == forced.lanczos_mode == "retained" and forced.block_size == 1
    off = H.HessianOperator(model, (x, y), hvp_mode="recomputed")
    assert off.hvp_mode == off.lanczos_mode == "recomputed" and off.lanczos_runner() is None
    vectors = np.random.default_rng(2).standard_normal((5, n))
    _close(tight.matmat(vectors), vectors @ hess)  # blocks of 3: 3 + 2
    with pytest.raises(ValueError, match="memory_budget"):
        H.HessianOperator(model, (x, y), memory_budget=0)


def test_training_mode_retains_each_batch_for_blocks_and_recomputes_lanczos(zoo):
    """Batch statistics tie a batch's examples: the batches are never merged. The Hessian is then the
    example-weighted sum of the batches' own training-mode Hessians."""
    model, x, y, _ = zoo["bn"]
    bn = model.layers[1]
    saved = [bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()]
    parts = [(x[:20], y[:20]), (x[20:], y[20:])]
    exact = sum(len(px) / len(x) * exact_hessian(model, px, py, training=True) for px, py in parts)
    bn.moving_mean.assign(saved[0]), bn.moving_variance.assign(saved[1])
    op = H.HessianOperator(model, (x, y), training=True, batch_size=20)
    assert op.plan.blocks and not op.plan.lanczos and len(op.plan.batches) == 2
    vectors = np.random.default_rng(3).standard_normal((4, exact.shape[0]))
    _close(op.matmat(vectors), vectors @ exact)
    top = H.top_eigenvalues(op, None, tol=1e-10)
    assert top.hvp_mode == "recomputed"
    assert top.lambda_max == pytest.approx(np.linalg.eigvalsh(exact)[-1], rel=1e-8)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), saved[0])


def test_forward_bytes_are_measured_from_the_graph(zoo):
    model, x, y, _ = zoo["conv"]
    op = H.HessianOperator(model, (x, y), batch_size=10)
    state = H.model_state(model)
    small, large = (op.fns.forward_bytes(state, *batches.items[0]) for batches in (op.batches, op.plan.batches))
    # the conv's activations alone (10 examples × 4×4×2 outputs × 8 bytes, twice: conv and tanh) are a floor
    assert small >= 2 * 10 * 4 * 4 * 2 * 8
    assert large == pytest.approx(small * 37 / 10, rel=0.1)  # linear in the examples, up to the weights' part


# ------------------------------------------------------------------------------- Lanczos, one loop


@pytest.mark.parametrize("name", sorted(MODELS))
def test_retained_matches_eigh(zoo, name):
    model, x, y, hess = zoo[name]
    exact = np.linalg.eigvalsh(hess)[::-1]
    op = H.HessianOperator(model, (x, y), batch_size=10)
    res = H.top_eigenvalues(op, None, k=3, tol=1e-10)
    assert res.hvp_mode == "retained" and res.converged
    np.testing.assert_allclose(res.eigenvalues, exact[:3], rtol=1e-6)
    true_residuals = np.linalg.norm(res.eigenvectors @ hess - res.eigenvalues[:, None] * res.eigenvectors, axis=1)
    np.testing.assert_allclose(res.residuals, true_residuals, atol=1e-9)
    assert res.hvp_count == op.hvp_count
    low = H.top_eigenvalues(op, None, which="smallest", tol=1e-8)
    assert abs(low.eigenvalues[0] - exact[-1]) <= 1e-6 * abs(exact).max()
    again = H.top_eigenvalues(model, (x, y), k=3, tol=1e-10, hvp_mode="recomputed")
    assert again.hvp_mode == "recomputed"
    np.testing.assert_allclose(again.eigenvalues, res.eigenvalues, rtol=1e-9)


@pytest.mark.parametrize("noise", [0.0, 1e-4])
def test_retained_warm_started_on_the_second_eigenvector(zoo, noise):
    model, x, y, hess = zoo["mlp"]
    values, vectors = np.linalg.eigh(hess)
    init = vectors[:, -2] + noise * np.random.default_rng(4).standard_normal(hess.shape[0])
    for seed in range(3):
        res = H.top_eigenvalues(model, (x, y), init=init, seed=seed)
        assert res.hvp_mode == "retained" and res.converged
        assert abs(res.lambda_max - values[-1]) <= 1e-3 * values[-1]
        assert res.hvp_count >= krylov.MIN_STEPS


def _graph_runner(A):
    """A runner over a plain matrix: :func:`retained_loop` with ``matvec = A q`` in a tf.function."""
    A = tf.constant(A)
    loop = tf.function(
        lambda basis, alpha, beta, norm, controls, tol: retained_loop(
            lambda q: tf.linalg.matvec(A, q), tf.zeros([0, A.shape[0]], tf.float64), basis, alpha, beta, norm,
            controls[0], tol, tf.cast(controls[3], tf.bool), controls[1], controls[2],
        ),
        reduce_retracing=True,
    )
    calls = []

    def run(process, rule):
        controls = tf.constant([rule.k, rule.min_steps, process.max_steps, int(rule.largest)])
        out = loop(
            tf.constant(process.basis()), tf.constant(process.alpha, tf.float64), tf.constant(process.beta, tf.float64),
            tf.constant(process.norm_estimate, tf.float64), controls, tf.constant(rule.tol, tf.float64),
        )
        _, basis, alpha, beta, last_beta, norm, status = (t.numpy() for t in out)
        status = {1: "converged", 2: "limit", 3: "breakdown"}[int(status)]
        if status != "converged":
            basis, beta = basis[:-1], beta[:-1] if status == "breakdown" else beta
        calls.append(len(alpha) - process.steps)
        return krylov.RunnerOutcome(basis, alpha, beta, float(last_beta), float(norm), status)

    return run, calls


@pytest.mark.parametrize("k, which", [(1, "largest"), (3, "largest"), (2, "smallest")])
def test_the_graph_loop_is_the_numpy_process(k, which):
    """Same start, same recurrence, same rule: the same steps, Ritz values and vectors to round-off."""
    rng = np.random.default_rng(5)
    ev = np.concatenate([8 + 4 * rng.random(5), rng.normal(0, 0.3, 115)])
    q, _ = np.linalg.qr(rng.standard_normal((120, 120)))
    A = (q * ev) @ q.T
    init = q[:, 1] + 1e-3 * rng.standard_normal(120)
    numpy = H.lanczos(lambda v: A @ v, 120, k, which=which, init=init, seed=2)
    runner, calls = _graph_runner(A)
    graph = H.lanczos(lambda v: A @ v, 120, k, which=which, init=init, seed=2, runner=runner)
    assert graph.hvp_count == numpy.hvp_count and calls == [graph.hvp_count]  # one call, no product more
    np.testing.assert_allclose(graph.eigenvalues, numpy.eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(graph.eigenvectors * numpy.eigenvectors, axis=1)), 1.0, atol=1e-9)


def test_the_graph_loop_hands_breakdowns_and_the_step_limit_back():
    """Rank 2: every Krylov space is 3-dimensional, so the 4 largest need restarts, done by NumPy
    between calls; a limit of 7 steps ends the run unconverged."""
    q, _ = np.linalg.qr(np.random.default_rng(6).standard_normal((50, 50)))
    A = (q * np.concatenate([[5.0, 3.0], np.zeros(48)])) @ q.T
    runner, calls = _graph_runner(A)
    four = H.lanczos(lambda v: A @ v, 50, 4, tol=1e-10, runner=runner)
    np.testing.assert_allclose(four.eigenvalues, [5.0, 3.0, 0.0, 0.0], atol=1e-10)
    assert four.converged and len(calls) > 1 and sum(calls) == four.hvp_count
    runner, calls = _graph_runner(np.diag(np.linspace(1.0, 2.0, 50)))
    with pytest.warns(RuntimeWarning, match="without reaching"):
        short = H.lanczos(lambda v: v, 50, 1, tol=1e-12, max_iter=7, runner=runner)
    assert short.hvp_count == 7 and not short.converged and calls == [7]


# ----------------------------------------------------------------- the instruments on both paths


def test_trace_density_and_frobenius_give_the_same_numbers_on_both_paths(zoo):
    model, x, y, hess = zoo["conv"]
    both = {mode: H.HessianOperator(model, (x, y), batch_size=10, hvp_mode=mode) for mode in ("retained", "recomputed")}
    results = {}
    for mode, op in both.items():
        results[mode] = {
            "hutchinson": H.trace(op, None, tol=0.1, max_hvps=200, seed=3),
            "hutch++": H.trace(op, None, method="hutch++", max_hvps=60, seed=3),
            "density": H.density(op, None, runs=4, steps=30, seed=3),
            "frobenius": H.frobenius_norm(op, None, probes=25, seed=3),
        }
    fast, slow = results["retained"], results["recomputed"]
    for name in fast:
        assert (fast[name].hvp_mode, slow[name].hvp_mode) == ("retained", "recomputed"), name
    np.testing.assert_allclose(fast["hutchinson"].samples, slow["hutchinson"].samples, rtol=1e-10)
    assert fast["hutchinson"].converged and len(fast["hutchinson"].samples) < 200
    assert fast["hutchinson"].hvp_count >= slow["hutchinson"].hvp_count == len(slow["hutchinson"].samples)
    assert abs(fast["hutchinson"].value - np.trace(hess)) <= 4 * fast["hutchinson"].stderr
    assert fast["hutch++"].value == pytest.approx(slow["hutch++"].value, rel=1e-10)
    np.testing.assert_allclose(fast["density"].nodes, slow["density"].nodes, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast["density"].weights, slow["density"].weights, rtol=0, atol=1e-9)
    assert fast["density"].hvp_count == slow["density"].hvp_count == 4 * 30
    assert fast["frobenius"].value == pytest.approx(slow["frobenius"].value, rel=1e-10)
    assert abs(fast["frobenius"].value - np.linalg.norm(hess)) <= 4 * fast["frobenius"].stderr
    assert both["retained"].hvp_count == sum(r.hvp_count for r in fast.values())


def test_block_products_are_traced_once_whatever_the_block(zoo):
    _, x, y, _ = zoo["unused"]
    model = _unused()  # a model of its own: the trace count is per model
    hess = exact_hessian(model, x, y)
    op = H.HessianOperator(model, (x, y))
    rng = np.random.default_rng(7)
    for size in (1, 4, 9):
        vectors = rng.standard_normal((size, hess.shape[0]))
        _close(op.matmat(vectors), vectors @ hess)
    assert op.fns.retained.run.experimental_get_tracing_count() == 1
    H.top_eigenvalues(op, None)  # Lanczos runs through the same traced function
    assert op.fns.retained.run.experimental_get_tracing_count() == 1
    assert np.all(op.matmat(np.ones((2, hess.shape[0])))[:, -2:] == 0.0)  # the unused weight's rows


def test_measurements_run_without_grappler_and_put_the_option_back():
    """Instruments instantiate their functions without Grappler (cheaper after every run's seeding); the
    user's setting comes back afterwards, and a user who disabled Grappler keeps it disabled."""
    from tfminima.hessian.operator import measuring

    def disabled() -> bool:
        return tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)

    assert not disabled()
    with measuring():
        assert disabled()
    assert not disabled()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        with measuring():
            assert disabled()
        assert disabled()
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
