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
    n = len(g)
    G = g.mean(axis=0)
    C = (g - G).T @ (g - G) / n
    res = noise.gradient_covariance_trace(model, (x, y), chunk_size=chunk_size)
    assert res.num_examples == 29 and res.population is None
    # the examples' own moments
    assert res.trace_cov_raw == pytest.approx(np.trace(C), rel=1e-12)
    assert res.grad_norm_sq_raw == pytest.approx(G @ G, rel=1e-12)
    assert res.mean_sq_norm == pytest.approx(np.mean(np.sum(g**2, axis=1)), rel=1e-12)
    assert res.b_simple_raw == pytest.approx(np.trace(C) / (G @ G), rel=1e-12)
    # a sample of an unlimited population: s² = n/(n−1)·Tr(C) estimates Tr(C), ‖Ĝ‖² − s²/n estimates ‖G‖²
    s2 = np.trace(C) * n / (n - 1)
    assert res.trace_cov == pytest.approx(s2, rel=1e-12)
    assert res.grad_norm_sq == pytest.approx(G @ G - s2 / n, rel=1e-12)
    assert res.mean_sq_norm == pytest.approx(res.trace_cov + res.grad_norm_sq, rel=1e-12)
    assert res.gradient_resolved == (G @ G - s2 / n > 0)
    expected = s2 / (G @ G - s2 / n) if res.gradient_resolved else np.inf
    assert res.b_simple == pytest.approx(expected, rel=1e-12)
    assert noise.gradient_noise_scale(model, (x, y), chunk_size=chunk_size) == pytest.approx(res.b_simple, rel=1e-12)
    # the whole population: nothing to estimate, the unbiased values are the examples' own
    whole = noise.gradient_covariance_trace(model, (x, y), chunk_size=chunk_size, population=n)
    assert (whole.trace_cov, whole.grad_norm_sq) == (whole.trace_cov_raw, whole.grad_norm_sq_raw)
    assert whole.b_simple == whole.b_simple_raw == pytest.approx(np.trace(C) / (G @ G), rel=1e-12)
    # a sample of 100 without replacement: the finite-population correction
    part = noise.gradient_covariance_trace(model, (x, y), chunk_size=chunk_size, population=100)
    assert part.trace_cov == pytest.approx(s2 * 99 / 100, rel=1e-12)
    assert part.grad_norm_sq == pytest.approx(G @ G - s2 * (1 / n - 1 / 100), rel=1e-12)
    # the mean per-example gradient is the full-data gradient of the Hessian module
    _, full = hessian.HessianOperator(model, (x, y)).loss_and_gradient()
    np.testing.assert_allclose(G, full, rtol=0, atol=1e-13)


def test_gradient_noise_from_moments_edge_cases():
    """Fewer examples than an estimate needs, or more than the population has, are errors; a non-positive
    unbiased ‖G‖² gives b_simple = inf with gradient_resolved False (its raw value stays finite)."""
    mean = np.array([0.1, 0.0])
    with pytest.raises(ValueError, match="at least 2"):
        noise.GradientNoise.from_moments(1, mean, 0.0)
    with pytest.raises(ValueError, match="population of 10"):
        noise.GradientNoise.from_moments(11, mean, 1.0, population=10)
    one = noise.GradientNoise.from_moments(1, mean, 0.0, population=1)  # the whole population of one
    assert one.trace_cov == 0.0 and one.grad_norm_sq == pytest.approx(0.01)
    noisy = noise.GradientNoise.from_moments(4, mean, 3.0)  # s² = 1, ‖Ĝ‖² − s²/4 = 0.01 − 0.25 < 0
    assert noisy.grad_norm_sq == pytest.approx(0.01 - 0.25) and not noisy.gradient_resolved
    assert noisy.b_simple == np.inf and noisy.b_simple_raw == pytest.approx(0.75 / 0.01)
    assert noisy.mean_sq_norm == pytest.approx(noisy.trace_cov + noisy.grad_norm_sq)


def softmax_regression_population(num_examples=10_000, features=20, classes=10, seed=0):
    """A softmax regression whose labels come from a teacher, at weights off the teacher's, and its
    per-example gradients in closed form: g_i = [x_i ⊗ (p_i − e_{y_i}), p_i − e_{y_i}] (float64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_examples, features))
    teacher = 0.6 * rng.standard_normal((features, classes))
    p = tf.nn.softmax(x @ teacher).numpy()
    y = np.array([rng.choice(classes, p=pi / pi.sum()) for pi in p])
    kernel = teacher + 0.3 * rng.standard_normal((features, classes))
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(classes)])
    model.layers[0].kernel.assign(kernel)
    model.layers[0].bias.assign(np.zeros(classes))
    residual = tf.nn.softmax(x @ kernel).numpy()
    residual[np.arange(num_examples), y] -= 1.0
    grads = np.concatenate([(x[:, :, None] * residual[:, None, :]).reshape(num_examples, -1), residual], 1)
    return model, x, y, grads


def test_b_simple_is_unbiased_against_exact_population_moments(float64_policy):
    """The issue's reproduction: on a 10,000-example softmax regression (B_simple = 281 exactly), the
    median of the plug-in Tr(C)/‖Ĝ‖² over 512-example subsets is ~1/3 low (183: it cannot exceed ~n); the
    unbiased estimate's median is within 10 % (278) and its ‖G‖² and Tr(C) are unbiased (mean within 3
    standard errors of the exact values over 200 subsets)."""
    model, x, y, grads = softmax_regression_population()
    N, n = len(x), 512
    G = grads.mean(0)
    exact_trace = float(np.sum((grads - G) ** 2) / N)
    exact_b = exact_trace / float(G @ G)
    whole = noise.gradient_covariance_trace(model, (x, y), population=N)
    assert whole.trace_cov == pytest.approx(exact_trace, rel=1e-10)
    assert whole.grad_norm_sq == pytest.approx(G @ G, rel=1e-10)
    assert whole.b_simple == pytest.approx(exact_b, rel=1e-10)
    assert 150 < exact_b < 500  # comparable with n: where the plug-in ratio fails

    rng = np.random.default_rng(1)
    results = []
    for _ in range(200):
        idx = rng.choice(N, n, replace=False)
        results.append(noise.gradient_covariance_trace(model, (x[idx], y[idx]), population=N))
    b = np.array([r.b_simple for r in results])
    b_raw = np.array([r.b_simple_raw for r in results])
    assert np.median(b_raw) < 0.8 * exact_b  # the bias the raw value keeps
    assert abs(np.median(b) - exact_b) < 0.1 * exact_b
    for field, exact in (("grad_norm_sq", G @ G), ("trace_cov", exact_trace)):
        values = np.array([getattr(r, field) for r in results])
        assert abs(values.mean() - exact) < 3 * values.std(ddof=1) / np.sqrt(len(values)), field
    raw = np.array([r.grad_norm_sq_raw for r in results])
    excess = exact_trace * N / (N - 1) * (1 / n - 1 / N)  # E‖Ĝ‖² − ‖G‖² without replacement
    assert abs(raw.mean() - G @ G - excess) < 3 * raw.std(ddof=1) / np.sqrt(len(raw))
    assert raw.mean() - G @ G > 10 * raw.std(ddof=1) / np.sqrt(len(raw))  # the raw value is biased


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
    assert res.trace_cov_raw == pytest.approx(np.trace(np.cov(g.T, bias=True)), rel=1e-12)
    assert res.grad_norm_sq_raw == pytest.approx(g.mean(0) @ g.mean(0), rel=1e-12)
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
    n = len(g)
    G = g.mean(axis=0)
    C = (g - G).T @ (g - G) / n
    Hm = exact_hessian(model, x, y)
    wh, vh = np.linalg.eigh(Hm)
    wc, vc = np.linalg.eigh(C)
    population = 200  # the 29 examples as a sample of 200, drawn without replacement
    s2 = np.trace(C) * n / (n - 1)
    trace_c, g2 = s2 * (1 - 1 / population), G @ G - s2 * (1 / n - 1 / population)
    res = noise.theory_check(model, (x, y), lr=0.1, batch_size=8, momentum=0.5, population=population,
                             tol=1e-10, trace_probes=200)
    assert res.noise_scale == pytest.approx(0.1 / 0.5 / 8)
    assert res.predicted_loss == pytest.approx(0.2 / 32 * res.trace_h, rel=1e-12)
    assert res.loss_ratio == pytest.approx(res.loss / res.predicted_loss, rel=1e-12)
    assert res.predicted_loss_c == pytest.approx(0.2 / 32 * trace_c, rel=1e-12)
    assert res.loss_ratio_c == pytest.approx(res.loss / res.predicted_loss_c, rel=1e-12)
    assert abs(res.trace_h - np.trace(Hm)) <= 3 * res.trace_h_stderr
    assert res.trace_c == pytest.approx(trace_c, rel=1e-12)
    assert res.trace_c_raw == pytest.approx(np.trace(C), rel=1e-12)
    assert res.trace_ratio == pytest.approx(res.trace_c / res.trace_h, rel=1e-12)
    assert res.lambda_max_h == pytest.approx(wh[-1], rel=1e-8)
    assert res.lambda_max_c == pytest.approx(wc[-1], rel=1e-8)
    assert res.top_cosine == pytest.approx(abs(vh[:, -1] @ vc[:, -1]), abs=1e-6)
    assert res.rayleigh_alignment == pytest.approx(vh[:, -1] @ C @ vh[:, -1] / wc[-1], abs=1e-6)
    assert res.grad_norm_sq == pytest.approx(g2, rel=1e-12) and res.grad_norm_sq_raw == pytest.approx(G @ G, rel=1e-12)
    assert res.gradient_resolved == (g2 > 0)
    assert res.b_simple == pytest.approx(trace_c / g2 if g2 > 0 else np.inf, rel=1e-12)
    assert res.b_simple_raw == pytest.approx(np.trace(C) / (G @ G), rel=1e-12)
    assert res.population == population and res.num_examples == n
    scalars = res.as_dict()
    assert "top_vector_h" not in scalars and all(np.isscalar(v) for v in scalars.values())
    assert "population" not in noise.theory_check(model, (x, y), lr=0.1, batch_size=8, trace_probes=2).as_dict()
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
