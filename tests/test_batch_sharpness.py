"""Batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] against exact float64 per-batch Hessians and gradients, and
under a 2-replica MirroredStrategy against the one-device values."""

import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfminima import hessian

L2 = 2.0**-6


def build(seed=4):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(6, activation="tanh", kernel_regularizer=keras.regularizers.L2(L2)),
        keras.layers.Dense(3),
    ])


@pytest.fixture(scope="module")
def problem(float64_policy):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 4))
    y = rng.integers(0, 3, 40)
    return build(), x, y


def exact_gradient_and_hessian(model, x, y):
    """Gradient and Hessian of the batch's mean loss plus the L2 penalty, by nested tapes (float64).

    In a tf.function per model, traced once per batch shape: the six batches of 8 below cost one
    Jacobian's vectorisation (the same numbers as eagerly, ~2 CPU-s less)."""
    if model not in _EXACT:
        _EXACT[model] = tf.function(lambda x, y: _exact(model, x, y))
    flat, hess = _EXACT[model](x, y)
    return flat.numpy(), hess.numpy()


_EXACT = weakref.WeakKeyDictionary()


def _exact(model, x, y):
    values = [v.value for v in model.trainable_variables]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            logits = model(x)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            loss = loss + tf.add_n(model.losses)
        grads = inner.gradient(loss, values)
        flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
    jac = outer.jacobian(flat, values)
    return flat, tf.concat([tf.reshape(j, [flat.shape[0], -1]) for j in jac], 1)


def test_batch_sharpness_matches_exact_per_batch_hessians(problem):
    model, x, y = problem
    res = hessian.batch_sharpness(model, (x, y), batch_size=8, batches=6, seed=3)
    assert res.indices.shape == (6, 8) and res.batches == 6 and res.batch_size == 8
    assert all(len(np.unique(row)) == 8 for row in res.indices)  # no example twice in a batch
    exact = []
    for row in res.indices:
        g, H = exact_gradient_and_hessian(model, x[row], y[row])
        exact.append(g @ H @ g / (g @ g))
        lam = np.linalg.eigvalsh(H)
        assert lam[0] - 1e-12 <= exact[-1] <= lam[-1] + 1e-12  # a Rayleigh quotient of H_B
    np.testing.assert_allclose(res.values, exact, rtol=1e-10)
    assert res.value == pytest.approx(np.mean(exact), rel=1e-10)
    assert res.stderr == pytest.approx(np.std(exact, ddof=1) / np.sqrt(6), rel=1e-8)
    assert (res.hvp_count, res.gradient_count) == (6, 6) and res.seconds > 0
    assert res.hvp_mode == "retained"  # each batch's gradient and product over one forward pass
    # the same seed draws the same batches; the products' options change nothing exact
    paths = [({"mode": "reverse"}, "retained"), ({"hvp_mode": "recomputed"}, "recomputed"),
             ({"memory_budget": 1}, "recomputed")]  # a batch that does not fit: gradient, then a product
    for options, hvp_mode in paths:
        again = hessian.batch_sharpness(model, (x, y), batch_size=8, batches=6, seed=3, **options)
        np.testing.assert_array_equal(again.indices, res.indices)
        np.testing.assert_allclose(again.values, exact, rtol=1e-10)
        assert again.hvp_mode == hvp_mode
    other = hessian.batch_sharpness(model, (x, y), batch_size=8, batches=6, seed=4)
    assert not np.array_equal(other.indices, res.indices)


def test_batch_sharpness_from_a_dataset_and_the_whole_data_as_one_batch(problem):
    """With S = N every batch is the data: the value is gᵀHg/‖g‖² of the full loss, exactly."""
    model, x, y = problem
    g, H = exact_gradient_and_hessian(model, x, y)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    res = hessian.batch_sharpness(model, ds, batch_size=40, batches=2)
    np.testing.assert_allclose(res.values, [g @ H @ g / (g @ g)] * 2, rtol=1e-10)
    with pytest.raises(ValueError, match="batch_size must be between 1 and the 40 examples"):
        hessian.batch_sharpness(model, (x, y), batch_size=41)
    with pytest.raises(ValueError, match="batches must be >= 1"):
        hessian.batch_sharpness(model, (x, y), batch_size=8, batches=0)


def test_batch_sharpness_under_a_mirrored_strategy_equals_one_device(problem):
    """Batches of 9 split 4/5 over two logical CPUs: each batch's gradient and product are the one-device ones."""
    model, x, y = problem
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with mirrored.scope():
        multi = build()
    multi.set_weights(model.get_weights())
    single = hessian.batch_sharpness(model, (x, y), batch_size=9, batches=4, seed=1)
    for hvp_mode in ("retained", "recomputed"):
        both = hessian.batch_sharpness(multi, (x, y), batch_size=9, batches=4, seed=1, strategy=mirrored,
                                       hvp_mode=hvp_mode)
        assert both.hvp_mode == hvp_mode
        np.testing.assert_array_equal(both.indices, single.indices)
        np.testing.assert_allclose(both.values, single.values, rtol=1e-12)
