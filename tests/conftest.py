"""Test setup: 2 logical CPU devices (for MirroredStrategy), quiet TensorFlow, a private cache."""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# As the entry points run TensorFlow (tfminima.quiet.start_tensorflow), and ~5 % less CPU for the tests.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest


# The files that take most of the suite's time, heaviest first (measured in CPU seconds a file; the suite
# is CPU-bound). pytest-xdist hands whole files to its workers in collection order
# (--no-loadscope-reorder in pyproject's addopts; its own order is by number of tests), so the long files
# go out first and the many short ones even out the end: the three workers' last tests ended within 11 s
# of each other. Order only: a file missing here runs after them in its usual place; a stale list costs
# time, never coverage.
RUN_FIRST = [
    "test_faults.py", "test_distributed.py", "test_hessian.py", "test_target.py", "test_hostile_fuzz.py",
    "test_tui_launch.py", "test_hessian_retained.py", "test_report_seeds.py", "test_quiet.py", "test_train.py",
    "test_tui_app.py", "test_landscape_monitors.py", "test_noise.py", "test_tui_tmux.py", "test_cli.py",
    "test_critical.py", "test_reproduction.py", "test_hostile_signals.py", "test_config_fuzz.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(RUN_FIRST)))  # stable: a file's tests keep their order


def pytest_make_parametrize_id(config, val, argname):
    """Short test ids for long hostile inputs (a 200 kB JSON text, 100,001 list items): pytest would put
    them whole in every id, report line and xdist message. Same-looking ids are numbered by pytest."""
    if isinstance(val, (str, bytes)) and len(val) > 60:
        text = val.decode("latin-1") if isinstance(val, bytes) else val
        return f"{text[:40]}...({len(val)} long)"
    return None


def pytest_collection_finish(session):
    # What collection imported (TensorFlow, Keras, the test modules: over a million objects) lives to the
    # end; frozen, the garbage collector stops walking it in each full collection (0.1-0.3 s each: 22
    # CPU-s of a suite's workers, 14 once frozen). A full collection every 100 collections of the middle
    # generation instead of 10 leaves 8 CPU-s (the traces the tests keep alive are still walked), for
    # ~1.3-1.8 GB a worker (~25 % more).
    gc.freeze()
    gc.set_threshold(gc.get_threshold()[0], gc.get_threshold()[1], 100)


def pytest_configure(config):
    # Must happen before any TensorFlow op runs; tests that need a fresh process use subprocesses.
    # Not in xdist's controller, which runs no test: its TensorFlow import (~7 CPU-s) delayed the
    # workers' start by as long.
    if not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no":
        return
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass


@pytest.fixture(scope="module")
def float64_policy():
    """Keras computes in float64 for the module's tests (comparisons with exact float64 Hessians).

    The policy makes layers compute in float64; floatx makes ``keras.Input`` float64 too (else the
    inputs are rounded to float32 before the first layer). Both are restored after the module.
    """
    import keras

    old_policy, old_floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float64")
    keras.config.set_floatx("float64")
    yield
    keras.config.set_dtype_policy(old_policy)
    keras.config.set_floatx(old_floatx)


@pytest.fixture
def tiny_yaml(tmp_path):
    """Write a small, fast experiment YAML; returns a function taking extra YAML text."""

    def make(extra: str = "", name: str = "tiny") -> str:
        text = (
            f"name: {name}\n"
            "epochs: 2\n"
            "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
            "model: {name: mlp, hidden: [16]}\n"
            "optimizer: {lr: 0.05, batch_size: 32}\n"
            f"output_dir: {tmp_path / 'runs'}\n"
        ) + extra
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return str(path)

    return make



@pytest.fixture
def cli_here(capsys):
    """``tfminima ARGS`` in this process (:func:`cli_support.main_here`), as a CompletedProcess with its output."""
    import subprocess

    from cli_support import main_here

    def run(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main_here(*args)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["tfminima", *map(str, args)], code, out, err)

    return run
