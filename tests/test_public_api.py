"""The top-level API: ``import tfminima`` is light, and every exported name resolves to the real object."""

import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import tfminima

QUICKSTART = Path(__file__).parent.parent / "experiments" / "quickstart.yaml"


def test_import_and_config_leave_tensorflow_out():
    code = ("import json, sys, tfminima; v = tfminima.__version__; tfminima.config; tfminima.load_config; "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'textual'}); "
            "print(json.dumps([v, heavy, 'tfminima.train' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, heavy, trainer_loaded = json.loads(out.stdout)
    assert heavy == [] and not trainer_loaded
    assert version == importlib.metadata.version("tfminima")


def test_version_falls_back_to_pyproject_without_installed_metadata(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    version = tfminima._version()
    assert version == tfminima._pyproject_version() and re.fullmatch(r"\d+\.\d+\.\d+\S*", version), version


def test_every_exported_name_resolves_and_is_listed():
    assert set(tfminima.__all__) <= set(dir(tfminima))
    for name in tfminima.__all__:
        assert getattr(tfminima, name) is not None, name
    # each name is the object its home module defines
    for name, target in tfminima._EXPORTS.items():
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        assert getattr(tfminima, name) is (getattr(module, attribute) if attribute else module), name


def test_exported_names_are_what_they_say():
    from tfminima import callbacks, config, monitors, optim, train

    assert tfminima.load_config is config.load
    assert tfminima.Trainer is train.Trainer and tfminima.fit is train.fit
    assert tfminima.SGD is optim.SGD and issubclass(tfminima.SGD, keras.optimizers.SGD)
    for name in ("MemorizationMonitor", "SharpnessMonitor", "NoiseMonitor"):
        assert issubclass(getattr(tfminima, name), monitors.Monitor), name
    assert tfminima.Monitor is monitors.Monitor
    for name in ("LearningRateScheduler", "BatchSizeScheduler", "RunLogger"):
        assert getattr(tfminima, name) is getattr(callbacks, name)
        assert issubclass(getattr(tfminima, name), keras.callbacks.Callback), name
    for name in ("hessian", "landscape", "noise", "config", "data", "models"):
        assert getattr(tfminima, name).__name__ == f"tfminima.{name}"


def test_unknown_names_fail_and_other_submodules_still_import():
    with pytest.raises(AttributeError, match="no attribute 'Trainr'"):
        tfminima.Trainr  # noqa: B018
    from tfminima import sweep  # not exported: found as a submodule

    assert sweep.__name__ == "tfminima.sweep"


def test_load_config_and_fit_from_the_top_level():
    spec = tfminima.load_config(
        QUICKSTART,
        overrides=["epochs=1", "dataset.train_size=64", "dataset.val_size=32", "dataset.test_size=32",
                   "model.hidden=[8]", "monitors=[]", "sweep={}", "optimizer.batch_size=32"],
    )
    assert isinstance(spec, tfminima.ExperimentSpec)
    result = tfminima.fit(spec)
    assert isinstance(result, tfminima.TrainResult) and result.status == "completed" and result.epochs_done == 1
    with pytest.raises(tfminima.ConfigError, match="did you mean 'epochs'"):
        tfminima.load_config(QUICKSTART, overrides=["epoch=1"])
