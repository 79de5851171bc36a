"""Sharpness and noise monitors: called directly with a hand-built context, and as Keras callbacks in fit()."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfminima import hessian, noise
from tfminima.hessian import krylov
from tfminima.monitor_specs import MONITOR_SPECS
from tfminima.monitors import MonitorContext, NoiseMonitor, SharpnessMonitor, fixed_subset, monitor_class


def per_example_loss(labels, logits):
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


@pytest.fixture(scope="module")
def problem():
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5).astype("int64")
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=per_example_loss)
    return model, x, y


def make_context(x, y, epochs=3, eval_batch_size=64):
    return MonitorContext(
        train_x=x,
        train_y=y,
        clean_y=y,
        noise_mask=np.zeros(len(y), bool),
        val_x=x[:10],
        val_y=y[:10],
        num_classes=3,
        strategy=tf.distribute.get_strategy(),
        loss_fn=per_example_loss,
        seed=0,
        epochs=epochs,
        lr_at=lambda e: 0.1 / (1 + e),
        batch_size_at=lambda e: 16 * (1 + e),
        momentum=0.0,
        eval_batch_size=eval_batch_size,
    )


def full_hessian(op):
    return np.stack([op.matvec(e) for e in np.eye(op.n)])


def test_registered_and_built_from_the_config_defaults():
    for name, cls in (("sharpness", SharpnessMonitor), ("noise", NoiseMonitor)):
        assert monitor_class(name) is cls
        monitor = cls(**MONITOR_SPECS[name]().model_dump())
        assert monitor.kind == name and monitor.every == 5
    assert SharpnessMonitor().samples == 2048 and NoiseMonitor().samples == 512
    with pytest.raises(ValueError, match="method"):
        SharpnessMonitor(method="arnoldi")
    with pytest.raises(ValueError, match="samples"):
        NoiseMonitor(samples=0)


def test_fixed_subset_is_reproducible_and_capped():
    a, b = fixed_subset(300, 50, 7), fixed_subset(300, 50, 7)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, fixed_subset(300, 50, 8))
    np.testing.assert_array_equal(fixed_subset(20, 50, 0), np.arange(20))


def test_sharpness_measure_matches_the_hessian_of_its_subset(problem):
    model, x, y = problem
    monitor = SharpnessMonitor(
        every=1, k=2, samples=100, tol=1e-6, trace_probes=50, density=True, seed=3, density_runs=3, density_steps=20
    )
    monitor.set_model(model)
    monitor.setup(make_context(x, y))
    np.testing.assert_array_equal(monitor.indices, fixed_subset(300, 100, 3))
    out = monitor.measure(0)
    op = hessian.HessianOperator(model, (x[monitor.indices], y[monitor.indices]), loss=per_example_loss)
    exact = np.linalg.eigvalsh(full_hessian(op))
    np.testing.assert_allclose(out["eigenvalues"], exact[::-1][:2], rtol=1e-5)
    assert out["lambda_max"] == out["eigenvalues"][0] and out["converged"] == 1.0
    assert abs(out["trace"] - exact.sum()) <= 3 * out["trace_stderr"] and out["trace_hvps"] == 50
    assert sum(out["density_weights"]) == pytest.approx(1.0)
    assert out["hvps"] == out["eigen_hvps"] + 50 + monitor.density_runs * min(monitor.density_steps, op.n)
    assert out["samples"] == 100 and out["seconds"] > 0
    # Same weights again: the warm start from the last eigenvectors, mixed with a random part, is never
    # trusted before MIN_STEPS + k - 1 products (issue 10) and costs no more than the cold start.
    again = monitor.measure(1)
    assert krylov.MIN_STEPS + 1 <= again["eigen_hvps"] <= out["eigen_hvps"]
    np.testing.assert_allclose(again["eigenvalues"], out["eigenvalues"], rtol=1e-5)
    assert again["trace"] == out["trace"]  # the same probes each epoch


@pytest.mark.parametrize("momentum,nesterov,svag", [(0.0, False, 1), (0.9, False, 1), (0.9, True, 2)])
def test_sharpness_stability_frobenius_and_batch_sharpness(problem, momentum, nesterov, svag):
    """stability and batch_stability over the edge 2(1+β)/((1+2β if Nesterov else 1)·η/l) at the epoch's η;
    ‖H‖_F against the subset's exact Hessian; the batch sharpness is the API's on batches of the epoch's S."""
    model, x, y = problem
    ctx = dataclasses.replace(make_context(x, y), momentum=momentum, nesterov=nesterov, svag=svag)
    monitor = SharpnessMonitor(every=1, samples=100, tol=1e-8, trace=False, frobenius=True, frobenius_probes=40,
                               batch_sharpness=True, batches=5, seed=3)
    monitor.set_model(model)
    monitor.setup(ctx)
    out = monitor.measure(1)  # η = 0.05, S = 32
    subset = (x[monitor.indices], y[monitor.indices])
    op = hessian.HessianOperator(model, subset, loss=per_example_loss)
    H = full_hessian(op)
    step = 0.05 / svag
    edge = 2 * (1 + momentum) / (step * ((1 + 2 * momentum) if nesterov else 1))
    assert out["lambda_max"] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-5)
    assert out["stability"] == pytest.approx(out["lambda_max"] / edge, rel=1e-12)
    assert abs(out["frobenius_norm"] - np.linalg.norm(H)) <= 3 * out["frobenius_stderr"]
    assert out["frobenius_norm"] == pytest.approx(hessian.frobenius_norm(op, None, probes=40, seed=3).value, rel=1e-5)
    api = hessian.batch_sharpness(model, subset, 32, batches=5, seed=3, loss=per_example_loss)
    assert out["batch_sharpness_size"] == 32
    assert out["batch_sharpness"] == pytest.approx(api.value, rel=1e-5)
    assert out["batch_sharpness_stderr"] == pytest.approx(api.stderr, rel=1e-4)
    assert out["batch_stability"] == pytest.approx(out["batch_sharpness"] / edge, rel=1e-12)
    assert out["frobenius_hvps"] == 40 and out["batch_sharpness_hvps"] == 5
    assert out["hvps"] == out["eigen_hvps"] + 40 + 5


def test_batch_sharpness_batch_size_is_capped_at_the_subset(problem):
    model, x, y = problem
    monitor = SharpnessMonitor(every=1, samples=20, trace=False, batch_sharpness=True, batches=3)
    monitor.set_model(model)
    monitor.setup(make_context(x, y))
    out = monitor.measure(2)  # S = 48 > 20 examples
    assert out["batch_sharpness_size"] == 20
    # every batch is the whole subset: its values agree, the standard error is round-off
    assert out["batch_sharpness_stderr"] <= 1e-5 * out["batch_sharpness"]
    assert "frobenius_norm" not in out and "trace" not in out


def test_noise_measure_uses_the_scheduled_lr_and_batch_size(problem):
    model, x, y = problem
    monitor = NoiseMonitor(every=1, samples=64, seed=1, tol=1e-8)
    monitor.set_model(model)
    monitor.setup(make_context(x, y))
    out = monitor.measure(2)
    assert out["lr"] == pytest.approx(0.1 / 3) and out["batch_size"] == 48
    subset = (x[monitor.indices], y[monitor.indices])
    # the subset is a sample of the 300 training examples: its unbiased moments are the population's estimates
    stats = noise.gradient_covariance_trace(model, subset, loss=per_example_loss, population=300)
    assert out["population"] == 300 and out["num_examples"] == 64
    for key, value in (("trace_c", stats.trace_cov), ("grad_norm_sq", stats.grad_norm_sq), ("b_simple", stats.b_simple),
                       ("trace_c_raw", stats.trace_cov_raw), ("grad_norm_sq_raw", stats.grad_norm_sq_raw),
                       ("b_simple_raw", stats.b_simple_raw)):
        assert out[key] == pytest.approx(value, rel=1e-6), key
    assert out["gradient_resolved"] == float(stats.gradient_resolved)
    assert out["predicted_loss"] == pytest.approx(out["lr"] / (4 * 48) * out["trace_h"], rel=1e-9)
    assert out["predicted_loss_c"] == pytest.approx(out["lr"] / (4 * 48) * out["trace_c"], rel=1e-9)
    assert "train_loss" not in out  # measured outside fit: no epoch logs
    top = hessian.top_eigenvalues(model, subset, loss=per_example_loss, tol=1e-8)
    assert out["lambda_max_h"] == pytest.approx(top.lambda_max, rel=1e-5)
    assert all(isinstance(v, (int, float)) for v in out.values())


def test_monitors_as_keras_callbacks_in_fit(problem):
    model, x, y = problem
    sharp = SharpnessMonitor(every=2, samples=80, trace_probes=10)
    noisy = NoiseMonitor(every=2, samples=40, trace_probes=10)
    for monitor in (sharp, noisy):
        monitor.setup(make_context(x, y, epochs=3))
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[sharp, noisy, record])
    measured = [i for i, logs in enumerate(seen) if "sharpness/lambda_max" in logs]
    assert measured == [1, 2]  # every 2nd epoch, and always the last
    assert [i for i, logs in enumerate(seen) if "noise/trace_c" in logs] == [1, 2]
    last = seen[-1]
    assert last["sharpness/lambda_max"] > 0 and last["noise/trace_c"] > 0
    assert "sharpness/eigenvalues" not in last  # lists stay out of Keras logs ...
    assert sharp.last["eigenvalues"] == [last["sharpness/lambda_max"]]  # ... but are in monitor.last
    assert noisy.last["lr"] == pytest.approx(0.1 / 3)
    # E[L] is the mean training loss over the epoch's steps: Keras' epoch `loss`, beside the end-point `loss`
    assert noisy.last["train_loss"] == pytest.approx(last["loss"], rel=1e-12)
    assert noisy.last["train_loss_ratio"] == pytest.approx(last["loss"] / noisy.last["predicted_loss"], rel=1e-12)
    assert noisy.last["train_loss_ratio_c"] == pytest.approx(last["loss"] / noisy.last["predicted_loss_c"], rel=1e-12)
    assert noisy.last["loss_ratio_c"] == pytest.approx(noisy.last["loss"] / noisy.last["predicted_loss_c"], rel=1e-12)
    assert noisy.epoch_logs == {}  # held only while measuring


def test_measure_before_setup_fails_clearly(problem):
    model, _, _ = problem
    monitor = SharpnessMonitor()
    monitor.set_model(model)
    with pytest.raises(RuntimeError, match="setup"):
        monitor.measure(0)


def test_the_runs_of_a_sweep_share_the_monitors_traces():
    """Runs whose models are built alike (here: two learning rates) trace the Hessian and covariance
    products once (both monitors measure 64 examples: one data shape, one trace); a model of another
    architecture gets products of its own (asked for, not trained: a third run's fit traced nothing this
    test checks). Each run's numbers stay its own. (The traces are cached per architecture
    for the process: an mlp another test of the same worker trained first had traced them for its shapes.)"""
    from tfminima import config
    from tfminima.train import Trainer, per_example_loss as run_loss

    base = (
        "epochs: 1\n"
        "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
        "optimizer: {batch_size: 32}\n"
        "monitors: [{sharpness: {samples: 64, trace_probes: 4}}, {noise: {samples: 64, trace_probes: 4}}]\n"
    )
    trainers = [Trainer(config.load_text(base + f"model: {{name: mlp, hidden: [{h}]}}\noptimizer: {{lr: {lr}}}\n",
                                         "t.yaml"))
                for h, lr in [(19, 0.05), (19, 0.2), (11, 0.05)]]  # widths no other test uses: fresh traces
    results = [t.fit() for t in trainers[:2]]
    fns = [hessian.traced_functions(t.model, loss=run_loss, mode="reverse", strategy=t.strategy,
                                    architecture=t.architecture()) for t in trainers]
    assert trainers[0].architecture() == trainers[1].architecture() != trainers[2].architecture()
    assert fns[0] is fns[1] and fns[2] is not fns[0]
    # the noise monitor retains its Hessian products, the sharpness monitor (a few products a run)
    # recomputes them: one trace each for the whole sweep
    assert fns[0].retained.run.experimental_get_tracing_count() == 1
    assert fns[0].hvp.experimental_get_tracing_count() == 1
    noise_fns = noise.covariance_functions(trainers[1].model, hessian.ProductOptions(
        loss=run_loss, strategy=trainers[1].strategy, architecture=trainers[1].architecture()))
    assert noise_fns.cov.experimental_get_tracing_count() == 1
    lam = [r.history[-1]["sharpness/lambda_max"] for r in results[:2]]
    op = hessian.HessianOperator(trainers[1].model, trainers[1].state.callbacks.monitors[0].data, loss=run_loss)
    assert lam[0] != lam[1]
    assert hessian.top_eigenvalues(op, None, tol=1e-6).eigenvalues[0] == pytest.approx(lam[1], rel=2e-3)
