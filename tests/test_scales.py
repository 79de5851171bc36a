"""The edge of stability and the finite-data noise scale against their formulas (no TensorFlow)."""

import subprocess
import sys

import numpy as np
import pytest

from tfminima.report import sharpness as report_sharpness
from tfminima.schedules import eta_over_s_finite
from tfminima.stability import edge_of_stability, stability_ratio


def heavy_ball_is_stable(curvature, lr, momentum, nesterov, steps=4000):
    """Iterate Keras' SGD update on L = ½λθ² from θ = 1: does θ stay bounded?"""
    theta, velocity = 1.0, 0.0
    for _ in range(steps):
        grad = curvature * theta
        velocity = momentum * velocity - lr * grad
        theta = theta + (momentum * velocity - lr * grad if nesterov else velocity)
        if abs(theta) > 1e6:
            return False
    return True


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.5, False), (0.9, False), (0.5, True), (0.9, True)])
def test_the_edge_is_where_the_update_on_a_quadratic_turns_unstable(momentum, nesterov):
    lr = 0.1
    edge = edge_of_stability(lr, momentum, nesterov=nesterov)
    expected = 2 * (1 + momentum) / (lr * ((1 + 2 * momentum) if nesterov else 1))
    assert edge == pytest.approx(expected, rel=1e-15)
    assert heavy_ball_is_stable(0.99 * edge, lr, momentum, nesterov)
    assert not heavy_ball_is_stable(1.01 * edge, lr, momentum, nesterov)
    assert stability_ratio(0.5 * edge, lr, momentum, nesterov=nesterov) == pytest.approx(0.5, rel=1e-15)


def test_svag_steps_at_eta_over_l_and_the_report_uses_the_same_formula():
    assert edge_of_stability(0.4, svag=4) == edge_of_stability(0.1) == pytest.approx(20.0)
    assert stability_ratio(10.0, 0.1, 0.9) == pytest.approx(10.0 * 0.1 / (2 * 1.9), rel=1e-15)
    for args, kwargs in [((0.1,), {}), ((0.3, 0.9), {"nesterov": True}), ((0.2, 0.5), {"svag": 2})]:
        assert report_sharpness.edge(*args, **kwargs) == edge_of_stability(*args, **kwargs)


def test_finite_noise_scale():
    assert eta_over_s_finite(0.1, 100, 1000) == pytest.approx(0.1 / 100 * 0.9, rel=1e-15)
    assert eta_over_s_finite(0.1, 100, 10**12) == pytest.approx(0.1 / 100, rel=1e-9)
    assert eta_over_s_finite(0.1, 1000, 1000) == 0.0 == eta_over_s_finite(0.1, 2000, 1000)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        eta_over_s_finite(0.1, 0, 1000)


def test_without_replacement_a_batch_mean_has_the_finite_population_variance():
    """What the (1 − S/N) factor stands for: over every batch of S of N vectors, the variance of the batch
    mean is Tr(C)/S·(N−S)/(N−1) (C with 1/N), and η/S·(1 − S/N) is η/S times that reduction up to N/(N−1)."""
    from itertools import combinations

    rng = np.random.default_rng(0)
    N, S = 8, 3
    g = rng.standard_normal((N, 4))
    mean = g.mean(0)
    trace_c = np.sum((g - mean) ** 2) / N
    means = np.array([g[list(b)].mean(0) for b in combinations(range(N), S)])
    variance = np.mean(np.sum((means - mean) ** 2, axis=1))
    assert variance == pytest.approx(trace_c / S * (N - S) / (N - 1), rel=1e-12)
    lr = 0.2
    assert eta_over_s_finite(lr, S, N) * N / (N - 1) == pytest.approx(lr / S * (N - S) / (N - 1), rel=1e-12)


def test_the_helpers_load_no_tensorflow():
    code = ("import sys, tfminima.stability, tfminima.schedules; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
