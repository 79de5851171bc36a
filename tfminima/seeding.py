"""Seed a run without making TensorFlow instantiate every traced function again.

``keras.utils.set_random_seed`` seeds Python, NumPy, Keras's global SeedGenerator and TensorFlow
(``tf.random.set_seed``). TensorFlow's seeding also clears its kernel caches, to restart the streams of
stateful random kernels, and with them every instantiated function: each run of a sweep then pays the
instantiation of its train step, evaluation and Hessian-product functions again, although their
traces are shared (~0.1 s a function, about as long as a run's whole sharpness measurement at the
quickstart's settings; BENCHMARKS.md, issue 15).

Nothing tfminima traces holds a stateful random kernel: Keras 3 draws dropout, augmentation and
initial weights from stateless ops seeded by its SeedGenerator variables, and the data order comes
from NumPy. So :func:`seed_run` seeds exactly what ``keras.utils.set_random_seed`` seeds (TensorFlow's
global seed and operation-seed sequence included) and keeps the caches. A model whose own code calls
TensorFlow's *stateful* random ops (``tf.random.uniform`` inside ``call``) would continue their streams
from the previous run of the process; ``clear_caches=True`` restores TensorFlow's behaviour.
"""

from __future__ import annotations

import random

import keras


def seed_run(seed: int, *, clear_caches: bool = False) -> None:
    """Seed Python, NumPy, Keras and TensorFlow for a run (``keras.utils.set_random_seed``), keeping
    TensorFlow's instantiated functions unless ``clear_caches``."""
    # TensorFlow's seeding lives on its eager context (no public way to seed without clearing)
    from tensorflow.python.eager import context

    ctx = context.context()
    if clear_caches or not (hasattr(ctx, "_set_global_seed") and hasattr(ctx, "_rng")):
        keras.utils.set_random_seed(seed)  # TensorFlow's own path (also where its internals changed)
        return

    def set_global_seed(value) -> None:  # TensorFlow's Context._set_global_seed without the cache clear
        ctx._seed = value
        ctx._rng = random.Random(int(value))

    ctx._set_global_seed = set_global_seed  # an instance attribute shadows the method for this call only
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del ctx._set_global_seed
