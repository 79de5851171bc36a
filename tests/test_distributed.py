"""Scale: real multi-worker runs on localhost, sweep shards in parallel processes, XLA and the
per-replica batch under MirroredStrategy, and how a process learns its role in a cluster."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tfminima import checkpoint as ckpt
from tfminima import cluster, config, runner
from tfminima.locks import RunBusy
from tfminima.rundir import RunDir, read_events

CLI = [sys.executable, "-m", "tfminima.cli"]
TINY = (
    "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
    "model: {name: mlp, hidden: [16]}\n"
    "optimizer: {lr: 0.05, batch_size: 32, momentum: 0.9}\n"
)


def free_ports(n):
    """``n`` ports free now, chosen below Linux's ephemeral range (32768 up): a port the system hands out
    (``bind(("", 0))``, any outgoing connection) can be taken by another process between this check and
    the workers' own bind, and gRPC binds with SO_REUSEPORT, so two servers could share it."""
    rng, ports = random.Random(), []
    while len(ports) < n:
        port = rng.randrange(15000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("localhost", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def spawn(argv, env, cwd=None):
    """Start a process with its output going to files, not pipes: a worker blocked on a full pipe that
    the test is not reading yet (it waits on the other worker, which waits on this one in a collective)
    would hang them all."""
    files = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by finish)
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=files[0], stderr=files[1], text=True,
                            start_new_session=True)
    proc.output_files = files
    return proc


def start_workers(args, n=2, cwd=None, command=CLI):
    """``tfminima run ARGS`` as the n workers of a TF_CONFIG cluster on localhost (``cwd``: one per worker;
    ``command``: the interpreter's arguments before ARGS)."""
    hosts = [f"localhost:{p}" for p in free_ports(n)]
    procs = []
    for i in range(n):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",  # TensorFlow's errors stay, for a failure's message
                   TF_CONFIG=json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}))
        procs.append(spawn(command + list(args), env, cwd[i] if cwd else None))
    return procs


def finish(procs, timeout=600):
    """Wait for every process (made by :func:`spawn`); if one hangs, kill them all and fail with what each
    wrote to stderr. Returns [(returncode, stdout, stderr)]."""
    deadline, hung = time.time() + timeout, False
    try:
        for p in procs:
            p.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    results = []
    for p in procs:
        texts = []
        for f in p.output_files:
            f.seek(0)
            texts.append(f.read())
            f.close()
        results.append((p.returncode, *texts))
    if hung:
        tails = [(p.pid, code, err[-3000:]) for p, (code, _, err) in zip(procs, results)]
        raise AssertionError(f"processes still running after {timeout} s were killed; their stderr: {tails}")
    return results


def final_arrays(run_path):
    with np.load(ckpt.latest(Path(run_path) / "checkpoints") / "variables.npz") as z:
        return {k: z[k] for k in z.files}


def single_process_arrays(text, tmp_path):
    """The same experiment trained in this process on one device."""
    spec = config.load_text(text.replace("strategy: multi_worker", "strategy: one_device"), "one.yaml")
    (outcome,) = runner.run_sweep(spec, tmp_path / "single")
    assert outcome.state == "completed"
    return final_arrays(outcome.run_dir.path)


def assert_close(a, b, atol=1e-5):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=atol, err_msg=k)


# ``tfminima run``, then a SIGTERM to the worker itself once its run ended: Python's C handler writes the
# signal's number to the wakeup fd when it runs, which it does only while it is the process's handler.
RUN_THEN_SIGTERM = [sys.executable, "-c", (
    "import os, signal, sys, time\n"
    "from tfminima.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "r, w = os.pipe()\n"
    "os.set_blocking(r, False)\n"
    "os.set_blocking(w, False)\n"
    "signal.set_wakeup_fd(w)\n"
    "os.kill(os.getpid(), signal.SIGTERM)\n"
    "time.sleep(0.2)\n"
    "try:\n"
    "    heard = signal.SIGTERM in os.read(r, 64)\n"
    "except BlockingIOError:\n"
    "    heard = False\n"
    "print('SIGTERM heard' if heard else 'SIGTERM lost', flush=True)\n"
    "sys.exit(code)\n")]


@pytest.fixture(scope="module")
def two_workers_with_a_target(tmp_path_factory):
    """One 2-worker launch of a run with ``until`` (crossed during the second of 4 epochs), into a folder
    whose group name ``mwt`` is taken, and the same run trained in this process on one device.
    Three tests read it (one launch: two TensorFlow processes fewer than a launch for each). Each worker
    sends itself a SIGTERM once its run ended (RUN_THEN_SIGTERM)."""
    from tfminima.train import Trainer

    tmp_path = tmp_path_factory.mktemp("mw")
    base = "name: mwt\nepochs: 4\n" + TINY
    history = Trainer(config.load_text(base, "ref.yaml")).fit().history
    assert history[1]["val_loss"] < history[0]["val_loss"]
    value = (history[0]["val_loss"] + history[1]["val_loss"]) / 2  # crossed during the second epoch
    text = base + f"until: {{metric: val_loss, value: {value!r}, every_steps: 3}}\ndistribution: {{strategy: multi_worker}}\n"
    (tmp_path / "mwt.yaml").write_text(text)
    out = tmp_path / "out"
    (out / "mwt").mkdir(parents=True)  # taken: the chief picks mwt-2 and the other worker must follow
    procs = start_workers(["run", str(tmp_path / "mwt.yaml"), "--out", str(out), "--quiet"], command=RUN_THEN_SIGTERM)
    spec = config.load_text(text.replace("strategy: multi_worker", "strategy: one_device"), "one.yaml")
    (single,) = runner.run_sweep(spec, tmp_path / "single")
    assert single.state == "completed"
    results = finish(procs)
    return {"procs": procs, "results": results, "out": out, "single": single.run_dir,
            "run": RunDir(out / "mwt-2" / "lr0.05-bs32-s0")}


def test_two_workers_match_one_process_and_only_the_chief_writes(two_workers_with_a_target):
    launch = two_workers_with_a_target
    out, run, single = launch["out"], launch["run"], launch["single"]
    for code, stdout, stderr in launch["results"]:
        assert code == 0, stderr[-3000:]
        assert "runs in " + str(out / "mwt-2") in stdout
    status = run.status()
    assert status["state"] == "completed"
    dist = status["distribution"]
    assert (dist["strategy"], dist["workers"], dist["replicas"]) == ("MultiWorkerMirroredStrategy", 2, 2)
    assert (dist["global_batch_size"], dist["per_replica_batch_size"]) == (32, 16)
    assert run.summary()["distribution"] == dist
    assert_close(final_arrays(run.path), final_arrays(single.path))  # the global batch of 32 split 16 + 16
    # Only the chief wrote: one of each event, every file with a pid carries the chief's.
    epochs = [e["epoch"] for e in read_events(run.metrics_path) if e["kind"] == "train"]
    assert epochs == [e["epoch"] for e in read_events(single.metrics_path) if e["kind"] == "train"] and epochs
    assert epochs == sorted(set(epochs))
    chief_pid = launch["procs"][0].pid
    assert status["pid"] == chief_pid
    tb_files = list((out / "mwt-2").rglob("events.out.tfevents.*"))
    assert tb_files and all(f".{chief_pid}." in f.name for f in tb_files)
    assert json.loads((run.path / ".lock").read_text())["pid"] == chief_pid
    assert sorted(p.name for p in out.iterdir()) == ["mwt", "mwt-2"] and not any((out / "mwt").iterdir())


def test_two_workers_stop_at_the_target_step_of_one_process(two_workers_with_a_target):
    """until: both workers check at the same steps and stop together, where one process stops."""
    launch = two_workers_with_a_target
    assert [r[0] for r in launch["results"]] == [0, 0], [r[2][-2000:] for r in launch["results"]]
    got, want = launch["run"].summary(), launch["single"].summary()
    assert want["target_reached"] and 1 < want["epochs_to_target"] <= 2
    for key in ("target_reached", "steps_to_target", "epochs_to_target", "examples_to_target", "epochs_done"):
        assert got[key] == want[key], key
    assert got["target_measured"] == pytest.approx(want["target_measured"], rel=1e-5)


def test_a_multi_worker_strategy_leaves_the_sigterm_handler_ours(two_workers_with_a_target):
    """TensorFlow's coordination service installs its own SIGTERM handler when a multi-worker strategy
    starts: a SIGTERM sent to a worker was lost and the run trained on to the end (the slow stop test
    below found it). Checked on the 2-worker launch: after its run each worker sends itself a SIGTERM,
    which Python's handler (the CLI's) must still receive (it had a process of its own, a TensorFlow
    start more)."""
    for code, stdout, stderr in two_workers_with_a_target["results"]:
        assert code == 0 and "SIGTERM heard" in stdout, (stdout, stderr[-2000:])


@pytest.mark.slow  # two 2-worker launches (~4 TensorFlow processes)
def test_two_workers_stop_together_and_resume_from_the_shared_checkpoint(tmp_path):
    # 40 epochs of 8 steps: the stop lands while the run still trains (with 6 it once finished first)
    text = "name: mwr\nepochs: 40\n" + TINY + "distribution: {strategy: multi_worker}\n"
    (tmp_path / "mwr.yaml").write_text(text)
    out = tmp_path / "out"
    run = RunDir(out / "mwr" / "lr0.05-bs32-s0")
    procs = start_workers(["run", str(tmp_path / "mwr.yaml"), "--out", str(out), "--quiet"])
    deadline = time.time() + 400
    while time.time() < deadline and not (run.checkpoints_dir / "epoch-1" / "state.json").exists():
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # the non-chief only: the stop must reach the chief
    results = finish(procs)
    assert [r[0] for r in results] == [130, 130], [r[2][-2000:] for r in results]
    assert run.status()["state"] == "cancelled"
    stopped_at = ckpt.latest(run.checkpoints_dir)
    assert ckpt.position(stopped_at) < (40, 0)

    # A worker that does not see the checkpoints (no shared file system): every worker refuses.
    # The path is relative, so each worker resolves it in its own directory.
    import shutil

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(out, elsewhere / "out", ignore=shutil.ignore_patterns("checkpoints"))
    procs = start_workers(["run", "--resume", "out/mwr/lr0.05-bs32-s0", "--quiet"], cwd=[tmp_path, elsewhere])
    results = finish(procs)
    assert results[0][0] != 0 and results[1][0] != 0
    assert "workers disagree on the checkpoint" in results[0][2] + results[1][2]
    procs = start_workers(["run", "--resume", str(run.path), "--quiet"])
    reference = single_process_arrays(text, tmp_path)
    results = finish(procs)
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    assert run.status()["state"] == "completed"
    assert [e["epoch"] for e in read_events(run.metrics_path) if e["kind"] == "train"] == list(range(1, 41))  # epochs completed
    assert_close(final_arrays(run.path), reference)


@pytest.mark.slow  # three TensorFlow processes at once (~40-65 s on 2 loaded cores)
def test_three_shard_processes_make_the_full_sweep(tiny_yaml, tmp_path):
    cfg = tiny_yaml("epochs: 1\nsweep: {grid: {optimizer.batch_size: [16, 32, 64]}, seeds: [0, 1]}\n", name="sh")
    out = tmp_path / "shards"
    procs = [spawn(CLI + ["run", cfg, "--out", str(out), "--shard", f"{i}/3", "--quiet"],
                   dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")) for i in range(3)]
    full = runner.run_sweep(config.load(cfg), tmp_path / "full")
    results = finish(procs)
    assert all(code == 0 for code, _, _ in results), [e[-2000:] for _, _, e in results]
    full_ids = [o.run_dir.run_id for o in full]
    assert len(full_ids) == 6
    group = out / "sh"
    assert sorted(p.name for p in group.iterdir() if p.is_dir()) == sorted(full_ids)  # one group, disjoint
    trained_by = {r: RunDir(group / r).status()["pid"] for r in full_ids}
    for i, proc in enumerate(procs):  # each process trained exactly its share
        assert sorted(r for r, pid in trained_by.items() if pid == proc.pid) == sorted(full_ids[i::3])
    for o in full:
        shard_run = RunDir(group / o.run_dir.run_id)
        assert shard_run.status()["state"] == "completed"
        got, want = shard_run.summary(), o.run_dir.summary()
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "test_accuracy"):
            assert got[key] == want[key], (o.run_dir.run_id, key)
        a, b = final_arrays(shard_run.path), final_arrays(o.run_dir.path)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_xla_under_mirrored_strategy_on_two_logical_cpus():
    from tfminima.train import Trainer

    text = "epochs: 2\n" + TINY
    one = Trainer(config.load_text(text)).fit()
    trainer = Trainer(config.load_text(text + "distribution: {strategy: mirrored, cpu_replicas: 2, jit_compile: 'on'}\n"))
    assert trainer.replicas == 2 and trainer.steps.jit_compile
    two = trainer.fit()
    for a, b in zip(one.model.variables, two.model.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_a_mirrored_sweep_with_batch_norm_and_a_one_example_last_batch(tmp_path):
    """Two mirrored runs in one process (each used to make its own MirroredStrategy, whose
    collective keys collided: "Shape mismatch in the collective instance 101"), with batch norm
    and 257 examples in batches of 32: the last example alone would leave a replica empty."""
    spec = config.load_text(
        "name: bn\nepochs: 2\ndataset: {name: mnist1d, train_size: 257, val_size: 63, test_size: 63}\n"
        "model: {name: mlp, hidden: [16], batch_norm: true}\noptimizer: {lr: 0.05, batch_size: 32}\n"
        "distribution: {strategy: mirrored, cpu_replicas: 2}\n"
        "sweep: {grid: {model.hidden: [[16], [8, 8]]}}\n", "bn.yaml")
    outcomes = runner.run_sweep(spec, tmp_path)
    assert [o.state for o in outcomes] == ["completed", "completed"], [o.error for o in outcomes]
    for o in outcomes:
        assert all(np.isfinite(a).all() for a in final_arrays(o.run_dir.path).values())
        assert [e["steps"] for e in o.run_dir.events() if e["kind"] == "train"] == [8, 8]  # the lone example: dropped
    from tfminima.train import leaves_a_replica_empty

    assert [leaves_a_replica_empty(b, 2) for b in (0, 1, 2, 3)] == [False, True, False, False]
    assert [leaves_a_replica_empty(b, 4) for b in (4, 5, 6, 7, 9)] == [False, True, True, False, True]  # 9: 3+3+3+0


def test_run_directory_reports_the_strategy_and_per_replica_batch(tmp_path):
    spec = config.load_text("name: rep\nepochs: 1\n" + TINY + "distribution: {strategy: mirrored, cpu_replicas: 2}\n"
                            "batch_size_schedule: {kind: table, values: [2]}\n", "rep.yaml")
    (outcome,) = runner.run_sweep(spec, tmp_path)
    dist = outcome.run_dir.status()["distribution"]
    assert dist["strategy"] == "MirroredStrategy" and dist["replicas"] == 2 and dist["workers"] == 1
    assert (dist["global_batch_size"], dist["per_replica_batch_size"]) == (32, 16)
    assert len(dist["local_devices"]) == 2
    assert outcome.run_dir.summary()["distribution"] == dist
    assert dist["global_batch_size_range"] == [64, 64] and dist["per_replica_batch_size_range"] == [32, 32]


def test_role_from_tf_config_and_slurm(monkeypatch):
    mw = config.load_text("distribution: {strategy: multi_worker}\n").distribution
    hosts = ["a:1", "b:2", "c:3"]
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    for index, chief in ((0, True), (2, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}))
        assert cluster.role(mw) == cluster.Role(chief, index, 3)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": hosts[1:]},
                                                "task": {"type": "worker", "index": 0}}))
    assert cluster.role(mw) == cluster.Role(False, 1, 3)
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert cluster.role(mw) == cluster.Role(False, 3, 4)
    assert cluster.role(config.load_text("").distribution) == cluster.Role()  # not multi-worker: its own chief


@pytest.mark.parametrize("chief_error, others_raise", [
    (RunBusy("a:1 trains it"), RunBusy), (OSError("disk full"), runner.WorkerStopped)])
def test_every_worker_follows_the_chiefs_decision(monkeypatch, chief_error, others_raise):
    """The chief decides (takes a run's lock, picks the group folder) and one agreement tells the others.
    A run the chief finds busy is skipped by every worker alike: the others raised WorkerStopped and ended
    the whole sweep or folder resume while the chief went on to the next run and waited for them there.
    The agreement is played here by hand: the chief's values are what the others receive."""
    from tfminima import distribute

    spec = config.load_text("distribution: {strategy: multi_worker}\n")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    monkeypatch.setattr(distribute, "make_strategy", lambda dist: None)  # no cluster: the values are passed by hand
    sent = []

    def as_worker(index):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "worker", "index": index}}))
        chief_agree = lambda strategy, values: (sent.append(values) or values, True)  # noqa: E731
        worker_agree = lambda strategy, values: (sent[-1], values == sent[-1])  # noqa: E731
        monkeypatch.setattr(distribute, "agree", chief_agree if index == 0 else worker_agree)

    def fail():
        raise chief_error

    as_worker(0)
    with pytest.raises(type(chief_error)):
        runner._chief_decides(spec, fail)
    as_worker(1)
    with pytest.raises(others_raise):
        runner._chief_decides(spec, lambda: pytest.fail("only the chief decides"))
    as_worker(0)
    assert runner._chief_decides(spec, lambda: "mwt-3", lambda made: 3) == "mwt-3"
    as_worker(1)
    assert runner._chief_decides(spec, lambda: pytest.fail("only the chief decides"), lambda made: 3) == 3


def test_a_users_own_mirrored_strategy_does_not_collide_with_ours():
    """A MirroredStrategy the user made and ran first shares no collective keys with the one we train with."""
    script = Path(__file__).with_name("_own_strategy_beside_ours.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and np.isfinite(result["loss"])
