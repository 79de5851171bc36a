"""The tfminima command end to end: in this process (``cli_here``) where what the command does is
tested, in real subprocesses where the process is (a signal, a kill)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from process_support import assert_readable

from tfminima import checkpoint as ckpt
from tfminima.rundir import RunDir

CLI = [sys.executable, "-m", "tfminima.cli"]


def run_cli(*args, **kw):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=600, **kw)


def test_run_prints_table_and_writes_runs(tiny_yaml, tmp_path, cli_here):
    cfg = tiny_yaml("sweep: {zip: {optimizer.batch_size: [32, 64]}, ratio: [0.0005, 0.002]}\n")
    r = cli_here("run", cfg, "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    for run_id in ("lr0.016-bs32-s0", "lr0.032-bs64-s0", "lr0.064-bs32-s0", "lr0.128-bs64-s0"):
        assert run_id in r.stdout
        assert RunDir(tmp_path / "out" / "tiny" / run_id).status()["state"] == "completed"
    assert r.stdout.count("completed") == 4 and "η/S" in r.stdout
    assert "tensorboard --logdir" in r.stdout
    # a second invocation never overwrites the first
    r2 = cli_here("run", cfg, "--out", str(tmp_path / "out"), "--quiet", "--only", "lr0.016-bs32-s0",
                 "--group", str(tmp_path / "out" / "other"))
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert (tmp_path / "out" / "other" / "lr0.016-bs32-s0" / "summary.json").exists()


def test_unknown_only_and_bad_shard_exit_2(tiny_yaml, cli_here):
    cfg = tiny_yaml()
    r = cli_here("run", cfg, "--only", "nope")
    assert r.returncode == 2 and "no such run" in r.stderr and "lr0.05-bs32-s0" in r.stderr
    r = cli_here("run", cfg, "--shard", "3/2")
    assert r.returncode == 2 and "--shard" in r.stderr


def test_a_shard_with_no_run_says_so_and_exits_0(tiny_yaml, tmp_path, cli_here):
    """A job array with more tasks than the sweep has runs: the idle tasks succeed, and say why they did
    nothing (they exited 0 silently, each leaving a group folder)."""
    r = cli_here("run", tiny_yaml(), "--shard", "3/5", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "shard 3/5 holds none of the sweep's 1 run: nothing to train" in r.stderr
    assert not (tmp_path / "out").exists()


def test_resuming_a_folder_prints_that_a_busy_run_was_skipped(tiny_yaml, tmp_path, cli_here):
    """The runner reports a run another process trains (it prints nothing itself); the CLI prints it."""
    from tfminima import config, runner, sweep
    from tfminima.locks import RunLock

    spec = config.load(tiny_yaml("sweep: {grid: {optimizer.batch_size: [32, 64]}}\n", name="busy"))
    dirs = runner.prepare_runs(spec, tmp_path / "busy", sweep.expand(spec))
    with RunLock(dirs[0].path):  # as if another process trained the first run
        r = cli_here("run", "--resume", str(tmp_path / "busy"), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{dirs[0].run_id}: skipped: " in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert dirs[0].status()["state"] == "pending" and dirs[1].status()["state"] == "completed"


def test_data_prepare_offline_and_unknown(cli_here):
    r = cli_here("data", "prepare", "mnist-2d")
    assert r.returncode == 2 and "unknown dataset" in r.stderr
    r = cli_here("data", "list")
    assert r.returncode == 0 and "cifar10" in r.stdout and "mnist1d" in r.stdout


def _final_vars(run_dir: Path):
    return np.load(ckpt.latest(run_dir / "checkpoints") / "variables.npz")


@pytest.mark.slow  # three TensorFlow processes; test_train covers the same resume in-process
def test_sigkill_then_resume_is_bitwise_equal(tiny_yaml, tmp_path):
    cfg = tiny_yaml(name="kill")
    text = Path(cfg).read_text().replace("epochs: 2", "epochs: 6")
    Path(cfg).write_text(text)
    full = run_cli("run", cfg, "--out", str(tmp_path / "a"), "--quiet")
    assert full.returncode == 0, full.stderr[-3000:]

    proc = subprocess.Popen(CLI + ["run", cfg, "--out", str(tmp_path / "b"), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run_dir = tmp_path / "b" / "kill" / "lr0.05-bs32-s0"
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "checkpoints" / "epoch-2" / "state.json").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = RunDir(run_dir).status()["state"]
    assert state == "running"  # killed: no final state was written
    from tfminima.rundir import effective_state

    assert effective_state(RunDir(run_dir).status()) == "crashed"
    r = run_cli("run", "--resume", str(run_dir), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert RunDir(run_dir).status()["state"] == "completed"
    a = _final_vars(tmp_path / "a" / "kill" / "lr0.05-bs32-s0")
    b = _final_vars(run_dir)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    epochs = [e["epoch"] for e in RunDir(run_dir).events() if e["kind"] == "train"]
    assert epochs == list(range(1, 7))  # epochs completed


def test_sigterm_cancels_with_checkpoint(tiny_yaml, tmp_path):
    """Also, on this process (each a TensorFlow start fewer than a process of its own):

    - a Ctrl-C 0.5 s after the SIGTERM, while the stop is recorded or the interpreter exits (where
      Python has put SIGINT back to its default action: status -2 before), still ends with 130, no
      traceback and a readable run directory (test_faults' second Ctrl-C; the handler takes a SIGINT
      after a SIGTERM as a second Ctrl-C);
    - a user who asks for TensorFlow's own log lines (TF_CPP_MIN_LOG_LEVEL=0) gets its start-up
      lines, which the entry points otherwise drop (test_quiet)."""
    cfg = tiny_yaml(name="term")
    Path(cfg).write_text(Path(cfg).read_text().replace("epochs: 2", "epochs: 200"))
    proc = subprocess.Popen(CLI + ["run", cfg, "--out", str(tmp_path), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0"))
    run_dir = tmp_path / "term" / "lr0.05-bs32-s0"
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "checkpoints" / "latest").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    status = RunDir(run_dir).status()
    assert status["state"] == "cancelled"
    assert ckpt.latest(run_dir / "checkpoints") is not None
    assert status["epochs_done"] < 200
    assert_readable(RunDir(run_dir))
    assert "absl::InitializeLog" in err, err[-3000:]


def test_resume_of_a_completed_run_changes_nothing(tiny_yaml, tmp_path, cli_here):
    """It used to train zero epochs, evaluate the test split again, rewrite `ended` and drop `completed`."""
    r = cli_here("run", tiny_yaml("sweep: {grid: {optimizer.batch_size: [32, 64]}}\n"), "--out", str(tmp_path), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    group = tmp_path / "tiny"
    runs = sorted(p for p in group.iterdir() if (p / "config.yaml").exists())
    names = ("status.json", "metrics.jsonl", "summary.json")
    before = {(p, n): (p / n).read_bytes() for p in runs for n in names}
    listing = sorted(str(f.relative_to(group)) for f in group.rglob("*"))
    r = cli_here("run", "--resume", str(runs[0]))
    assert r.returncode == 0 and "already complete" in r.stdout, r.stdout + r.stderr[-3000:]
    r = cli_here("run", "--resume", str(group))  # a folder whose runs all completed
    assert r.returncode == 0 and "already finished" in r.stdout, r.stdout + r.stderr[-3000:]
    assert {(p, n): (p / n).read_bytes() for p in runs for n in names} == before
    assert sorted(str(f.relative_to(group)) for f in group.rglob("*")) == listing


def test_a_folder_resume_skips_its_completed_runs(tiny_yaml, tmp_path, cli_here):
    from tfminima import config, runner, sweep

    spec = config.load(tiny_yaml("sweep: {grid: {optimizer.batch_size: [32, 64]}}\n", name="half"))
    done, pending = runner.prepare_runs(spec, tmp_path / "half", sweep.expand(spec))
    plan = sweep.expand(spec)[0]
    assert runner.train_run(done, plan.spec, plan.hparams()).state == "completed"
    before = {n: (done.path / n).read_bytes() for n in ("status.json", "metrics.jsonl", "summary.json")}
    r = cli_here("run", "--resume", str(tmp_path / "half"), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert pending.status()["state"] == "completed"
    assert {n: (done.path / n).read_bytes() for n in before} == before


def test_validate_list_prints_aligned_columns_and_eta_over_s_as_everywhere(tiny_yaml, cli_here):
    from tfminima import config, sweep
    from tfminima.formats import eta_over_s

    cfg = tiny_yaml("sweep: {grid: {optimizer.batch_size: [8, 128]}, ratio: [3.125e-4, 1.25e-3]}\n")
    r = cli_here("validate", cfg, "--list")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:]
    assert rows[0].split() == ["run", "η", "S", "η/S"]
    assert len({len(row) for row in rows}) == 1  # every row as wide: right-aligned numbers
    import re

    ends = {tuple(m.end() for m in re.finditer(r"\S+", row))[1:] for row in rows}
    assert len(ends) == 1  # every number column ends where its header does
    for plan in sweep.expand(config.load(cfg)):
        assert any(row.split()[0] == plan.run_id and row.split()[3] == eta_over_s(plan.eta_over_s) for row in rows)
