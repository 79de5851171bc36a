"""Traces shared by architecture must not mix models up under a multi-replica strategy.

Under MirroredStrategy a shared trace's ``stateless_call`` computed with its template's variables, not
the values passed in, so the second model of a sweep got the first one's loss, products and evaluation.
Two models of one architecture, different weights: each must get its own numbers, on every path that
shares traces (Hessian products, gradient covariance, the trainer's evaluation step).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfminima import distribute, hessian, noise
from tfminima.evaluation import eval_step

ARCH = "test-mlp-5-8-3"


@pytest.fixture(scope="module")
def setup():
    strategy = distribute.mirrored(["/cpu:0", "/cpu:1"])
    rng = np.random.RandomState(0)
    x, y = rng.randn(64, 5).astype("float32"), rng.randint(0, 3, 64)
    models = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        with strategy.scope():
            models.append(keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                                            keras.layers.Dense(3)]))
    return strategy, models, x, y


def _direct_loss(model, x, y):
    return float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x)))


def test_hessian_products_of_each_model(setup):
    strategy, models, x, y = setup
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses = []
    for model in models:
        op = hessian.HessianOperator(model, (x, y), loss=loss, strategy=strategy, architecture=ARCH)
        value, _ = op.loss_and_gradient()
        losses.append(float(value))
        assert float(value) == pytest.approx(_direct_loss(model, x, y), rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_covariance_of_each_model(setup):
    strategy, models, x, y = setup
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    traces = []
    for model in models:
        shared = noise.gradient_covariance_trace(model, (x, y), loss=loss, strategy=strategy, architecture=ARCH)
        own = noise.gradient_covariance_trace(model, (x, y), loss=loss)
        assert shared.trace_cov == pytest.approx(own.trace_cov, rel=1e-4)
        traces.append(shared.trace_cov)
    assert traces[0] != pytest.approx(traces[1], rel=1e-3)


def test_eval_step_of_each_model(setup):
    strategy, models, x, y = setup
    for model in models:
        step = eval_step(model, strategy, ARCH)
        state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(64))
        total, _, count, _ = step(state, iter(data))
        assert float(total) / float(count) == pytest.approx(_direct_loss(model, x, y), rel=1e-5)
