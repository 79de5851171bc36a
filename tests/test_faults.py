"""Faults: SIGKILL at random moments (checkpoint writes included), a second Ctrl-C, two processes on
one run, a resume with another config, a full or read-only disk. Nothing may leave a run directory
unreadable or lose the last good checkpoint."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from process_support import assert_quiet, assert_readable, user_env

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tfminima.cli"]


def kill_test():
    spec = importlib.util.spec_from_file_location("kill_test", ROOT / "scripts" / "kill_test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_sigkills_one_inside_a_checkpoint_write_then_resume_bitwise(tmp_path):
    # 14 epochs (0.2 s each): the checkpoint kill may wait through several epochs for a write in progress
    summary = kill_test().run_campaign(runs=1, kills=2, epochs=14, work=tmp_path, in_process_reference=True)
    brief = {k: v for k, v in summary.items() if k != "results"}
    assert summary["ok"], brief
    assert summary["kills_by_mode"]["checkpoint"] == 1 and summary["checkpoint_writes_hit"] == 1, brief


@pytest.mark.slow  # ~25 TensorFlow process starts: 5-20 minutes
def test_kill_campaign_of_21_sigkills():
    summary = kill_test().run_campaign(runs=3, kills=7, epochs=30)
    brief = {k: v for k, v in summary.items() if k != "results"}
    assert summary["ok"] and summary["kills"] >= 20, brief


WRITER = """
import os, sys, numpy as np
from tfminima import checkpoint as ckpt
from tfminima.rundir import MetricsWriter, RunDir
run = RunDir(sys.argv[1])

class V:  # a variable as checkpoint.save sees one
    def __init__(self, path, value):
        self.path, self.value = path, value
    def numpy(self):
        return self.value

def write_until_killed():
    latest = ckpt.latest(run.checkpoints_dir)
    n = ckpt.position(latest)[0] if latest else 0
    writer = MetricsWriter(run.metrics_path, "run")
    while True:
        n += 1
        model = [V(f"w{i}", np.full((64, 64), n, np.float32)) for i in range(8)]  # 128 KiB a checkpoint
        ckpt.save(run.checkpoints_dir, n, type("M", (), {"variables": model})(), type("O", (), {"variables": []})(),
                  {"n": n})
        run.write_status("running", epochs_done=n, note="x" * 2000)
        writer.write("train", n, n, loss=1.0 / n, pad="y" * 500)

for line in sys.stdin:  # a line: fork one writer (the imports above are paid once), say its pid, reap it
    pid = os.fork()
    if pid == 0:
        write_until_killed()
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def test_run_files_survive_40_sigkills_at_random_moments(tmp_path):
    """The storage layer alone (no TensorFlow): checkpoints, status.json and metrics.jsonl written in a
    loop and SIGKILLed at random; after every kill the files parse and the latest checkpoint's arrays all
    hold the number its name says. Each writer is a process forked by one launcher (WRITER), so a kill
    costs no interpreter start (40 starts importing numpy and tfminima were ~20 CPU-s)."""
    import random

    from tfminima import checkpoint as ckpt
    from tfminima.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    rng = random.Random(0)
    saved = []
    launcher = subprocess.Popen([sys.executable, "-c", WRITER, str(run.path)], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    pid = None  # the writer not reaped yet
    try:
        for _ in range(40):
            launcher.stdin.write("fork\n")
            launcher.stdin.flush()
            pid = int(launcher.stdout.readline())
            # Kill only once this process has written a checkpoint of its own (however loaded the machine),
            # then at a random moment of its writing.
            previous = saved[-1] if saved else 0
            deadline = time.time() + 120
            while time.time() < deadline:
                latest = ckpt.latest(run.checkpoints_dir) if run.status_path.exists() else None
                if latest is not None and ckpt.position(latest)[0] > previous:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(pid, signal.SIGKILL)
            assert launcher.stdout.readline() == "reaped\n"  # dead and reaped before its files are read
            pid = None
            saved.append(check_after_a_kill(run))
    finally:
        if pid is not None:  # a failure while it writes: the launcher waits for it
            os.kill(pid, signal.SIGKILL)
        launcher.stdin.close()
        launcher.wait()
    assert all(a < b for a, b in zip(saved, saved[1:])), saved  # progress at every kill, never a step back
    assert len(list(run.checkpoints_dir.glob("epoch-*"))) <= 3  # pruning survives kills too


def check_after_a_kill(run) -> int:
    """The files of ``run`` parse and its latest checkpoint is whole; returns that checkpoint's number."""
    from tfminima import checkpoint as ckpt
    from tfminima.rundir import read_events

    json.loads(run.status_path.read_text())
    epochs = [e["epoch"] for e in read_events(run.metrics_path)]
    assert epochs == sorted(epochs)
    latest = ckpt.latest(run.checkpoints_dir)
    n = ckpt.position(latest)[0]
    assert ckpt.read_state(latest)["n"] == n
    with np.load(latest / "variables.npz") as z:
        assert len(z.files) == 8 and all((z[k] == n).all() for k in z.files)
    return n


# ------------------------------------------------------------------------- helpers
TINY = (
    "name: f\nepochs: 3\n"
    "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
    "model: {name: mlp, hidden: [16]}\n"
    "optimizer: {lr: 0.05, batch_size: 32, momentum: 0.9}\n"
)


def new_run(tmp_path, name, text=TINY):
    from tfminima import config, rundir

    spec = config.load_text(text, f"{name}.yaml")
    return spec, rundir.create(tmp_path, name, "run", config.to_yaml(spec))


def arrays(run):
    from tfminima import checkpoint as ckpt

    with np.load(ckpt.latest(run.checkpoints_dir) / "variables.npz") as z:
        return {k: z[k] for k in z.files}


def make_unwritable(path):
    """Make writing below a directory fail; returns the undo.

    Other users: mode bits. Root: the immutable flag (``chattr +i``, EPERM); where root may not set it
    (containers without CAP_LINUX_IMMUTABLE), the directory is set aside and a regular file put in its
    place, so writing below the path fails with ENOTDIR -- for root too, never a skipped test.
    """
    path = Path(path)
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        return lambda: path.chmod(mode)
    try:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
            return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    except OSError:  # no chattr at all
        pass
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    path.write_text("not a directory while the test needs it unwritable\n")

    def undo():
        path.unlink()
        aside.rename(path)

    return undo


# ------------------------------------------------------------------------- storage
def test_disk_full_while_checkpointing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import errno

    from tfminima import checkpoint as ckpt
    from tfminima import runner
    from tfminima.rundir import StorageError

    spec, full = new_run(tmp_path, "full")
    assert runner.train_run(full, spec, {}).state == "completed"
    spec, run = new_run(tmp_path, "full_disk")
    real, calls = np.savez, []

    def savez(f, **arrays_):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint: half a file, then the disk is full
            f.write(b"\x00" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays_)

    monkeypatch.setattr(ckpt.np, "savez", savez)
    with pytest.raises(StorageError, match="No space left on device"):
        runner.train_run(run, spec, {})
    monkeypatch.undo()
    status = run.status()
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert "Traceback" not in json.dumps(status)
    assert ckpt.latest(run.checkpoints_dir).name == "epoch-1"
    assert_readable(run)
    assert runner.resume_run(run).state == "completed"  # room again: continue from epoch-1
    want, got = arrays(full), arrays(run)
    for k in want:
        np.testing.assert_array_equal(want[k], got[k])


def test_disk_full_while_logging_fails_the_run_cleanly(tmp_path, monkeypatch):
    import errno

    from tfminima import checkpoint as ckpt
    from tfminima import rundir, runner

    spec, run = new_run(tmp_path, "full_log")
    real = rundir.MetricsWriter.write

    def write(self, kind, epoch, step, **values):
        if kind == "train" and epoch == 2:  # logging the second epoch (epochs completed)
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return real(self, kind, epoch, step, **values)

    monkeypatch.setattr(rundir.MetricsWriter, "write", write)
    with pytest.raises(rundir.StorageError) as info:
        runner.train_run(run, spec, {})
    assert str(run.metrics_path) in str(info.value)
    assert run.status()["state"] == "failed"
    assert ckpt.latest(run.checkpoints_dir).name == "epoch-1"
    assert_readable(run)


def test_a_final_file_the_disk_refuses_is_reported_and_the_rest_recorded(tmp_path, monkeypatch):
    """Recording a run's end is best effort: summary.json cannot be written, the status still is, and the
    caller hears what is missing (the runner prints nothing itself)."""
    import errno

    from tfminima import runner
    from tfminima.rundir import RunDir

    spec, run = new_run(tmp_path, "no_summary")
    refused = OSError(errno.ENOSPC, "No space left on device")

    def write_summary(self, summary):
        raise refused

    monkeypatch.setattr(RunDir, "write_summary", write_summary)
    notices = []
    outcome = runner.train_run(run, spec, {}, on_notice=notices.append)
    assert outcome.state == "completed" and outcome.final["epochs_done"] == spec.epochs
    assert notices == [f"{run.path}: could not record the final state 'completed': {refused}"]
    assert run.status()["state"] == "completed" and not run.summary_path.exists()
    assert [e["state"] for e in run.events() if e["kind"] == "status"][-1] == "completed"
    assert_readable(run)


def test_checkpoints_folder_turning_read_only_keeps_the_last_good_checkpoint(tmp_path):
    import keras

    from tfminima import checkpoint as ckpt
    from tfminima import runner
    from tfminima.rundir import StorageError

    spec, run = new_run(tmp_path, "ro")
    undo = []

    class LockDown(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after epoch-1 was saved, before epoch-2 is
                undo.append(make_unwritable(run.checkpoints_dir))

    try:
        with pytest.raises(StorageError, match="cannot write"):
            runner.train_run(run, spec, {}, callbacks=[LockDown()])
    finally:
        for u in undo:
            u()
    assert run.status()["state"] == "failed" and "cannot write" in run.status()["error"]
    assert ckpt.latest(run.checkpoints_dir).name == "epoch-1"
    assert_readable(run)


@pytest.mark.parametrize("how", ["under_a_file", "immutable"])
def test_unwritable_output_directory_is_a_message_not_a_traceback(tiny_yaml, tmp_path, how):
    """``--out`` where nothing can be written: below a regular file, or in a directory made unwritable
    (see :func:`make_unwritable`)."""
    ro = tmp_path / "ro"
    if how == "under_a_file":
        ro.write_text("a file, not a folder\n")
        undo = lambda: None  # noqa: E731
    else:
        ro.mkdir()
        undo = make_unwritable(ro)
    try:
        r = subprocess.run(CLI + ["run", tiny_yaml(), "--out", str(ro / "runs"), "--quiet"],
                           capture_output=True, text=True, timeout=600)
    finally:
        undo()
    assert r.returncode == 1, r.stderr[-2000:]
    assert "cannot write" in r.stderr and str(ro / "runs") in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------- sharing
def test_a_run_is_trained_by_one_process_at_a_time(tmp_path):
    from tfminima import runner
    from tfminima.locks import RunBusy, RunLock

    spec, run = new_run(tmp_path, "busy")
    with RunLock(run.path):  # as if another process were training it
        with pytest.raises(RunBusy, match=f"process {os.getpid()}"):
            runner.train_run(run, spec, {})
        with pytest.raises(RunBusy):
            runner.resume_run(run)
    assert run.status()["state"] == "pending"  # untouched
    assert runner.resume_run(run).state == "completed"


def test_processes_resuming_one_folder_share_its_runs(tmp_path):
    from tfminima import config, resume, runner
    from tfminima.locks import RunBusy, RunLock

    spec = config.load_text(TINY.replace("epochs: 3", "epochs: 1")
                            + "sweep: {grid: {optimizer.batch_size: [32, 64]}}\n", "g.yaml")
    dirs = runner.prepare_runs(spec, tmp_path / "g", runner.sweep_lib.expand(spec))  # two pending runs
    targets = resume.targets(tmp_path / "g")
    assert [t.run_dir.run_id for t in targets] == ["lr0.05-bs32-s0", "lr0.05-bs64-s0"]
    with RunLock(dirs[0].path):  # another process trains the first one
        notices = []
        outcomes = runner.resume_runs(targets, single=False, on_notice=notices.append)
        with pytest.raises(RunBusy):
            runner.resume_runs(targets[:1], single=True)
    assert [o.run_dir.run_id for o in outcomes] == ["lr0.05-bs64-s0"] and outcomes[0].state == "completed"
    assert len(notices) == 1 and notices[0].startswith("lr0.05-bs32-s0: skipped: "), notices
    assert dirs[0].status()["state"] == "pending"


def test_shared_group_never_overwrites_an_existing_run(tmp_path):
    from tfminima import config, runner

    spec = config.load_text(TINY.replace("epochs: 3", "epochs: 1")
                            + "sweep: {grid: {optimizer.batch_size: [32, 64]}}\n", "g.yaml")
    group = tmp_path / "shared"
    (first,) = runner.run_sweep(spec, tmp_path, group=group, only=["lr0.05-bs32-s0"])
    before = first.run_dir.status_path.read_text()
    with pytest.raises(runner.RunExists, match=r"lr0.05-bs32-s0 \(completed\).*--resume"):
        runner.run_sweep(spec, tmp_path, group=group)  # both runs; one exists: nothing is created
    assert not (group / "lr0.05-bs64-s0").exists()
    assert first.run_dir.status_path.read_text() == before
    (second,) = runner.run_sweep(spec, tmp_path, group=group, only=["lr0.05-bs64-s0"])
    assert second.state == "completed"


def test_cli_refuses_a_busy_run_and_a_resume_with_another_config(tiny_yaml, tmp_path, cli_here):
    """In this process (cli_here: the messages and exit statuses are tested; a flock taken on another
    open file of this process conflicts as another process's does)."""
    from tfminima import config, resume, rundir
    from tfminima.locks import RunLock

    cfg = tiny_yaml()
    spec = config.load(cfg)
    run = rundir.create(tmp_path / "runs", "tiny", "lr0.05-bs32-s0", config.to_yaml(spec))
    with RunLock(run.path):
        r = cli_here("run", "--resume", run.path)
    assert r.returncode == 2 and f"is being trained by process {os.getpid()}" in r.stderr
    r = cli_here("run", cfg, "--set", "optimizer.lr=0.1", "--resume", run.path)
    assert r.returncode == 2 and "optimizer.lr: stored 0.05, given 0.1" in r.stderr and "Traceback" not in r.stderr
    r = cli_here("run", "--resume", run.path, "--set", "epochs=5")
    assert r.returncode == 2 and "epochs: stored 2, given 5" in r.stderr
    assert run.status()["state"] == "pending"  # untouched
    # the same config again (scripts that repeat their arguments) is accepted, and the stored one is used
    (target,) = resume.targets(run.path, cfg, ["epochs=2"])
    assert target.spec == config.load(run.config_path)
    with pytest.raises(resume.ResumeConflict, match="is not a run of"):
        resume.targets(run.path, tiny_yaml("sweep: {grid: {optimizer.batch_size: [64, 128]}}\n", name="other"))


# ------------------------------------------------------------------------- signals
@pytest.mark.parametrize("stopped", [False, True], ids=["completed", "cancelled"])
def test_ctrl_c_while_the_run_end_is_recorded_waits_for_it(tmp_path, monkeypatch, stopped):
    """Two Ctrl-C land while the final status is being written (deterministically, from inside the
    write): the run's end is recorded whole, then the second one interrupts."""
    import threading

    from tfminima import cli, runner
    from tfminima.rundir import RunDir

    import keras

    spec, run = new_run(tmp_path, "end")
    stop = threading.Event()

    class FirstCtrlC(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if stopped and batch == 1:
                stop.set()  # the first Ctrl-C came during training (once the step is traced)

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    cli._install_stop_handlers(stop)
    real = RunDir.write_summary

    def write_summary(self, summary):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # both are handled by now (between two bytecodes of this thread)
        real(self, summary)

    monkeypatch.setattr(RunDir, "write_summary", write_summary)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.train_run(run, spec, {}, stop_event=stop, callbacks=[FirstCtrlC()])
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    state = "cancelled" if stopped else "completed"
    assert run.status()["state"] == state and run.summary()["state"] == state
    assert "distribution" in run.summary()  # the final summary, not overwritten by a second ending
    assert ("test_loss" in run.summary()) == (not stopped)
    assert [e["state"] for e in run.events() if e["kind"] == "status"][-1] == state
    assert_readable(run)


# A Ctrl-C while the interpreter exits after the runs are recorded: test_quiet's
# test_ctrl_c_while_the_interpreter_exits_after_a_run_is_quiet (on its sweep process).


def test_second_ctrl_c_inside_the_stop_still_leaves_a_readable_run_directory(tiny_yaml, tmp_path):
    """The second Ctrl-C lands while the first stop is handled (checkpoint, status). Later, while the
    interpreter exits (0.5 s after the first stop request): on test_cli's SIGTERM process.
    Also the quiet start of ``tfminima run`` in a user's environment (test_quiet's check, on this
    process: a TensorFlow start fewer)."""
    from tfminima.rundir import RunDir

    cfg = tiny_yaml(name="cc")
    Path(cfg).write_text(Path(cfg).read_text().replace("epochs: 2", "epochs: 500"))
    proc = subprocess.Popen(CLI + ["run", cfg, "--out", str(tmp_path), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=user_env())
    run = RunDir(tmp_path / "cc" / "lr0.05-bs32-s0")
    deadline = time.time() + 300
    while time.time() < deadline and not (run.checkpoints_dir / "epoch-2" / "state.json").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert run.status()["state"] == "cancelled", (run.status(), err[-3000:])
    assert_readable(run)
    assert_quiet(err)
