"""Test setup: 2 logical CPU devices (for MirroredStrategy), quiet TensorFlow, a private cache."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


def pytest_configure(config):
    # Must happen before any TensorFlow op runs; tests that need a fresh process use subprocesses.
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
    """Run ``tfminima ARGS`` in this process: ``cli.main`` with its output captured, as a CompletedProcess.

    For tests of what a command does, not of the process itself (start-up lines, signals, exit on a
    crash): those keep real subprocesses. Saves a TensorFlow start-up (~5 CPU-seconds) a call. The
    command's signal handlers and exit callbacks are the process's, so they are put back afterwards.
    """
    import atexit
    import signal
    import subprocess

    from tfminima import cli

    def run(*args) -> subprocess.CompletedProcess:
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        capsys.readouterr()
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            atexit.unregister(cli._ignore_ctrl_c_at_the_very_end)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["tfminima", *map(str, args)], code, out, err)

    return run
