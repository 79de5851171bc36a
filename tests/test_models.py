"""Models build by name, output logits of the right shape, and have the published sizes."""

import numpy as np
import pytest

from tfminima import config, model_shapes
from tfminima.models import build_model


def model_spec(text):
    """A model section, validated as a config on CIFAR-10's images (which every architecture takes)."""
    return config.load_text(f"dataset: {{name: cifar10}}\nmodel: {text}\n", "m.yaml").model


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


# ----------------------------------------------------------------------------- known before building
SHAPE_CASES = [
    "{name: mlp, hidden: [7, 5]}", "{name: mlp, hidden: [3], batch_norm: true, dropout: 0.2}", "{name: mlp, hidden: []}",
    "{name: cnn, filters: [3, 5], dense: 7}", "{name: cnn, filters: [2, 3, 4], dense: 5, batch_norm: true}",
    "{name: resnet, depth: 8}", "{name: resnet, depth: 14, width_multiplier: 2}",
    "{name: vgg11, width_multiplier: 0.05}", "{name: vgg11, batch_norm: false, dropout: 0, width_multiplier: 0.1}",
]


DISTINCT_INPUTS = sorted({inputs: name for name, inputs in sorted(model_shapes.DATASET_INPUTS.items())}.values())


@pytest.mark.parametrize("dataset", DISTINCT_INPUTS)  # fashion_mnist's input is mnist's
def test_parameter_counts_known_before_building_equal_keras_count_params(dataset):
    """Validation counts a model's parameters without TensorFlow (model_shapes); every architecture, with
    and without batch norm, on every dataset's input, against the built model's count_params()."""
    shape, classes = model_shapes.DATASET_INPUTS[dataset]
    checked = 0
    for text in SHAPE_CASES:
        spec = model_spec(text)
        if model_shapes.input_problem(spec, dataset):
            assert spec.name in ("resnet", "vgg11") and len(shape) == 1
            with pytest.raises(ValueError, match="needs image inputs"):
                build_model(spec, shape, classes)
            continue
        assert model_shapes.parameter_count(spec, shape, classes) == build_model(spec, shape, classes).count_params(), text
        checked += 1
    assert checked == (5 if len(shape) == 1 else len(SHAPE_CASES))  # resnet and vgg11 take images only


@pytest.mark.parametrize("dataset", ["mnist1d", "digits"])
def test_the_offline_datasets_give_the_input_validation_assumes(dataset):
    from tfminima import data

    splits = data.load(config.load_text(f"dataset: {{name: {dataset}, train_size: 64, val_size: 8, test_size: 8}}\n"
                                        "optimizer: {batch_size: 8}\n",
                                        "d.yaml").dataset)
    assert (splits.input_shape, splits.num_classes) == model_shapes.DATASET_INPUTS[dataset]


@pytest.mark.parametrize("text, key, words", [
    ("dataset: {name: mnist1d}\nmodel: {name: resnet}", "model.name", "resnet needs images"),
    ("dataset: {name: mnist1d}\nmodel: {name: vgg11}", "model.name", "vgg11 needs images"),
    ("model: {name: mlp, hidden: [100000, 100000]}", "model", "10005200010 parameters (mlp on mnist1d) is over the limit"),
    ("dataset: {name: cifar10}\nmodel: {name: resnet, width_multiplier: 1000}", "model", "parameters (resnet on cifar10)"),
])
def test_a_model_that_cannot_be_built_here_is_refused_at_validation(text, key, words):
    """Before TensorFlow starts: a model that takes no such input (it failed when Keras built it, after the
    data was loaded), or one whose weights alone would not fit (an MLP 10⁵ wide allocates as it is built)."""
    with pytest.raises(config.ConfigError) as err:
        config.load_text(text + "\n", "m.yaml")
    (problem,) = err.value.problems
    assert problem.key == key and words in problem.message, problem


def test_the_parameter_limit_is_raised_by_its_variable_and_checked_for_every_run_of_a_sweep(monkeypatch):
    text = "model: {name: mlp, hidden: [16]}\nsweep: {grid: {model.hidden: [[16], [64]]}}\n"
    config.load_text(text, "m.yaml")
    monkeypatch.setenv("TFMINIMA_MAX_PARAMETERS", "1000")  # [16] on MNIST-1D: 826 parameters; [64]: 3274
    with pytest.raises(config.ConfigError) as err:
        config.load_text(text, "m.yaml")
    (problem,) = err.value.problems
    assert problem.key == "model" and problem.line == 2, problem  # the sweep's line
    assert problem.message == ("3274 parameters (mlp on mnist1d) is over the limit of 1000 (set TFMINIMA_MAX_PARAMETERS "
                               "to raise it) (in sweep run lr0.1-bs128-hidden64-s0)"), problem
