"""For tests/test_hessian.py: landscape instruments under MirroredStrategy against the default strategy.

Uses the two logical CPU devices tests/conftest.py configures. Builds the same weights once under a
2-replica MirroredStrategy and once on the default strategy, computes each instrument both ways and
returns ``{"replicas": 2, "checks": {name: [relative difference, bound]}, "modes": {name: hvp_mode}}``. The
retained paths (blocks over each replica's retained first gradient, the Lanczos loop in cross-replica
context over them) and the recomputed ones are both checked.
"""


import keras
import numpy as np
import tensorflow as tf

from tfminima import distribute, hessian, landscape, noise


def build(dtype):
    keras.config.set_dtype_policy(dtype)
    keras.config.set_floatx(dtype)
    try:
        return keras.Sequential(
            [
                keras.Input((5,)),
                keras.layers.Dense(7, activation="tanh", kernel_regularizer=keras.regularizers.L2(1e-3)),
                keras.layers.Dense(3),
            ]
        )
    finally:
        keras.config.set_dtype_policy("float32")
        keras.config.set_floatx("float32")


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def compare() -> dict:
    mirrored = distribute.mirrored(["/cpu:0", "/cpu:1"])
    default = tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 5))
    y = rng.integers(0, 3, 37)
    checks, modes = {}, {}
    for dtype, bound in (("float64", 1e-10), ("float32", 1e-6)):
        keras.utils.set_random_seed(1)
        single = build(dtype)
        with mirrored.scope():
            multi = build(dtype)
        multi.set_weights(single.get_weights())
        data = (x.astype(dtype), y)
        v = rng.standard_normal(hessian.get_flat_weights(single).size)
        both = {"single": (single, default), "mirrored": (multi, mirrored)}
        out = {}
        block = rng.standard_normal((3, v.size))
        for key, (model, strategy) in both.items():
            # One batch of 37 splits 18/19 over the replicas; batches of 10 (10,10,10,7) split 5/5 and 3/4.
            op = hessian.HessianOperator(model, data, strategy=strategy, batch_size=64)
            loss, grad = op.loss_and_gradient()
            out[key] = {"loss": loss, "gradient": grad, "hvp": op.matvec(v)}
            if dtype == "float32":
                continue
            batched = hessian.HessianOperator(model, data, strategy=strategy, batch_size=10)
            recomputed = hessian.HessianOperator(model, data, strategy=strategy, batch_size=10, hvp_mode="recomputed")
            chunked = hessian.HessianOperator(
                model, data, strategy=strategy, batch_size=10, memory_budget=batched.plan.kept_bytes - 1
            )
            eig = hessian.top_eigenvalues(batched, None, k=2, tol=1e-10)
            tr = hessian.trace(batched, None, max_hvps=20)
            dens = hessian.density(batched, None, runs=2, steps=12)
            if key == "mirrored":
                modes.update(lanczos=eig.hvp_mode, trace=tr.hvp_mode, density=dens.hvp_mode,
                             chunked=chunked.hvp_mode, chunked_batches=len(chunked.plan.batches))
            out[key].update(
                hvp_batches=batched.matvec(v),
                hvp_reverse=hessian.hvp(model, data, v, strategy=strategy, batch_size=64, mode="reverse"),
                block=batched.matmat(block),
                block_chunked=chunked.matmat(block),
                eigenvalues=eig.eigenvalues,
                eigenvalues_recomputed=hessian.top_eigenvalues(recomputed, None, k=2, tol=1e-10).eigenvalues,
                trace=tr.value,
                density=dens.nodes,
                evaluate=landscape.evaluate(model, data, strategy=strategy, batch_size=64),
                trace_cov=noise.gradient_covariance_trace(model, data, strategy=strategy, chunk_size=64).trace_cov,
                cov_matvec=noise.CovarianceOperator(model, data, strategy=strategy, batch_size=64).matvec(v),
            )
        for name in out["single"]:
            checks[f"{dtype}/{name}"] = [rel(out["mirrored"][name], out["single"][name]), bound]
    return {"replicas": mirrored.num_replicas_in_sync, "checks": checks, "modes": modes}

