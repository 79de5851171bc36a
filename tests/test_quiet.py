"""A quiet start: no TensorFlow start-up lines from the entry points, no retracing warning of our own."""

import os
import subprocess
import sys

import pytest
from process_support import assert_quiet, user_env

from tfminima import quiet
from tfminima.rundir import RunDir

STARTUP_SAMPLE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795938680.790092   29692 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.\n"
    "I0000 00:00:1795938680.791178   29692 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.\n"
    "E0000 00:00:1795938721.882249   30005 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)\n"
)


def test_filter_drops_startup_lines_and_passes_everything_else(capfd):
    with quiet.filtered_stderr():
        os.write(2, STARTUP_SAMPLE.encode())
        os.write(2, b"E0000 00:00:1.0   1 op_kernel.cc:1] a real error from C++\n")
        os.write(2, b"UserWarning: a Python warning\n")
        os.write(2, b"no newline at the end")
    err = capfd.readouterr().err
    assert_quiet(err)
    assert "a real error from C++\n" in err and "UserWarning: a Python warning\n" in err and err.endswith("no newline at the end")


def test_every_known_startup_line_is_recognised():
    for line in STARTUP_SAMPLE.splitlines():
        assert quiet.is_startup_line(line), line
    assert not quiet.is_startup_line("E0000 00:00:1.0   1 cuda_platform.cc:52] out of memory")


@pytest.mark.parametrize("env, asked", [
    ({}, False), ({"TF_CPP_MIN_LOG_LEVEL": "3"}, False), ({"TF_CPP_MIN_LOG_LEVEL": "0"}, True),
    ({"TF_CPP_MIN_LOG_LEVEL": "1"}, True), ({"TF_CPP_MAX_VLOG_LEVEL": "2"}, True),
])
def test_the_users_own_log_variables_turn_the_filter_off(env, asked):
    assert quiet.user_asked_for_logs(env) is asked


ANALYZE_RUN_THEN_LATE_CTRL_C = (
    "import atexit, os, signal, sys, time\n"
    "from tfminima.cli import main\n"
    "split = sys.argv.index('--then')\n"
    "print('analyze exit', main(sys.argv[1:split]), flush=True)\n"
    "code = main(sys.argv[split + 1:])\n"
    "def late_ctrl_c():\n"
    "    os.kill(os.getpid(), signal.SIGINT)\n"
    "    time.sleep(0.2)\n"
    "    os.kill(os.getpid(), signal.SIGINT)\n"
    "    time.sleep(0.5)\n"
    "    print('still running after the Ctrl-C', file=sys.stderr)\n"
    "atexit.register(late_ctrl_c)\n"
    "sys.exit(code)\n"
)


@pytest.fixture(scope="module")
def analyze_then_sweep(tmp_path_factory):
    """One process in a user's environment: ``tfminima analyze`` of a finished run (the command that
    starts TensorFlow, so analyze's start is the one checked), then ``tfminima run`` of a 4-run sweep
    (epochs=2), which gets two Ctrl-Cs from an atexit callback once its runs are recorded
    (ANALYZE_RUN_THEN_LATE_CTRL_C). One TensorFlow process for three checks: analyze's quiet start, the
    sweep's missing retracing warning, the late Ctrl-C (each had a process of its own; ``run``'s own
    quiet start is checked on test_faults' second Ctrl-C process). The analysed run, trained here, has
    another architecture than the sweep, whose traces therefore start afresh."""
    from tfminima import config, runner

    tmp_path = tmp_path_factory.mktemp("quiet")
    data = "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
    spec = config.load_text("name: one\nepochs: 1\n" + data + "model: {name: mlp, hidden: [8]}\n", "one.yaml")
    (analysed,) = runner.run_sweep(spec, tmp_path / "analysed")
    assert analysed.state == "completed"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("name: tiny\nepochs: 2\n" + data + "model: {name: mlp, hidden: [16]}\n"
                   "optimizer: {lr: 0.05, batch_size: 32}\n"
                   "sweep: {grid: {optimizer.lr: [0.01, 0.02], optimizer.batch_size: [32, 64]}}\n")
    r = subprocess.run([sys.executable, "-c", ANALYZE_RUN_THEN_LATE_CTRL_C,
                        "analyze", str(analysed.run_dir.path), "--k", "1", "--samples", "64", "--trace-probes", "2",
                        "--then", "run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"],
                       capture_output=True, text=True, env=user_env(), timeout=600)
    runs = [RunDir(p) for p in sorted((tmp_path / "out" / "tiny").iterdir()) if p.is_dir()]
    return r, runs


def test_cli_analyze_and_a_sweep_in_one_process_run_quietly(analyze_then_sweep):
    """analyze starts TensorFlow without its start-up lines; epochs=2 over a sweep of 4 runs in one
    process: once the eval step was traced for every run's model, and TensorFlow warned that it
    retraced. (``run``'s quiet start is checked on test_faults' second Ctrl-C process, ``data list``'s
    on test_hostile_signals' large-dataset process, the TUI worker's on the worker process of
    test_tui_launch's SIGTERM test; that a user who asks for TensorFlow's lines gets them, on test_cli's
    SIGTERM process.)"""
    r, runs = analyze_then_sweep
    assert "analyze exit 0" in r.stdout, r.stderr[-3000:]
    assert len(runs) == 4 and all(run.status()["state"] == "completed" for run in runs), r.stderr[-3000:]
    assert_quiet(r.stderr)


def test_ctrl_c_while_the_interpreter_exits_after_a_run_is_quiet(analyze_then_sweep):
    """Once the runs are recorded, a Ctrl-C can only land in the interpreter's exit (atexit callbacks:
    matplotlib's, TensorFlow's): the program ends at once with 130, no "Exception ignored" traceback.
    Deterministic: an atexit callback sends two SIGINTs (without the fix the first only asks the finished
    run to stop, the second raises KeyboardInterrupt inside the callback: a traceback on stderr).
    (From test_faults: on this file's sweep process.)"""
    r, runs = analyze_then_sweep
    assert r.returncode == 130, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "still running" not in r.stderr, r.stderr[-3000:]
    assert [run.status()["state"] for run in runs] == ["completed"] * 4


def test_tensorboard_launch_starts_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tfminima.cli", "tb", str(tmp_path), "--launch",
                             "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=user_env())
    try:
        lines = []
        for line in proc.stderr:  # TensorBoard says where it serves once it is up
            lines.append(line)
            if "Press CTRL+C to quit" in line or "TensorBoard" in line:
                break
    finally:
        proc.terminate()
        proc.wait()
    stderr = "".join(lines) + proc.stderr.read()
    assert any("TensorBoard" in line for line in lines), stderr[-3000:]
    assert_quiet(stderr)


def test_the_eval_step_is_traced_once_for_the_runs_of_one_architecture(tiny_yaml):
    """Each run's Trainer used to trace its own eval step, so a sweep in one process retraced it once a run."""
    from tfminima import config
    from tfminima.train import Trainer

    trainers = [Trainer(config.load(tiny_yaml(), [f"optimizer.lr={lr}", "epochs=1"])) for lr in (0.01, 0.02, 0.04)]
    for t in trainers:
        t.fit()
        t.evaluate(t.splits.x_test, t.splits.y_test)
    step = trainers[0].evaluator.step
    assert all(t.evaluator.step is step for t in trainers)
    assert step.traces == 1
    other = Trainer(config.load(tiny_yaml(), ["model.hidden=[8]", "epochs=1"]))
    assert other.evaluator.step is not step  # another architecture: its own trace
