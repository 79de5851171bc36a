"""Interpolation between minima, batch-norm recomputation and ε-sharpness."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfminima import hessian, landscape


def _bn_model():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def setup(float64_policy):
    """A batch-norm classifier and two distinct end points (weights after two different short fits)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    xv = rng.standard_normal((40, 4))
    yv = (xv[:, 0] + xv[:, 1] > 0).astype(np.int64)
    model = _bn_model()
    model.optimizer = keras.optimizers.SGD(0.1)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    a = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    b = model.get_weights()
    return model, (x, y), (xv, yv), a, b


def test_evaluate_matches_keras_evaluate(setup):
    model, (x, y), _, a, _ = setup
    model.set_weights(a)
    loss, acc = landscape.evaluate(model, (x, y), batch_size=32)
    keras_loss, keras_acc = model.evaluate(x, y, batch_size=32, verbose=0)
    assert abs(loss - keras_loss) < 1e-9 * max(1.0, keras_loss)
    assert acc == pytest.approx(keras_acc, abs=1e-12)
    assert hessian.HessianOperator(model, (x, y), batch_size=32).evaluate() == (loss, acc)  # one implementation


def test_interpolating_statistics_reproduces_both_end_points_exactly(setup):
    model, train, val, a, b = setup
    expected = []
    for w in (a, b):
        model.set_weights(w)
        expected.append(landscape.evaluate(model, train) + landscape.evaluate(model, val))
    model.set_weights(b)
    before = model.get_weights()
    res = landscape.interpolate(model, a, b, train, alphas=[0.0, 0.5, 1.0], val_data=val, bn="interpolate")
    for i, row in ((0, expected[0]), (2, expected[1])):
        got = (res.train_loss[i], res.train_accuracy[i], res.val_loss[i], res.val_accuracy[i])
        assert got == row  # exactly: (1−0)·a + 0·b is a, bit for bit
    assert res.train_loss[1] != res.train_loss[0]
    for w, w0 in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, w0)


def test_default_alphas_span_minus_one_to_two(setup):
    model, train, _, a, b = setup
    res = landscape.interpolate(model, a, b, train)
    assert len(res.alphas) == 31 and res.alphas[0] == -1.0 and res.alphas[-1] == 2.0
    assert res.val_loss is None and res.bn == "recompute"
    assert np.all(np.isfinite(res.train_loss)) and np.all((0 <= res.train_accuracy) & (res.train_accuracy <= 1))


def test_recompute_batch_norm_gives_population_statistics(setup):
    model, (x, y), _, a, _ = setup
    model.set_weights(a)
    bn = model.layers[1]
    pre = model.layers[0](x).numpy()  # the batch-norm layer's inputs
    momentum = bn.momentum
    assert landscape.recompute_batch_norm(model, (x, y), batch_size=32) == 1  # 32/32/26: uneven batches
    np.testing.assert_allclose(bn.moving_mean.numpy(), pre.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bn.moving_variance.numpy(), pre.var(axis=0), rtol=1e-12, atol=1e-12)
    assert bn.momentum == momentum
    model.set_weights(a)


def test_recompute_differs_from_interpolated_statistics_between_end_points(setup):
    model, train, _, a, b = setup
    rec = landscape.interpolate(model, a, b, train, alphas=[0.5], bn="recompute")
    mix = landscape.interpolate(model, a, b, train, alphas=[0.5], bn="interpolate")
    model.set_weights([0.5 * (wa + wb) for wa, wb in zip(a, b)])
    landscape.recompute_batch_norm(model, train)
    assert rec.train_loss[0] == landscape.evaluate(model, train)[0]
    assert rec.train_loss[0] != mix.train_loss[0]
    model.set_weights(a)


def test_convex_loss_lies_below_the_chord(float64_policy):
    """Logistic regression is convex: along the segment the loss is under the straight line."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((80, 3))
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.standard_normal(80) > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    a = model.get_weights()
    b = [w + rng.standard_normal(w.shape) for w in a]
    res = landscape.interpolate(model, a, b, (x, y), alphas=np.linspace(0, 1, 11))
    chord = (1 - res.alphas) * res.train_loss[0] + res.alphas * res.train_loss[-1]
    assert np.all(res.train_loss <= chord + 1e-12)
    same = landscape.interpolate(model, a, b, (x, y), alphas=np.linspace(0, 1, 11), bn="interpolate")
    np.testing.assert_array_equal(same.train_loss, res.train_loss)  # no batch norm: modes agree


@pytest.mark.parametrize("method", ["pgd", "lbfgsb"])
def test_epsilon_sharpness_is_nonnegative_grows_with_epsilon_and_restores(setup, method):
    model, train, _, _, b = setup
    model.set_weights(b)
    values = [
        landscape.epsilon_sharpness(model, train, epsilon=eps, steps=5, method=method).value
        for eps in (1e-4, 1e-3, 1e-2)
    ]
    assert values[0] >= 0 and values[0] < values[1] < values[2]
    for w, w0 in zip(model.get_weights(), b):
        np.testing.assert_array_equal(w, w0)


def test_epsilon_sharpness_matches_first_order_prediction(setup):
    """For tiny ε the box maximum is L + Σ ε(|θ|+1)|∂L/∂θ|: projected ascent must reach it."""
    model, train, _, _, b = setup
    model.set_weights(b)
    eps = 1e-6
    loss, grad = hessian.HessianOperator(model, train).loss_and_gradient()
    theta = hessian.get_flat_weights(model)
    predicted = 100 * np.sum(eps * (np.abs(theta) + 1) * np.abs(grad)) / (1 + loss)
    res = landscape.epsilon_sharpness(model, train, epsilon=eps, steps=4, lr=0.5)
    assert res.loss == loss and res.max_loss >= loss
    assert res.value == pytest.approx(predicted, rel=1e-3)
    assert res.gradient_count == 4 + 2


def test_interpolate_validates_arguments(setup):
    model, train, _, a, b = setup
    with pytest.raises(ValueError, match="bn"):
        landscape.interpolate(model, a, b, train, bn="average")
    with pytest.raises(ValueError, match="get_weights"):
        landscape.interpolate(model, a[:-1], b, train)


def test_dataset_input(setup):
    model, (x, y), _, a, b = setup
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(25)
    res_ds = landscape.interpolate(model, a, b, dataset, alphas=[0.25], bn="recompute")
    res_np = landscape.interpolate(model, a, b, (x, y), alphas=[0.25], bn="recompute", batch_size=25)
    assert res_ds.train_loss[0] == pytest.approx(res_np.train_loss[0], rel=1e-12)


@pytest.mark.parametrize("points, low, high", [(11, -1.0, 2.0), (31, -1.0, 2.0), (7, -0.5, 1.5), (4, 0.2, 0.8), (2, -3.0, 5.0)])
def test_every_interpolation_grid_holds_both_minima(points, low, high):
    from tfminima.landscape import alpha_grid

    grid = alpha_grid(points, low, high)
    assert 0.0 in grid.tolist() and 1.0 in grid.tolist()  # exactly: the minima themselves
    assert np.all(np.diff(grid) > 0) and len(grid) <= points + 2
    assert grid[0] == min(low, 0.0) and grid[-1] == max(high, 1.0)
    # the grid's values as a user reads them: -0.7, not -0.7000000000000001
    assert set(np.round(np.linspace(low, high, points), 12)) <= set(grid.tolist())
