"""Models build by name, output logits of the right shape, and have the published sizes."""

import numpy as np
import pytest

from tfminima import config
from tfminima.models import build_model


def model_spec(text):
    return config.load_text(f"model: {text}\n", "m.yaml").model


@pytest.mark.parametrize(
    "text, shape",
    [
        ("{name: mlp, hidden: [256, 256]}", (28, 28, 1)),
        ("{name: mlp, hidden: [32, 32, 32, 32], batch_norm: true}", (40,)),
        ("{name: cnn}", (40,)),
        ("{name: cnn, filters: [8], batch_norm: true}", (8, 8, 1)),
        ("{name: resnet, depth: 8}", (16, 16, 3)),
        ("{name: vgg11, width_multiplier: 0.125}", (32, 32, 3)),
    ],
)
def test_models_output_logits(text, shape):
    model = build_model(model_spec(text), shape, 10)
    out = model(np.zeros((2,) + shape, np.float32), training=False)
    assert out.shape == (2, 10)
    assert model.layers[-1].activation.__name__ == "linear"


def test_published_parameter_counts():
    # ResNet-20 for CIFAR-10: 0.27M parameters (He et al. 2016, Table 6)
    resnet20 = build_model(model_spec("{name: resnet, depth: 20}"), (32, 32, 3), 10)
    assert 0.26e6 < resnet20.count_params() < 0.29e6
    # the paper's MNIST MLP 2x256: 784*256+256 + 256*256+256 + 256*10+10
    mlp = build_model(model_spec("{name: mlp, hidden: [256, 256]}"), (28, 28, 1), 10)
    assert mlp.count_params() == 784 * 256 + 256 + 256 * 256 + 256 + 2570
    vgg = build_model(model_spec("{name: vgg11}"), (32, 32, 3), 10)
    conv_layers = [layer for layer in vgg.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in conv_layers] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(layer.__class__.__name__ == "Dropout" for layer in vgg.layers) == 2


def test_image_models_reject_vectors():
    with pytest.raises(ValueError, match="needs image inputs"):
        build_model(model_spec("{name: resnet}"), (40,), 10)
