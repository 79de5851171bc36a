"""seed_run seeds what keras.utils.set_random_seed seeds and keeps TensorFlow's instantiated functions."""

import random

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from tfminima.seeding import seed_run


def draws() -> tuple:
    """The next value of every generator a run's seed sets (TensorFlow's stateful kernels: the test below)."""
    return (random.random(), np.random.random(), context.global_seed(), context.internal_operation_seed(),
            float(keras.random.uniform(())), float(keras.random.normal((), seed=2)))


def test_the_same_streams_as_keras_set_random_seed():
    keras.utils.set_random_seed(7)
    expected = draws()
    seed_run(7)
    assert draws() == expected
    seed_run(8)
    assert draws() != expected


def test_instantiated_functions_are_kept_unless_asked():
    """A stateful random kernel shows the difference: TensorFlow's seeding restarts its stream (by
    clearing the caches that also hold every instantiated function); seed_run lets it go on."""
    stateful = tf.function(lambda: tf.random.uniform(()))
    seed_run(3, clear_caches=True)
    first = float(stateful())
    seed_run(3, clear_caches=True)
    assert float(stateful()) == first
    seed_run(3)
    assert float(stateful()) != first
    assert "_set_global_seed" not in vars(context.context())
