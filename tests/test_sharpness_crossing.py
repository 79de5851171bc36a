"""The sharpness monitor when the top two Hessian eigenvalues cross between epochs.

A linear least-squares model behind a fixed (non-trainable) linear map ``D``: the loss ``mean((x D w − t)²)``
has the Hessian ``2 Dᵀ (XᵀX/N) D`` in ``w``, whatever ``w``. With whitened inputs and ``D = diag(s) Qᵀ``
it is ``2 Q diag(s²) Qᵀ``: the spectrum is set by ``s``, its eigenvectors by the rotation ``Q``. A callback
swaps ``s₁`` and ``s₂`` before the second epoch, so the eigenvector the monitor warm-starts from is then
exactly the second eigenvector. Real training runs in between (SGD moves ``w``, not ``H``).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfminima.monitors import MonitorContext, SharpnessMonitor

DIM = 40


def squared_error(labels, outputs):
    return tf.reduce_mean(tf.square(outputs - tf.cast(labels, outputs.dtype)), axis=-1)


@pytest.fixture(scope="module")
def crossing(float64_policy):
    rng = np.random.default_rng(21)
    raw = rng.standard_normal((400, DIM))
    white = raw @ np.linalg.inv(np.linalg.cholesky(raw.T @ raw / len(raw))).T  # XᵀX/N = I exactly
    targets = white @ rng.standard_normal(DIM)[:, None]
    q, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    scales = np.concatenate([[1.3, 1.2], np.linspace(0.2, 1.0, DIM - 2)])
    keras.utils.set_random_seed(21)
    mix = keras.layers.Dense(DIM, use_bias=False, trainable=False)
    model = keras.Sequential([keras.Input((DIM,)), mix, keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=squared_error)
    return model, mix, white, targets, q, scales


class SetScales(keras.callbacks.Callback):
    """Sets ``D = diag(s) Qᵀ`` as the kernel of the fixed map before each epoch: ``s`` at epoch 0, then
    with its first two entries swapped."""

    def __init__(self, mix, q, scales):
        super().__init__()
        self.mix, self.q, self.scales = mix, q, scales

    def on_epoch_begin(self, epoch, logs=None):
        s = self.scales.copy()
        if epoch > 0:
            s[[0, 1]] = s[[1, 0]]
        self.mix.kernel.assign((s[:, None] * self.q.T).T)  # Dense computes x @ kernel: kernel = Dᵀ


def context(x, y, epochs):
    return MonitorContext(
        train_x=x, train_y=y, clean_y=y, noise_mask=np.zeros(len(y), bool), val_x=x[:10], val_y=y[:10],
        num_classes=1, strategy=tf.distribute.get_strategy(), loss_fn=squared_error, seed=0, epochs=epochs,
        lr_at=lambda e: 0.01, batch_size_at=lambda e: 40,
    )


def test_a_crossing_of_the_top_two_eigenvalues_is_measured_right(crossing):
    model, mix, x, y, q, scales = crossing
    monitor = SharpnessMonitor(every=1, samples=len(x), trace=False)
    monitor.setup(context(x, y, epochs=3))
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(monitor.last)))
    model.fit(x, y, batch_size=40, epochs=3, verbose=0, callbacks=[SetScales(mix, q, scales), monitor, record])
    top = 2 * max(scales) ** 2  # the same top eigenvalue before and after the swap: a different direction
    for epoch, out in enumerate(seen):
        assert out["lambda_max"] == pytest.approx(top, rel=1e-3), (epoch, out)
        assert out["converged"] == 1.0
    # the measurement after the crossing warm-started on what is now exactly the second eigenvector
    # (lambda 2·1.2²); without the random part and the minimum Krylov dimension it returned that.
    assert seen[1]["eigen_hvps"] >= 10


def test_the_monitor_retains_its_products_when_its_run_makes_enough(crossing):
    """Retained products cost one more function instantiation a run: a run of few products recomputes."""
    from tfminima.monitors import sharpness

    model, mix, x, y, q, scales = crossing
    few = SharpnessMonitor(every=1, samples=len(x), trace=False)
    many = SharpnessMonitor(every=1, samples=len(x), trace_probes=100)
    for monitor, epochs in ((few, 3), (many, 20)):
        monitor.set_model(model)
        monitor.setup(context(x, y, epochs=epochs))
    assert few._hvp_mode() == "recomputed" and many._hvp_mode() == "auto"
    assert 3 * (10 + 2) * len(x) < sharpness.RETAIN_FROM <= 20 * (10 + 2 + 100) * len(x)
    out = many.measure(0)
    assert out["lambda_max"] == pytest.approx(2 * max(scales) ** 2, rel=1e-3)
