"""Resume refuses what it cannot continue faithfully, and a checkpoint is the one ``latest`` names.

Silent data loss was the fault: a run whose checkpoints were deleted retrained from epoch 0 and
dropped its logged epochs, and a stray ``checkpoints/epoch-999`` won over ``latest``. Here a real
run is trained once, copied, damaged in each of those ways and resumed or analysed through the CLI
(and through ``runner.resume_run``, the TUI's path): the refusal names the run and the file, exits
non-zero and leaves every file as it was; ``--restart`` then trains the run again from epoch 0 and
ends bitwise where the undamaged run ended.
"""

import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfminima import checkpoint as ckpt
from tfminima import resume, runfiles
from tfminima.rundir import RunDir

TINY = (
    "name: r\nepochs: 3\n"
    "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
    "model: {name: mlp, hidden: [16]}\n"
    "optimizer: {lr: 0.05, batch_size: 32, momentum: 0.9}\n"
)


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but the lock) with a hash of its bytes: what "untouched" means here."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "variables.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A completed 3-epoch run (checkpoints epoch-2 and epoch-3), trained once for the module."""
    from tfminima import config, runner

    root = tmp_path_factory.mktemp("trained")
    spec = config.load_text(TINY, "r.yaml")
    (outcome,) = runner.run_sweep(spec, root)
    assert outcome.state == "completed"
    return outcome.run_dir.path


@pytest.fixture
def unfinished(trained, tmp_path):
    """A copy of the trained run, recorded ``cancelled`` (what --resume picks up)."""
    run = tmp_path / "g" / trained.name
    shutil.copytree(trained, run)
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(dict(status, state="cancelled")))
    return run


# ----------------------------------------------------------------------------- which checkpoint
class Var:
    """A variable as checkpoint.save sees one."""

    def __init__(self, path, value):
        self.path, self.value = path, value

    def numpy(self):
        return self.value


def save(directory, n, step=0):
    model = type("M", (), {"variables": [Var("w", np.full(4, n, np.float32))]})()
    return ckpt.save(directory, n, model, type("O", (), {"variables": []})(), {}, step=step)


def test_latest_names_the_checkpoint_and_a_stray_folder_neither_wins_nor_is_pruned(tmp_path):
    d = tmp_path / "checkpoints"
    save(d, 1)
    stray = d / "epoch-999"
    shutil.copytree(d / "epoch-1", stray)  # a complete checkpoint folder the run did not write
    (d / "epoch-500").mkdir()  # and an empty one
    assert ckpt.latest(d) == d / "epoch-1"
    for n in (2, 3, 4):
        save(d, n)
        assert ckpt.latest(d) == d / f"epoch-{n}"
    assert sorted(p.name for p in d.iterdir()) == ["epoch-3", "epoch-4", "epoch-500", "epoch-999", "latest"]
    assert ckpt.read_state(ckpt.latest(d))["epochs_done"] == 4


def test_a_pointer_that_names_no_checkpoint_is_an_error_naming_it(tmp_path):
    d = tmp_path / "checkpoints"
    save(d, 1)
    save(d, 2)
    (d / "latest").write_text("epoch-7\n")
    with pytest.raises(runfiles.CorruptFile, match=r"^checkpoints/latest: names epoch-7, and there is no such folder"):
        ckpt.latest(d)
    (d / "latest").write_text("../../elsewhere\n")
    with pytest.raises(runfiles.CorruptFile, match=r"^checkpoints/latest: '\.\./\.\./elsewhere' is not a checkpoint name"):
        ckpt.latest(d)
    (d / "latest").write_text("epoch-2\n")
    (d / "epoch-2" / "variables.npz").unlink()
    with pytest.raises(runfiles.CorruptFile, match=r"^checkpoints/latest: names epoch-2, which has no variables.npz"):
        ckpt.latest(d)


def test_without_a_pointer_only_the_first_checkpoint_of_a_killed_save_is_taken(tmp_path):
    """A kill between the first checkpoint's rename and its pointer leaves one complete folder and no
    pointer: that folder is the run's. Several folders without a pointer cannot be told apart."""
    d = tmp_path / "checkpoints"
    save(d, 1, step=5)
    (d / "latest").unlink()
    assert ckpt.latest(d) == d / "epoch-1-step-5"
    (d / "epoch-1-step-5").rename(d / "epoch-9")  # its state says epoch 1, step 5: not this folder's
    assert ckpt.latest(d) is None
    (d / "epoch-9").rename(d / "epoch-1-step-5")
    shutil.copytree(d / "epoch-1-step-5", d / "epoch-2")
    with pytest.raises(runfiles.CorruptFile, match=r"missing, and the folder holds 2 checkpoints \(epoch-1-step-5, "
                                                   r"epoch-2\).*write its name into"):
        ckpt.latest(d)


# ----------------------------------------------------------------------------- resume refuses
def test_resume_of_a_run_whose_checkpoints_are_gone_is_refused_and_restart_trains_it_again(trained, unfinished, cli_here):
    shutil.rmtree(unfinished / "checkpoints")
    before = tree(unfinished)
    r = cli_here("run", "--resume", unfinished, "--quiet")
    assert r.returncode == 2, r.stderr
    assert f"cannot continue {unfinished} faithfully: metrics.jsonl logs 3 trained epochs and there is no " \
           "checkpoint to continue from" in r.stderr
    assert f"tfminima run --resume {unfinished} --restart" in r.stderr and "Traceback" not in r.stderr
    assert tree(unfinished) == before
    r = cli_here("run", "--resume", unfinished, "--restart", "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"{unfinished}: starting over; removed metrics.jsonl, summary.json, tb" in r.stderr
    run = RunDir(unfinished)
    assert run.status()["state"] == "completed"
    assert [e["epoch"] for e in run.events() if e["kind"] == "train"] == \
           [e["epoch"] for e in RunDir(trained).events() if e["kind"] == "train"]
    again, first = arrays(ckpt.latest(run.checkpoints_dir)), arrays(ckpt.latest(trained / "checkpoints"))
    assert again.keys() == first.keys() and all(np.array_equal(again[k], first[k]) for k in first)


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def replace_member(archive: Path, name: str, data: bytes) -> None:
    """Rewrite ``archive`` with member ``name`` holding ``data``: a whole zip, every CRC right."""
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = data
    with zipfile.ZipFile(archive, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)


@pytest.mark.parametrize("damage, reason", [
    ("dangling", "checkpoints/latest: names epoch-9, and there is no such folder"),
    ("truncated", "checkpoints/epoch-3/variables.npz: cannot be read (File is not a zip file)"),
    ("flipped", "checkpoints/epoch-3/variables.npz: m0.npy is damaged (its CRC does not match)"),
    ("renamed", "checkpoints/epoch-3/state.json: says epochs_done 2, step_in_epoch 0: not the checkpoint"),
    ("not_npy", "checkpoints/epoch-3/variables.npz: m0.npy is not a NumPy array (not a .npy header)"),
    ("objects", "checkpoints/epoch-3/variables.npz: m0.npy holds object, not numbers"),
    ("short", "checkpoints/epoch-3/variables.npz: m0.npy holds 8 bytes of data, its header says 2560"),
])
def test_resume_refuses_a_checkpoint_it_cannot_trust_and_names_the_one_to_choose_instead(unfinished, damage, reason):
    """Through runner.resume_run too (the TUI's worker resumes that way): refused before any write."""
    from tfminima import runner

    d = unfinished / "checkpoints"
    if damage == "dangling":
        (d / "latest").write_text("epoch-9\n")
    elif damage == "truncated":
        (d / "epoch-3" / "variables.npz").write_bytes((d / "epoch-3" / "variables.npz").read_bytes()[:-100])
    elif damage == "flipped":
        data = bytearray((d / "epoch-3" / "variables.npz").read_bytes())
        data[120] ^= 0xFF  # inside the first array's bytes: the archive's index is intact
        (d / "epoch-3" / "variables.npz").write_bytes(bytes(data))
    elif damage == "renamed":
        (d / "epoch-3" / "state.json").write_text((d / "epoch-2" / "state.json").read_text())
    else:  # an archive whole and CRC-correct, whose m0.npy is no array of numbers as save writes them
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (40, 16)})
        member = {"not_npy": b"not an array at all",
                  "objects": npy(np.array([{"a": 1}, None], dtype=object)),
                  "short": header.getvalue() + bytes(8)}[damage]
        replace_member(d / "epoch-3" / "variables.npz", "m0.npy", member)
    before = tree(unfinished)
    with pytest.raises(resume.ResumeRefused) as err:
        runner.resume_run(RunDir(unfinished))
    message = str(err.value)
    assert message.startswith(f"cannot continue {unfinished} faithfully: {reason}"), message
    others = "epoch-2, epoch-3" if damage == "dangling" else "epoch-2"
    assert f"also holds {others}: to continue from one, check it and write its name into {d / 'latest'}" in message
    assert message.endswith(f"tfminima run --resume {unfinished} --restart")
    assert tree(unfinished) == before


@pytest.mark.parametrize("kept", [0, 1])
def test_what_a_kill_can_leave_past_the_checkpoint_resumes(unfinished, kept):
    """Killed inside the first epoch (nothing logged), or inside the first checkpoint's write (its
    epoch logged, no checkpoint yet): a kill leaves at most ``checkpoint_every`` epochs logged past
    the checkpoint, and the resume redoes them exactly, so nothing is refused."""
    from tfminima import config

    shutil.rmtree(unfinished / "checkpoints")
    run = RunDir(unfinished)
    first = min(e["epoch"] for e in run.events() if e["kind"] == "train")
    kept_events = [e for e in run.events() if e["epoch"] is None or (kept and e["epoch"] == first)]
    run.metrics_path.write_text("".join(json.dumps(e) + "\n" for e in kept_events))
    assert resume.refusal(run, config.load(run.config_path)) is None
    assert [t.run_dir.path for t in resume.targets(unfinished)] == [unfinished]


def test_a_checkpoint_far_behind_the_log_is_refused(unfinished):
    """``latest`` put back to an older checkpoint than the log's epochs (epoch-2 of 5 logged)."""
    run = RunDir(unfinished)
    train = [e for e in run.events() if e["kind"] == "train"]
    extra = [dict(train[-1], epoch=train[-1]["epoch"] + k) for k in (1, 2)]
    with open(run.metrics_path, "a") as f:
        f.write("".join(json.dumps(e) + "\n" for e in extra))
    (unfinished / "checkpoints" / "latest").write_text("epoch-2\n")
    before = tree(unfinished)
    with pytest.raises(resume.ResumeRefused, match=r"faithfully: metrics.jsonl logs 5 trained epochs, and the "
                                                    r"checkpoint checkpoints/latest names \(epoch-2\) holds 2; a "
                                                    r"resume would drop the 3 after it\. To train it again"):
        resume.targets(unfinished)
    assert tree(unfinished) == before


# ----------------------------------------------------------------------------- analyze
def test_analyze_measures_the_pointer_s_checkpoint_and_names_a_damaged_one(trained, unfinished, cli_here):
    d = unfinished / "checkpoints"
    shutil.copytree(d / "epoch-2", d / "epoch-999")  # a stray copy: not the run's latest
    args = ["--k", "1", "--samples", "64", "--trace-probes", "2"]
    r = cli_here("analyze", unfinished, *args)
    assert r.returncode == 0 and "after 3 epochs" in r.stdout, r.stderr
    (d / "epoch-3" / "variables.npz").write_bytes((d / "epoch-3" / "variables.npz").read_bytes()[:-100])
    r = cli_here("analyze", unfinished, *args)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == \
        f"tfminima analyze: {d / 'epoch-3'}/variables.npz: cannot be read (File is not a zip file)"
    r = cli_here("analyze", unfinished, *args, "--checkpoint", "999")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{d / 'epoch-999'}/state.json: says epochs_done 2, step_in_epoch 0: not the checkpoint" in r.stderr


def test_analyze_names_a_checkpoint_array_that_does_not_fit_the_model(unfinished, cli_here):
    """A whole archive of numbers, one of the wrong shape (a checkpoint of another model): one short line."""
    d = unfinished / "checkpoints" / "epoch-3"
    replace_member(d / "variables.npz", "m0.npy", npy(np.zeros((3, 3), np.float32)))
    r = cli_here("analyze", unfinished, "--k", "1", "--samples", "64", "--trace-probes", "2")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert re.fullmatch(re.escape(f"tfminima analyze: {unfinished}/checkpoints/epoch-3/variables.npz: m0.npy has "
                                  "shape (3, 3), the model's ") + r"dense\w*/kernel \(40, 16\)",
                        r.stderr.strip().splitlines()[-1]), r.stderr[-500:]


def test_keys_that_do_not_change_training_are_not_compared(unfinished):
    (target,) = resume.targets(unfinished, None, ["description=another text", "report.interpolation_points=7"])
    assert target.spec.description == ""  # the stored config is the one resumed
    with pytest.raises(resume.ResumeConflict, match=r"optimizer\.lr: stored 0\.05, given 0\.1"):
        resume.targets(unfinished, None, ["description=another text", "optimizer.lr=0.1"])


# ----------------------------------------------------------------------------- multi-worker
def test_only_the_chief_worker_probes_the_lock_of_a_multi_worker_resume(unfinished, monkeypatch):
    """The workers of a cluster start ``run --resume`` at the same moment, and only the chief takes the
    run's lock. A worker that probed the lock too could hold it just when the chief probed: the chief
    exited "being trained by another process" and the other worker waited for it in its first collective
    until killed (the slow suite's two-worker resume, twice). Here the lock is held while each worker
    starts up (``distribute.prepare`` stubbed: it would start a cluster)."""
    from tfminima import cli
    from tfminima.locks import RunLock

    multi_worker(unfinished, monkeypatch)
    args = cli.build_parser().parse_args(["run", "--resume", str(unfinished), "--quiet"])
    held = RunLock(unfinished).acquire()
    try:
        for index, refused in ((0, True), (1, False)):
            as_worker(index, monkeypatch)
            ready = cli._start_up(args)
            assert (ready == 2) is refused, (index, ready)
    finally:
        held.release()


def test_only_the_chief_worker_clears_a_run_for_restart(unfinished, monkeypatch):
    """``--restart`` under multi-worker: the chief discards the record (under the lock); the other
    workers leave it to the chief, and read the run only after it, in step with it."""
    from cli_support import main_here

    from tfminima import cli

    multi_worker(unfinished, monkeypatch)
    monkeypatch.setattr(cli, "_run", lambda *a: 0)  # training would start the cluster
    before = tree(unfinished)
    as_worker(1, monkeypatch)
    assert main_here("run", "--resume", unfinished, "--restart", "--quiet") == 0
    assert tree(unfinished) == before
    as_worker(0, monkeypatch)
    assert main_here("run", "--resume", unfinished, "--restart", "--quiet") == 0
    assert not (unfinished / "metrics.jsonl").exists() and not (unfinished / "checkpoints").exists()


def multi_worker(run: Path, monkeypatch) -> None:
    """Make ``run`` a multi-worker run, with ``distribute.prepare`` stubbed (it would start a cluster)."""
    from tfminima import distribute

    stored = run / "config.yaml"
    stored.write_text(stored.read_text().replace("strategy: auto", "strategy: multi_worker"))
    monkeypatch.setattr(distribute, "prepare", lambda dist: None)


def as_worker(index: int, monkeypatch) -> None:
    """This process as worker ``index`` of a two-worker cluster (TF_CONFIG)."""
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                                                "task": {"type": "worker", "index": index}}))
