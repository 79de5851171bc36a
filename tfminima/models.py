"""Models by name: mlp, cnn, resnet (CIFAR ResNet-6n+2), vgg11 (batch norm). All output logits.

``build_model(spec, input_shape, num_classes)`` takes a ``config`` model section. Models are
Keras functional models, so ``summary()``, saving and the Hessian tools see plain layers.
"""

from __future__ import annotations

import keras
from keras import layers

from tfminima.model_shapes import VGG11


def build_model(spec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Build the model a config's ``model`` section names."""
    builders = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "vgg11": vgg11}
    options = spec.model_dump()
    name = options.pop("name")
    return builders[name](tuple(input_shape), num_classes, **options)


def mlp(
    input_shape, num_classes, *, hidden=(100, 100), activation="relu", batch_norm=False, dropout=0.0
) -> keras.Model:
    """Dense layers (Dense → [BatchNorm] → activation → [Dropout]) on flattened inputs."""
    inputs = keras.Input(input_shape)
    h = layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for width in hidden:
        h = layers.Dense(width, use_bias=not batch_norm)(h)
        if batch_norm:
            h = layers.BatchNormalization()(h)
        h = layers.Activation(activation)(h)
        if dropout:
            h = layers.Dropout(dropout)(h)
    outputs = layers.Dense(num_classes)(h)
    return keras.Model(inputs, outputs, name="mlp")


def cnn(input_shape, num_classes, *, filters=(32, 64), dense=128, batch_norm=False) -> keras.Model:
    """Small conv net: per entry of ``filters`` a 3-wide conv, [BN], ReLU, max-pool by 2.

    1-D inputs (MNIST-1D) get 1-D convolutions over a single channel; images get 2-D ones.
    """
    inputs = keras.Input(input_shape)
    one_d = len(input_shape) == 1
    h = layers.Reshape(input_shape + (1,))(inputs) if one_d else inputs
    conv = layers.Conv1D if one_d else layers.Conv2D
    pool = layers.MaxPooling1D if one_d else layers.MaxPooling2D
    for f in filters:
        h = conv(f, 3, padding="same", use_bias=not batch_norm)(h)
        if batch_norm:
            h = layers.BatchNormalization()(h)
        h = layers.ReLU()(h)
        h = pool(2, padding="same")(h)
    h = layers.Flatten()(h)
    h = layers.Dense(dense, activation="relu")(h)
    outputs = layers.Dense(num_classes)(h)
    return keras.Model(inputs, outputs, name="cnn")


def _require_image(input_shape, name):
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs image inputs (H, W, C); got input shape {input_shape}")


def resnet(input_shape, num_classes, *, depth=20, width_multiplier=1) -> keras.Model:
    """CIFAR ResNet (He et al. 2016, §4.2): 3 stages of n basic blocks, widths 16/32/64, depth 6n+2.

    Shortcuts that change shape use a 1×1 strided convolution with batch norm (option B).
    """
    _require_image(input_shape, "resnet")
    if (depth - 2) % 6:
        raise ValueError(f"resnet depth must be 6n+2 (20, 32, 56, ...), got {depth}")
    n = (depth - 2) // 6
    widths = [16 * width_multiplier, 32 * width_multiplier, 64 * width_multiplier]
    init = "he_normal"

    def conv_bn(x, filters, stride=1, kernel=3):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          kernel_initializer=init)(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input(input_shape)
    h = layers.ReLU()(conv_bn(inputs, widths[0]))
    for stage, width in enumerate(widths):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = h
            out = layers.ReLU()(conv_bn(h, width, stride))
            out = conv_bn(out, width)
            if stride != 1 or shortcut.shape[-1] != width:
                shortcut = conv_bn(shortcut, width, stride, kernel=1)
            h = layers.ReLU()(layers.Add()([out, shortcut]))
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(num_classes, kernel_initializer=init)(h)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


def vgg11(input_shape, num_classes, *, batch_norm=True, dropout=0.5, width_multiplier=1.0) -> keras.Model:
    """VGG-11 (Simonyan & Zisserman 2015, config A) with batch norm, for 32×32 inputs.

    Max-pools use 'same' padding so smaller inputs (28×28, 8×8) still work.
    """
    _require_image(input_shape, "vgg11")
    inputs = keras.Input(input_shape)
    h = inputs
    for item in VGG11:
        if item == "M":
            h = layers.MaxPooling2D(2, padding="same")(h)
            continue
        h = layers.Conv2D(max(1, int(item * width_multiplier)), 3, padding="same",
                          use_bias=not batch_norm)(h)
        if batch_norm:
            h = layers.BatchNormalization()(h)
        h = layers.ReLU()(h)
    h = layers.Flatten()(h)
    for _ in range(2):
        h = layers.Dense(max(1, int(512 * width_multiplier)), activation="relu")(h)
        if dropout:
            h = layers.Dropout(dropout)(h)
    outputs = layers.Dense(num_classes)(h)
    return keras.Model(inputs, outputs, name="vgg11")
