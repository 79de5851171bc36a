"""What a config's model asks of the machine, known before anything is built. No TensorFlow.

Validation must refuse a model that cannot be trained before TensorFlow starts: a ResNet on
MNIST-1D's sequences fails only when Keras builds it, after the data is loaded, and an MLP with
hidden widths of 10⁹ allocates its weights as it is built, so a sweep process would be killed for
its memory, taking the rest of the sweep with it. The input each dataset gives and the exact
parameter count of each architecture (Keras' ``count_params``: weights, biases, batch norm's
scales, offsets and moving statistics) come from the same layer arithmetic as
:mod:`tfminima.models`; a test builds models and compares.
"""

from __future__ import annotations

import math
from typing import Any

from tfminima import limits

# (input shape of one example, number of classes) of each dataset, as tfminima.data delivers them
DATASET_INPUTS: dict[str, tuple[tuple[int, ...], int]] = {
    "mnist1d": ((40,), 10),
    "digits": ((8, 8, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
}

IMAGE_ONLY = ("resnet", "vgg11")  # 2-D convolutions over (H, W, C) images
VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]  # configuration A: filters, "M" a max-pool


def input_problem(model: Any, dataset: str) -> str | None:
    """Why ``model`` cannot take ``dataset``'s examples (None when it can)."""
    shape, _ = DATASET_INPUTS[dataset]
    if model.name in IMAGE_ONLY and len(shape) != 3:
        return (f"model.name: {model.name} needs images (height, width, channels); dataset {dataset} gives "
                f"sequences of shape {shape} (use mlp or cnn)")
    return None


def problem(model: Any, dataset: str) -> str | None:
    """Why ``model`` cannot be trained on ``dataset`` here (None when it can): it takes no such input,
    or it has more parameters than the ``parameters`` limit."""
    wrong_input = input_problem(model, dataset)
    if wrong_input:
        return wrong_input
    count = parameter_count(model, *DATASET_INPUTS[dataset])
    if count > limits.value("parameters"):
        return f"model: {limits.over('parameters', count, f'{count} parameters ({model.name} on {dataset})')}"
    return None


def parameter_count(model: Any, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Keras' ``count_params()`` of the model :func:`tfminima.models.build_model` builds for ``model``: the
    values of its weights, biases and batch-norm statistics (a dropout layer's seed state is not counted)."""
    return {"mlp": _mlp, "cnn": _cnn, "resnet": _resnet, "vgg11": _vgg11}[model.name](model, input_shape, num_classes)


def _dense(inputs: int, units: int, bias: bool = True) -> int:
    return inputs * units + (units if bias else 0)


def _conv(kernel_values: int, channels_in: int, filters: int, bias: bool) -> int:
    return kernel_values * channels_in * filters + (filters if bias else 0)


BATCH_NORM = 4  # values a channel: scale, offset, moving mean, moving variance


def _mlp(m, input_shape, num_classes) -> int:
    width, total = math.prod(input_shape), 0
    for units in m.hidden:
        total += _dense(width, units, bias=not m.batch_norm) + (BATCH_NORM * units if m.batch_norm else 0)
        width = units
    return total + _dense(width, num_classes)


def _cnn(m, input_shape, num_classes) -> int:
    spatial = list(input_shape) if len(input_shape) == 1 else list(input_shape[:-1])
    channels = 1 if len(input_shape) == 1 else input_shape[-1]
    kernel, total = 3 ** len(spatial), 0
    for filters in m.filters:
        total += _conv(kernel, channels, filters, bias=not m.batch_norm) + (BATCH_NORM * filters if m.batch_norm else 0)
        channels = filters
        spatial = [math.ceil(s / 2) for s in spatial]  # max-pool by 2, 'same' padding
    return total + _dense(math.prod(spatial) * channels, m.dense) + _dense(m.dense, num_classes)


def _resnet(m, input_shape, num_classes) -> int:
    def conv_bn(channels_in: int, filters: int, kernel_values: int = 9) -> int:
        return _conv(kernel_values, channels_in, filters, bias=False) + BATCH_NORM * filters

    n = (m.depth - 2) // 6
    widths = [16 * m.width_multiplier, 32 * m.width_multiplier, 64 * m.width_multiplier]
    channels = widths[0]
    total = conv_bn(input_shape[-1], channels)
    for stage, width in enumerate(widths):
        for block in range(n):
            strided = stage > 0 and block == 0
            total += conv_bn(channels, width) + conv_bn(width, width)
            if strided or channels != width:
                total += conv_bn(channels, width, kernel_values=1)
            channels = width
    return total + _dense(channels, num_classes)


def _vgg11(m, input_shape, num_classes) -> int:
    spatial, channels, total = list(input_shape[:-1]), input_shape[-1], 0
    for item in VGG11:
        if item == "M":
            spatial = [math.ceil(s / 2) for s in spatial]
            continue
        filters = max(1, int(item * m.width_multiplier))
        total += _conv(9, channels, filters, bias=not m.batch_norm) + (BATCH_NORM * filters if m.batch_norm else 0)
        channels = filters
    units = max(1, int(512 * m.width_multiplier))
    width = math.prod(spatial) * channels
    return total + _dense(width, units) + _dense(units, units) + _dense(units, num_classes)
