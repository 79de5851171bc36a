"""The benchmark's Keras models as equivalent PyTorch modules with the same weights, for real PyHessian.

Needs the optional extra ``bench`` (``pip install -e '.[bench]'``: torch and pyhessian); the benchmark
skips the PyHessian rows without it. Only the two architectures of benchmarks/bench_hessian.py are
ported: the Dense MLP and tfminima.models.cnn with batch norm on 1-D inputs (MNIST-1D).
"""

from __future__ import annotations

import keras
import numpy as np

try:  # the optional extra
    import torch
    from pyhessian import hessian as PyHessian
except ImportError:  # pragma: no cover - depends on the installation
    torch = PyHessian = None

INSTALL_HINT = "pip install -e '.[bench]'   # torch and pyhessian"


def available() -> bool:
    return PyHessian is not None


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(array, np.float32)))


def _linear(layer) -> torch.nn.Linear:
    kernel = layer.kernel.numpy()
    out = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
    with torch.no_grad():
        out.weight.copy_(_tensor(kernel.T))
        out.bias.copy_(_tensor(layer.bias.numpy()))
    return out


class _ChannelsFirst(torch.nn.Module):
    """(N, L) inputs as (N, 1, L): Keras' Reshape to (L, 1), channels last, is torch's (1, L)."""

    def forward(self, x):
        return x[:, None, :]


class _FlattenChannelsLast(torch.nn.Module):
    """Flatten (N, C, L) in Keras' channels-last order (index l·C + c), so Dense weights carry over."""

    def forward(self, x):
        return x.permute(0, 2, 1).flatten(1)


def port(model: keras.Model) -> torch.nn.Module:
    """The torch module computing what ``model`` computes in inference mode, same weights, float32."""
    modules = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Reshape)):
            if isinstance(layer, keras.layers.Reshape):
                modules.append(_ChannelsFirst())
            continue
        if isinstance(layer, keras.layers.Dense):
            modules.append(_linear(layer))
            activation = keras.activations.serialize(layer.activation)
            activation = activation if isinstance(activation, str) else activation.get("config", {}).get("name")
            if activation == "relu":
                modules.append(torch.nn.ReLU())
            elif activation not in ("linear", None):
                raise ValueError(f"cannot port the activation {activation!r}")
        elif isinstance(layer, keras.layers.Conv1D):
            kernel = layer.kernel.numpy()  # (width, in, out) -> torch (out, in, width)
            conv = torch.nn.Conv1d(kernel.shape[1], kernel.shape[2], kernel.shape[0], padding=kernel.shape[0] // 2,
                                   bias=layer.use_bias)
            with torch.no_grad():
                conv.weight.copy_(_tensor(kernel.transpose(2, 1, 0)))
                if layer.use_bias:
                    conv.bias.copy_(_tensor(layer.bias.numpy()))
            modules.append(conv)
        elif isinstance(layer, keras.layers.BatchNormalization):
            bn = torch.nn.BatchNorm1d(layer.gamma.shape[0], eps=layer.epsilon)
            with torch.no_grad():
                bn.weight.copy_(_tensor(layer.gamma.numpy()))
                bn.bias.copy_(_tensor(layer.beta.numpy()))
                bn.running_mean.copy_(_tensor(layer.moving_mean.numpy()))
                bn.running_var.copy_(_tensor(layer.moving_variance.numpy()))
            modules.append(bn)
        elif isinstance(layer, keras.layers.ReLU):
            modules.append(torch.nn.ReLU())
        elif isinstance(layer, keras.layers.MaxPooling1D):
            modules.append(torch.nn.MaxPool1d(layer.pool_size[0], ceil_mode=True))
        elif isinstance(layer, keras.layers.Flatten):
            modules.append(_FlattenChannelsLast())
        else:
            raise ValueError(f"cannot port the layer {type(layer).__name__}")
    return torch.nn.Sequential(*modules).eval()


def pyhessian_lambda_max(module, x, y, seed: int) -> tuple[float, float]:
    """``(seconds, λ_max)`` of ``hessian(module, criterion, data=(x, y)).eigenvalues()`` with PyHessian's
    defaults (power iteration, maxIter 100, tol 1e-3), its set-up (forward and first gradient) timed too."""
    import time

    torch.manual_seed(seed)
    inputs, targets = _tensor(x), torch.from_numpy(np.asarray(y, np.int64))
    module.zero_grad(set_to_none=True)
    start = time.perf_counter()
    computer = PyHessian(module, torch.nn.CrossEntropyLoss(), data=(inputs, targets), cuda=False)
    values, _ = computer.eigenvalues()
    return time.perf_counter() - start, float(values[0])


def loss(module, x, y) -> float:
    with torch.no_grad():
        return float(torch.nn.CrossEntropyLoss()(module(_tensor(x)), torch.from_numpy(np.asarray(y, np.int64))))
