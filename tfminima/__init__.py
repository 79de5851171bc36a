"""tfminima: the science of SGD minima in TensorFlow/Keras (η/S, sharpness, Hessians, memorisation).

The names a user needs, importable from the top::

    import tfminima
    from tfminima.sweep import expand
    spec = tfminima.load_config("experiments/quickstart.yaml", overrides=["epochs=5"])
    run = expand(spec)[0].spec  # one run of its sweep (a whole sweep: tfminima.runner.run_sweep)
    result = tfminima.Trainer(run, callbacks=[tfminima.BatchSizeScheduler([32, 64])]).fit()

Every name is imported on first use (PEP 562), so ``import tfminima`` — and the CLI's
``validate``, the reporter and the TUI, which import its light modules — stays free of
TensorFlow until a TensorFlow name (``Trainer``, ``hessian``, a monitor ...) is touched.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

# name -> "module" (the module itself) or "module:attribute"
_EXPORTS: dict[str, str] = {
    # configs (no TensorFlow)
    "config": "tfminima.config",
    "load_config": "tfminima.config:load",
    "ExperimentSpec": "tfminima.config:ExperimentSpec",
    "ConfigError": "tfminima.config:ConfigError",
    # training
    "Trainer": "tfminima.train:Trainer",
    "TrainResult": "tfminima.train:TrainResult",
    "fit": "tfminima.train:fit",
    "SGD": "tfminima.optim:SGD",
    "data": "tfminima.data",
    "models": "tfminima.models",
    # callbacks
    "LearningRateScheduler": "tfminima.callbacks:LearningRateScheduler",
    "BatchSizeScheduler": "tfminima.callbacks:BatchSizeScheduler",
    "RunLogger": "tfminima.callbacks:RunLogger",
    # monitors: the classes tfminima.monitors registers under their YAML names
    "Monitor": "tfminima.monitors:Monitor",
    "MemorizationMonitor": "tfminima.monitors:MemorizationMonitor",
    "SharpnessMonitor": "tfminima.monitors:SharpnessMonitor",
    "NoiseMonitor": "tfminima.monitors:NoiseMonitor",
    # instruments for any Keras model
    "hessian": "tfminima.hessian",
    "landscape": "tfminima.landscape",
    "noise": "tfminima.noise",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        module_name, _, attribute = _EXPORTS[name].partition(":")
        module = importlib.import_module(module_name)
        value = getattr(module, attribute) if attribute else module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # resolved once; later lookups never reach __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
    """The installed distribution's version; from a source checkout, pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version("tfminima")
    except metadata.PackageNotFoundError:
        return _pyproject_version()


def _pyproject_version() -> str:
    try:
        import tomllib  # Python 3.11+

        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
        return str(tomllib.loads(text)["project"]["version"])
    except (ImportError, OSError, KeyError, ValueError):
        return "0+unknown"
