"""Long phases hear SIGTERM and Ctrl-C: data generation, schedule planning, tracing, start-up.

Training stops at a step boundary; the phases before the first step have none and used to run to
their end (minutes for a large ``train_size``) before the stop was heard. Real signals throughout:
a real ``tfminima run`` subprocess generating a large MNIST-1D, and, in this process, the CLI's own
handlers (:func:`tfminima.interrupt.install`) with the signal sent from inside the phase itself, so
that it lands there on every run. No wall-clock limits: a generous timeout guards against hangs.
"""

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from process_support import assert_quiet, user_env

from tfminima import interrupt, resume
from tfminima.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
HANG = 600  # seconds: only against a hang


@pytest.fixture
def handlers():
    """The CLI's handlers installed in this process for the test, the previous ones put back after."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stop = threading.Event()
    interrupt.install(stop)
    yield stop
    for s, h in saved.items():
        signal.signal(s, h)


def signal_self(signum):
    """Send ``signum`` to this process and run Python until its handler has run (it raises)."""
    os.kill(os.getpid(), signum)
    for _ in range(10**8):  # the handler runs between two bytecodes of the main thread
        pass
    raise AssertionError("the signal handler did not raise")


# ----------------------------------------------------------------------------- a real run
def wait_for_state(status: Path, state: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(status.read_text()).get("state") == state:
                return
        except (OSError, ValueError):
            pass  # not written yet
        time.sleep(0.02)
    raise AssertionError(f"{status} never became {state!r} (exit {proc.poll()})")


DATA_LIST_THEN_RUN = (
    "import sys\n"
    "from tfminima.cli import main\n"
    "split = sys.argv.index('--then')\n"
    "print('data list exit', main(sys.argv[1:split]), flush=True)\n"
    "sys.exit(main(sys.argv[split + 1:]))\n"
)


@pytest.mark.parametrize("signum", [signal.SIGINT], ids=["SIGINT"])
def test_a_run_generating_a_large_dataset_stops_and_stays_resumable(tmp_path, signum):
    """400,000 MNIST-1D examples take minutes to generate; the signal, sent once the run is recorded
    ``running`` (its data is loaded right after) and a moment more, ends the run ``cancelled`` with
    exit 130, before any example is trained and before the cache is written, and a resume may start
    it over. SIGINT only (a TensorFlow process fewer): a first SIGTERM takes the same branch of
    interrupt.install's handler, and test_generation_hears_the_stop_between_chunks sends SIGTERM
    inside the generation.

    The process, in a user's environment, first lists the datasets (``tfminima data list``, which
    starts TensorFlow), then runs (DATA_LIST_THEN_RUN): the quiet start of ``data list`` is checked on
    this process (test_data's ``data list`` process was a TensorFlow start more; what it prints is
    checked in-process there)."""
    cfg = tmp_path / "big.yaml"
    cfg.write_text("name: big\nepochs: 2\n"
                   "dataset: {name: mnist1d, train_size: 400000, val_size: 64, test_size: 64}\n"
                   "model: {name: mlp, hidden: [8]}\noptimizer: {lr: 0.05, batch_size: 32}\n")
    cache = tmp_path / "cache"
    env = user_env(TFMINIMA_CACHE=str(cache))
    proc = subprocess.Popen([sys.executable, "-c", DATA_LIST_THEN_RUN, "data", "list", "--data-dir",
                             str(tmp_path / "tfds"), "--then", "run", str(cfg), "--out", str(tmp_path / "runs"),
                             "--quiet"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    run = RunDir(tmp_path / "runs" / "big" / "lr0.05-bs32-s0")
    try:
        wait_for_state(run.status_path, "running", proc)
        time.sleep(1.0)  # into the generation (minutes long); the test holds wherever the signal lands
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "data list exit 0" in out and "not prepared" in out, out
    assert_quiet(err)  # TensorFlow started in data list
    status = run.status()
    assert status["state"] == "cancelled"
    assert status["error"] in (f"{signal.Signals(signum).name} while loading the mnist1d dataset",
                               "stopped while loading the mnist1d dataset",
                               "stopped while generating 400000 MNIST-1D examples"), status["error"]
    assert not [e for e in run.events() if e["kind"] == "train"]
    assert not cache.exists() or not any(cache.iterdir())  # stopped before the generation's end: no cache entry
    (target,) = resume.targets(run.path)
    assert resume.refusal(target.run_dir, target.spec) is None


# ----------------------------------------------------------------------------- each phase
def test_generation_hears_the_stop_between_chunks(handlers, monkeypatch, tmp_path):
    """The signal lands inside the generation loop (sent by it, after 2.5 chunks); the next chunk
    boundary raises, and the global random states are put back."""
    from tfminima.data import sources

    monkeypatch.setenv("TFMINIMA_CACHE", str(tmp_path))
    module = importlib.import_module("mnist1d.transform")  # the package's __init__ shadows the name
    real, calls = module.transform, []

    def transform(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2500:
            os.kill(os.getpid(), signal.SIGTERM)  # not in an abortable block: the handler only sets the event
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "transform", transform)
    state = np.random.get_state()[1].copy()
    with interrupt.watching(handlers), pytest.raises(interrupt.Interrupted, match="^stopped while generating "
                                                                                  "100000 MNIST-1D examples$"):
        sources.generate_mnist1d(100_000, 0)
    assert handlers.is_set() and len(calls) == 3000  # up to the next check, not one example more
    assert np.array_equal(np.random.get_state()[1], state)


def test_generation_in_chunks_is_the_package_s_dataset_bit_for_bit():
    from mnist1d.data import get_dataset_args, make_dataset

    from tfminima.data import sources

    for total, seed in ((2345, 0), (99, 7)):
        args = get_dataset_args()
        args.num_samples, args.seed, args.train_split = -(-total // 10) * 10, seed, 1.0 - 1e-9
        made = make_dataset(args)
        x, y = sources.generate_mnist1d(total, seed)
        assert np.array_equal(x, np.concatenate([made["x"], made["x_test"]]).astype(np.float32)[:total])
        assert np.array_equal(y, np.concatenate([made["y"], made["y_test"]]).astype(np.int64)[:total])


def test_planning_a_long_schedule_hears_the_stop(handlers, monkeypatch):
    from tfminima import config, schedules

    spec = config.load_text("epochs: 50000\nlr_schedule: {kind: step, milestones: [10, 20], factor: 0.5}\n", "p.yaml")
    real, seen = schedules.multiplier, []

    def multiplier(schedule, epoch, epochs):
        seen.append(epoch)
        if len(seen) == 1500:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(schedule, epoch, epochs)

    monkeypatch.setattr(schedules, "multiplier", multiplier)
    with interrupt.watching(handlers), pytest.raises(interrupt.Interrupted,
                                                     match="^stopped while planning the schedule of 50000 epochs$"):
        schedules.plan(spec)
    assert len(seen) == 2000  # the chunk under way, then the check


def test_tracing_the_training_step_is_interrupted_at_once(handlers):
    """The signal is sent while TensorFlow traces the step (from the model's call); the handler raises
    right there, inside TensorFlow's tracing, and the step stays untraced."""
    import keras
    import tensorflow as tf

    from tfminima.steps import ReplicaSteps

    armed = []

    class SignalsWhileTraced(keras.layers.Layer):
        def call(self, x):
            if armed:  # not while the model is built, only while the step is traced
                signal_self(signal.SIGTERM)
            return x

    model = keras.Sequential([keras.Input((4,)), SignalsWhileTraced(), keras.layers.Dense(3)])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    steps = ReplicaSteps(model, optimizer, tf.distribute.OneDeviceStrategy("/cpu:0"))
    data = tf.data.Dataset.from_tensor_slices((np.zeros((8, 4), np.float32), np.zeros(8, np.int32))).batch(4)
    weights = [w.copy() for w in model.get_weights()]
    armed.append(True)
    with pytest.raises(interrupt.Interrupted, match="^SIGTERM while tracing the training step$"):
        steps.train(iter(steps.distribute(data)))
    assert handlers.is_set() and interrupt.current_phase() is None
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))  # no step was taken


def test_a_signal_while_the_cli_starts_up_exits_130_and_writes_nothing(handlers, monkeypatch, tmp_path, capsys):
    """Reading the config and importing TensorFlow write nothing; the command ends at once."""
    from tfminima import cli

    def start_up(args):
        signal_self(signal.SIGINT)

    monkeypatch.setattr(cli, "_start_up", start_up)
    cfg = tmp_path / "x.yaml"
    cfg.write_text("name: x\n")
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "runs")]) == 130
    assert capsys.readouterr().err == "tfminima run: SIGINT while starting up; nothing was written\n"
    assert not (tmp_path / "runs").exists()


def test_a_stop_under_multi_worker_waits_for_the_step(handlers):
    """Workers stop together at a step (the request is shared in its reduction): in lockstep no
    phase stops one worker alone, neither by a check nor by a signal."""
    handlers.set()
    with interrupt.watching(handlers, lockstep=True):
        interrupt.check("planning")
        with interrupt.abortable("tracing"):
            assert interrupt.current_phase() is None
    with interrupt.watching(handlers), pytest.raises(interrupt.Interrupted, match="^stopped while tracing$"):
        with interrupt.abortable("tracing"):
            pass
