"""Gradient covariance, noise scale and the theory check against brute-force per-example gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfminima import hessian, noise

L2 = 2.0**-6


@pytest.fixture(scope="module")
def mlp(float64_policy):
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="tanh", kernel_regularizer=keras.regularizers.L2(L2)),
            keras.layers.Dense(3),
        ]
    )
    x = rng.standard_normal((29, 4))
    y = rng.integers(0, 3, 29)
    return model, x, y


def per_example_gradients(model, x, y):
    """One gradient tape per example: the slow, obviously correct reference."""
    rows = []
    for xi, yi in zip(x, y):
        with tf.GradientTape() as tape:
            logits = model(xi[None])
            loss = keras.losses.sparse_categorical_crossentropy(yi[None], logits, from_logits=True)[0]
            loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        rows.append(np.concatenate([g.numpy().ravel() for g in grads]))
    return np.array(rows)


def exact_hessian(model, x, y):
    values = [v.value for v in model.trainable_variables]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            logits = model(x)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            loss = loss + tf.add_n(model.losses) if model.losses else loss
        grads = inner.gradient(loss, values)
        flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
    jac = outer.jacobian(flat, values)
    return tf.concat([tf.reshape(j, [flat.shape[0], -1]) for j in jac], 1).numpy()


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_trace_of_covariance_matches_brute_force(mlp, chunk_size):
    model, x, y = mlp
    g = per_example_gradients(model, x, y)
    G = g.mean(axis=0)
    C = (g - G).T @ (g - G) / len(g)
    res = noise.gradient_covariance_trace(model, (x, y), chunk_size=chunk_size)
    assert res.num_examples == 29
    assert res.trace_cov == pytest.approx(np.trace(C), rel=1e-12)
    assert res.grad_norm_sq == pytest.approx(G @ G, rel=1e-12)
    assert res.mean_sq_norm == pytest.approx(np.mean(np.sum(g**2, axis=1)), rel=1e-12)
    assert res.b_simple == pytest.approx(np.trace(C) / (G @ G), rel=1e-12)
    assert noise.gradient_noise_scale(model, (x, y), chunk_size=chunk_size) == pytest.approx(res.b_simple, rel=1e-12)
    # the mean per-example gradient is the full-data gradient of the Hessian module
    _, full = hessian.HessianOperator(model, (x, y)).loss_and_gradient()
    np.testing.assert_allclose(G, full, rtol=0, atol=1e-13)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_trace_of_covariance_with_batch_norm_in_both_modes(float64_policy, training):
    """Inference mode (running statistics: examples independent, a vectorised one-example gradient) and
    training mode (batch statistics couple the examples: the Jacobian of the batch's losses), each against
    one tape per example's loss; the batch-norm statistics are left as they were."""
    keras.utils.set_random_seed(6)
    rng = np.random.default_rng(6)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(5), keras.layers.BatchNormalization(),
        keras.layers.Activation("tanh"), keras.layers.Dense(3),
    ])
    bn = model.layers[1]
    bn.moving_mean.assign(np.linspace(-0.4, 0.6, 5))
    bn.moving_variance.assign(np.linspace(0.5, 1.5, 5))
    x, y = rng.standard_normal((13, 4)), rng.integers(0, 3, 13)
    rows = []
    for i in range(len(x)):
        with tf.GradientTape() as tape:  # example i's loss, from the forward pass over the whole batch
            logits = model(x, training=training)
            loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)[i]
        rows.append(np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, model.trainable_variables)]))
    g = np.array(rows)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    res = noise.gradient_covariance_trace(model, (x, y), training=training)
    assert res.trace_cov == pytest.approx(np.trace(np.cov(g.T, bias=True)), rel=1e-12)
    assert res.grad_norm_sq == pytest.approx(g.mean(0) @ g.mean(0), rel=1e-12)
    for v, b in zip(model.non_trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_covariance_operator_matches_explicit_matrix(mlp):
    model, x, y = mlp
    g = per_example_gradients(model, x, y)
    G = g.mean(axis=0)
    C = (g - G).T @ (g - G) / len(g)
    op = noise.CovarianceOperator(model, (x, y), batch_size=10)
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = rng.standard_normal(C.shape[0])
        np.testing.assert_allclose(op.matvec(v), C @ v, rtol=0, atol=1e-12 * max(1.0, np.abs(C @ v).max()))
    assert op.count == 2
    # the product options are those of the Hessian operator it carries; C itself does not depend on them
    reverse = noise.CovarianceOperator(model, (x, y), batch_size=10, mode="reverse", hvp_mode="recomputed")
    assert reverse.hessian.options.mode == "reverse" and reverse.fns is op.fns
    assert reverse.hessian.hvp_mode == "recomputed" and op.hessian.hvp_mode == "retained"
    np.testing.assert_allclose(reverse.matvec(v), C @ v, rtol=0, atol=1e-12 * max(1.0, np.abs(C @ v).max()))
    with pytest.raises(ValueError, match="hvp_mode must be"):
        noise.CovarianceOperator(model, (x, y), hvp_mode="reverse")


def test_theory_check_fields_against_exact_matrices(mlp):
    model, x, y = mlp
    g = per_example_gradients(model, x, y)
    G = g.mean(axis=0)
    C = (g - G).T @ (g - G) / len(g)
    Hm = exact_hessian(model, x, y)
    wh, vh = np.linalg.eigh(Hm)
    wc, vc = np.linalg.eigh(C)
    res = noise.theory_check(model, (x, y), lr=0.1, batch_size=8, momentum=0.5, tol=1e-10, trace_probes=200)
    assert res.noise_scale == pytest.approx(0.1 / 0.5 / 8)
    assert res.predicted_loss == pytest.approx(0.2 / 32 * res.trace_h, rel=1e-12)
    assert res.loss_ratio == pytest.approx(res.loss / res.predicted_loss, rel=1e-12)
    assert abs(res.trace_h - np.trace(Hm)) <= 3 * res.trace_h_stderr
    assert res.trace_c == pytest.approx(np.trace(C), rel=1e-12)
    assert res.trace_ratio == pytest.approx(res.trace_c / res.trace_h, rel=1e-12)
    assert res.lambda_max_h == pytest.approx(wh[-1], rel=1e-8)
    assert res.lambda_max_c == pytest.approx(wc[-1], rel=1e-8)
    assert res.top_cosine == pytest.approx(abs(vh[:, -1] @ vc[:, -1]), abs=1e-6)
    assert res.rayleigh_alignment == pytest.approx(vh[:, -1] @ C @ vh[:, -1] / wc[-1], abs=1e-6)
    assert res.b_simple == pytest.approx(np.trace(C) / (G @ G), rel=1e-12)
    scalars = res.as_dict()
    assert "top_vector_h" not in scalars and all(np.isscalar(v) for v in scalars.values())
    assert res.hvps > 0 and res.cov_products > 0
    # the Hessian side retained (blocks of probes, one traced Lanczos loop) or recomputed: the same numbers
    again = noise.theory_check(
        model, (x, y), lr=0.1, batch_size=8, momentum=0.5, tol=1e-10, trace_probes=200, hvp_mode="recomputed"
    )
    assert (res.hvp_mode, again.hvp_mode) == ("retained", "recomputed")
    assert again.trace_h == pytest.approx(res.trace_h, rel=1e-12)
    assert again.lambda_max_h == pytest.approx(res.lambda_max_h, rel=1e-10)


def test_covariance_equals_hessian_when_labels_come_from_the_model(float64_policy):
    """Fisher identity: with labels drawn from the model's own predictive distribution, C ≈ H."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4000, 3))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.layers[0].kernel.assign(3 * rng.standard_normal((3, 2)))  # a confident model
    probs = tf.nn.softmax(model(x)).numpy()
    y = (rng.random(4000) < probs[:, 1]).astype(np.int64)
    res = noise.theory_check(model, (x, y), lr=0.01, batch_size=32, trace_probes=300, tol=1e-8)
    assert res.trace_ratio == pytest.approx(1.0, abs=0.05)
    assert res.lambda_max_c == pytest.approx(res.lambda_max_h, rel=0.1)
    # H's sharpest direction is (nearly) C's noisiest; the top two eigenvalues are close here, so the
    # Rayleigh quotient is the stable measure, not the cosine between single eigenvectors.
    assert res.rayleigh_alignment > 0.9
    # with every label flipped against the model the identity fails (H does not see labels; C does)
    flipped = noise.gradient_covariance_trace(model, (x, 1 - y))
    assert flipped.trace_cov / res.trace_h > 3


def test_theory_check_validates_arguments(mlp):
    model, x, y = mlp
    with pytest.raises(ValueError, match="lr"):
        noise.theory_check(model, (x, y), lr=0.0, batch_size=8)
