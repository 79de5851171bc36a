"""The hardened reader of run files (tfminima.runfiles), one kind of damage at a time, and the resume reader on top.

Each file is broken in one precise way and the reader must say which file and why, without an
exception of another kind, without blocking (a FIFO), and without reading past a limit.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from hostile_support import RUNS, build_group

from tfminima import config, limits, resume, rundir, runfiles, safe_io

RUN = sorted(RUNS)[0]
UNFINISHED = next(r for r, (_, _, state) in RUNS.items() if state == "failed")


@pytest.fixture
def group(tmp_path) -> Path:
    return build_group(tmp_path / "runs")


def corrupt_reason(reader, path: Path) -> str:
    with pytest.raises(runfiles.CorruptFile) as err:
        reader(path)
    return str(err.value)


# ----------------------------------------------------------------------------- status.json and summary.json
@pytest.mark.parametrize("text, reason", [
    (b"\xff\xfe{}", "status.json: is not UTF-8 text (byte 0"),
    (b"[1, 2]", "status.json: is a JSON list, not an object"),
    (b'"running"', "status.json: is a JSON str, not an object"),
    (b'{"state": "running"', "status.json: is not JSON (line 1 column 20"),
    (b'{"state": "exploded"}', "status.json: state: Input should be 'pending', 'running', 'completed'"),
    (b'{"state": 3}', "status.json: state: Input should be 'pending'"),
    (b'{"epochs_done": NaN}', "status.json: is not JSON as written by tfminima (NaN is not a JSON number)"),
    (b'{"epochs_done": 1e999}', "status.json: is not JSON as written by tfminima (the number 1e999 is out of range)"),
    (b'{"epochs_done": 1e308}', "status.json: epochs_done: Input should be a valid integer, got 1e+308"),
    (b'{"epochs_done": ' + b"9" * 5000 + b"}", "(an integer of 5000 digits)"),
    (b'{"epochs_done": ' + b"9" * 30 + b"}", "(an integer of 30 digits)"),
    (b'{"epochs": 100000000000}', "status.json: epochs: 100000000000 is over the limit of"),
    (b'{"pid": -1, "state": "running"}', "status.json: pid: Input should be greater than or equal to 1, got -1"),
    (b'{"pid": "123"}', "status.json: pid: Input should be a valid integer, got '123'"),
    (b'{"started": 1e300}', "status.json: started: Input should be less than or equal to"),
    (b'{"hparams": {"lr": -0.1}}', "status.json: hparams.lr: Input should be greater than 0, got -0.1"),
    (b'{"hparams": {"batch_size": 32.5}}', "status.json: hparams.batch_size: Input should be a valid integer"),
    (b'{"hparams": {"label": [1]}}', "status.json: hparams: label: a hyper-parameter is a number, text or true/false"),
    (b'{"hparams": []}', "status.json: hparams: Input should be a valid dictionary or instance of Hparams"),
    (b'{"error": {"a": 1}}', "status.json: error: Input should be a valid string"),
    (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "status.json: is nested too deeply"),
    (b'{"x": ' + b"[" * 70 + b"]" * 70 + b"}", f"status.json: is nested more than {limits.JSON_DEPTH} levels deep"),
])
def test_status_json_damage_names_the_file_and_why(group, text, reason):
    run = group / RUN
    (run / "status.json").write_bytes(text)
    assert reason in corrupt_reason(runfiles.read_status, run)
    assert rundir.RunDir(run).status() == {}  # the runner's lenient view: an unreadable status counts as none


def test_a_valid_status_is_returned_as_written(group):
    run = group / RUN
    assert runfiles.read_status(run) == json.loads((run / "status.json").read_text())
    (run / "summary.json").unlink()
    assert runfiles.read_summary(run) == {}  # no summary yet: the run has not ended
    (run / "status.json").unlink()
    assert runfiles.read_status(run) == {}
    assert "status.json: missing" in corrupt_reason(lambda p: runfiles.read_status(p, missing_ok=False), run)


@pytest.mark.parametrize("special, reason", [
    ("directory", "is a directory, not a file"),
    ("fifo", "is not a regular file"),
    ("dev_zero", "is not a regular file"),
    ("loop", "is a symbolic-link loop"),
    ("oversized", "over the limit of"),
])
@pytest.mark.parametrize("file", ["status.json", "summary.json", "config.yaml"])
def test_a_vital_file_that_is_no_file_is_named_without_blocking(group, file, special, reason):
    run = group / RUN
    path = run / file
    path.unlink()
    if special == "directory":
        path.mkdir()
    elif special == "fifo":
        os.mkfifo(path)  # open() without O_NONBLOCK would wait for a writer forever
    elif special == "dev_zero":
        os.symlink("/dev/zero", path)
    elif special == "loop":
        os.symlink(path.name, path)
    else:
        with open(path, "wb") as f:  # sparse: one byte over the limit, nothing written
            f.truncate(limits.value("config_bytes" if file == "config.yaml" else "run_file_bytes") + 1)
    reader = {"status.json": runfiles.read_status, "summary.json": runfiles.read_summary,
              "config.yaml": runfiles.read_config}[file]
    result: list = []
    worker = threading.Thread(target=lambda: result.append(corrupt_reason(reader, run)), daemon=True)
    worker.start()
    worker.join(timeout=60)  # generous: it returns at once; a blocked open would never return
    assert result and result[0].startswith(f"{file}: ") and reason in result[0]


def test_safe_io_never_reads_past_its_limit(tmp_path):
    path = tmp_path / "grows"
    path.write_bytes(b"x" * 100)
    assert safe_io.read_bytes(path, 100) == b"x" * 100
    with pytest.raises(safe_io.FileProblem, match="is 100 bytes, over the limit of 99 bytes"):
        safe_io.read_bytes(path, 99)


# ----------------------------------------------------------------------------- config.yaml
def test_config_yaml_damage_gives_its_first_problem_and_line(group):
    run = group / RUN
    good = (run / "config.yaml").read_text()
    assert runfiles.read_config(run).optimizer.lr == RUNS[RUN][0]
    line = good.splitlines().index("epochs: 3") + 1
    cases = [
        (good.replace("epochs: 3", "epochs: -3"), f"config.yaml: line {line}: epochs: Input should be greater than 0"),
        (good.replace("epochs: 3", "epochs: 1000000000000"), "epochs: 1000000000000 epochs is over the limit"),
        (good + "bogus: 1\n", "bogus: unknown key"),
        (good.replace("name: g", "name: .."), "name: '..' is not usable as a folder name"),
        ("", "config.yaml: is empty"),
        ("- a\n- b\n", "config.yaml: line 1: the top level must be a mapping of keys"),
        ("a: [\n", "config.yaml: line 2: YAML syntax error"),
        ("x: &a [*a]\n", "a YAML alias refers to a node that contains it"),
        # 100,000 levels in 200 kB: libyaml's composer would overflow the C stack (a segfault)
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "config.yaml: the document is nested too deeply"),
        ("a:\n  " + "- " * 100_000 + "1\n", "config.yaml: the document is nested too deeply"),
        (good + "sweep: {seeds: [0, 1]}\n", "config.yaml: holds a sweep: a run's config is one resolved run"),
    ]
    for text, reason in cases:
        (run / "config.yaml").write_text(text)
        assert reason in corrupt_reason(runfiles.read_config, run), text


# ----------------------------------------------------------------------------- metrics.jsonl
def test_metrics_lines_that_are_no_event_are_skipped_and_named(group):
    path = group / RUN / "metrics.jsonl"
    good = path.read_bytes().splitlines(keepends=True)
    bad = [b"\xff\xfe\n", b"[1, 2]\n", b'{"kind": "train", "epoch": NaN}\n', b'{"kind": "train", "epoch": 1e308}\n',
           b'{"kind": "train", "epoch": -1}\n', b'{"kind": "train", "epoch": "3"}\n', b'{"epoch": 1}\n',
           b'{"kind": "train", "epoch": ' + str(int(limits.value("epochs")) + 1).encode() + b"}\n",
           b'{"kind": ["train"]}\n', b'{"kind": "eval", "split": 3}\n', b"{" * 10 + b"\n"]
    lines = good[:2] + bad + good[2:]
    path.write_bytes(b"".join(lines) + b'{"kind": "tr')  # a torn last line: not an event yet, not a warning
    read = runfiles.read_events(path)
    assert read.events == [json.loads(x) for x in good]
    assert read.skipped_count == len(bad) and [s.line for s in read.skipped] == list(range(3, 3 + len(bad)))
    reasons = [s.reason for s in read.skipped]
    assert reasons[0].startswith("not UTF-8 text") and reasons[1] == "a JSON list, not an object"
    assert "NaN is not a JSON number" in reasons[2] and "1e+308 is not a whole number" in reasons[3]
    assert "over the limit" in reasons[7] and "kind None" in reasons[6]
    (warning,) = read.warnings()
    assert warning.startswith(f"{path}: {len(bad)} lines skipped (lines 3, 4, 5, 6, 7 and {len(bad) - 5} more); "
                              f"line 3: not UTF-8 text")
    assert list(rundir.read_events(path)) == read.events


def test_the_tail_bounds_long_lines_and_big_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TFMINIMA_MAX_LINE_BYTES", "1000")
    monkeypatch.setenv("TFMINIMA_MAX_METRICS_BYTES", "100000")
    path = tmp_path / "metrics.jsonl"
    event = json.dumps({"kind": "train", "epoch": 0, "loss": 1.0}).encode() + b"\n"
    tail = runfiles.MetricsTail(path)
    with open(path, "ab") as f:
        f.write(event + b'{"kind": "train", "x": "' + b"a" * 600)
        f.flush()
        assert tail.poll() == [json.loads(event)]
        f.write(b"a" * 600)  # the open line grows past the limit between two polls: dropped, not kept
        f.flush()
        assert tail.poll() == [] and len(tail._partial) == 0
        f.write(b'"}\n' + event)
    assert tail.poll() == [json.loads(event)]
    assert tail.skipped_count == 1 and tail.skipped[0].line == 2 and "line limit of 1000 bytes" in tail.skipped[0].reason
    with open(path, "ab") as f:
        f.write(event * (100_000 // len(event) + 10))
    events = tail.poll()
    assert tail.offset == 100_000 and len(events) < 100_000 // len(event)
    assert tail.problem.startswith(f"{path} is {path.stat().st_size} bytes; only the first 100000 were read")
    path.write_bytes(event)  # shrunk: a resume rewrote it
    assert tail.poll() == [json.loads(event)] and tail.reset and tail.problem is None


def test_metrics_that_are_no_file_are_a_problem_not_an_exception(tmp_path):
    path = tmp_path / "metrics.jsonl"
    os.mkfifo(path)
    read = runfiles.read_events(path)
    assert read.events == [] and read.warnings() == [f"{path} is not a regular file"]
    path.unlink()
    assert runfiles.read_events(path).warnings() == []  # missing: a run that has logged nothing yet


# ----------------------------------------------------------------------------- checkpoints and analyses
def test_checkpoint_pointer_and_state(group):
    ckpts = group / RUN / "checkpoints"
    assert runfiles.read_checkpoint_pointer(ckpts) == "epoch-2"
    state = runfiles.read_checkpoint_state(ckpts / "epoch-2")
    assert state["epochs_done"] == 2
    for text in ("../../../etc", "epoch-2\nepoch-3", "/abs/epoch-2", "epoch-x", "\x00", ""):
        (ckpts / "latest").write_text(text)
        reason = corrupt_reason(runfiles.read_checkpoint_pointer, ckpts)
        assert reason.startswith("checkpoints/latest: ") and "is not a checkpoint name" in reason
    (ckpts / "latest").unlink()
    assert runfiles.read_checkpoint_pointer(ckpts) is None
    for text, reason in ((b"{", "is not JSON"), (b'{"epochs_done": -1, "model_paths": [], "optimizer_paths": []}',
                                                 "epochs_done: Input should be greater than or equal to 0"),
                         (b'{"epochs_done": 1}', "model_paths: Field required")):
        (ckpts / "epoch-2" / "state.json").write_bytes(text)
        message = corrupt_reason(runfiles.read_checkpoint_state, ckpts / "epoch-2")
        assert message.startswith("checkpoints/epoch-2/state.json: ") and reason in message


def test_analysis_files_are_checked(group):
    path = group / RUN / "analysis" / "hessian-epoch-2.json"
    assert runfiles.read_analysis(path, "hessian")["eigenvalues"] == [9.0, 4.0]
    path.write_text(json.dumps({"eigenvalues": "abc"}))
    assert "analysis/hessian-epoch-2.json: eigenvalues: Input should be a valid list" in \
        corrupt_reason(lambda p: runfiles.read_analysis(p, "hessian"), path)
    inter = next((group / "analysis").glob("interpolation--*.json"))
    data = json.loads(inter.read_text())
    inter.write_text(json.dumps(dict(data, train_loss=data["train_loss"][:-1])))
    assert "train_loss has 6 values for 7 alphas" in corrupt_reason(lambda p: runfiles.read_analysis(p, "interpolation"), inter)


@pytest.mark.parametrize("pid", [-1, 0, True, "1", 2**63, 1.5, None])
def test_a_pid_that_is_no_process_id_is_not_alive(pid):
    assert not rundir.pid_alive(pid)  # -1 and 0 would address process groups, 2**63 overflow os.kill
    assert rundir.pid_alive(os.getpid())


# ----------------------------------------------------------------------------- the resume reader
def test_resume_targets_warn_of_what_the_resume_drops_and_refuse_a_bad_stored_config(group):
    run = group / UNFINISHED
    lines = (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(b"".join(lines[:3] + [b"\xff not json\n"] + lines[3:]))
    (run / "summary.json").write_bytes(b"[]")
    (target,) = resume.targets(run)
    assert target.warnings == [
        f"{run}: summary.json: is a JSON list, not an object; it is replaced at the run's end by the resume",
        f"{run / 'metrics.jsonl'}:4: skipped: not UTF-8 text (byte 0: b'\\xff'); the resume drops them",
    ]
    warnings = rundir.RunDir(run).truncate_events_after(10)
    kept = runfiles.marked(runfiles.in_epochs_completed([json.loads(x) for x in lines]))  # an old log: renumbered
    assert warnings and (run / "metrics.jsonl").read_bytes() == b"".join(json.dumps(e).encode() + b"\n" for e in kept)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("epochs: 3", "epochs: zero"))
    with pytest.raises(config.ConfigError, match=r"config.yaml:\d+: epochs: Input should be a valid integer"):
        resume.targets(run)


def test_cli_resume_skips_a_bad_metrics_line_with_a_warning_naming_it(tiny_yaml, tmp_path, cli_here):
    """The issue's case: a line that is not UTF-8 in metrics.jsonl; the resume names it, drops it and goes on."""
    from tfminima import runner

    out = tmp_path / "out"
    (outcome,) = runner.run_sweep(config.load(tiny_yaml()), out)
    assert outcome.state == "completed", outcome.error
    (run,) = [p.parent for p in out.rglob("status.json")]
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(dict(status, state="cancelled")))
    lines = (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(b"".join(lines[:2] + [b"\xff\xfe\n"] + lines[2:]))
    r = cli_here("run", "--resume", run, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"warning: {run / 'metrics.jsonl'}:3: skipped: not UTF-8 text" in r.stderr and "Traceback" not in r.stderr
    assert rundir.RunDir(run).status()["state"] == "completed"
    assert runfiles.read_events(run / "metrics.jsonl").skipped_count == 0
    shutil.rmtree(out)


def test_a_limit_variable_that_is_no_number_is_named_by_the_readers(group, monkeypatch):
    monkeypatch.setenv("TFMINIMA_MAX_RUN_FILE_BYTES", "lots")
    reason = corrupt_reason(runfiles.read_status, group / RUN)
    assert reason == ("status.json: TFMINIMA_MAX_RUN_FILE_BYTES: 'lots' is not a positive integer (it sets the limit "
                      f"on {limits.LIMITS['run_file_bytes'].what})")
    monkeypatch.setenv("TFMINIMA_MAX_LINE_BYTES", "-1")
    read = runfiles.read_events(group / RUN / "metrics.jsonl")
    assert read.events == [] and "TFMINIMA_MAX_LINE_BYTES: '-1' is not a positive integer" in read.problem


@pytest.mark.parametrize("damage, reason", [
    ("state", "checkpoints/epoch-2/state.json: is not JSON"),
    ("variables", "checkpoints/epoch-2/variables.npz: cannot be read (File is not a zip file)"),
    ("variables_fifo", "checkpoints/epoch-2/variables.npz: is not a regular file"),
    ("variables_compressed", "checkpoints/epoch-2/variables.npz: m0.npy is compressed, which tfminima never writes"),
    ("metrics_dir", "metrics.jsonl is a directory, not a file"),
    ("metrics_big", "only the first 64 were read (set TFMINIMA_MAX_METRICS_BYTES to read more)"),
    # what the resume writes, occupied by what it cannot write over (the status was written, and failed)
    ("status_dir", "status.json is a folder, which the resume cannot replace with the file"),
    ("summary_dir", "summary.json is a folder, which the resume cannot replace with the file"),
    ("tb_file", "tb is not a folder, and the resume writes TensorBoard's events into tb/"),
    ("tb_fifo", "tb is not a folder"),
])
def test_resume_refuses_what_it_cannot_continue_from_faithfully(group, monkeypatch, damage, reason):
    run = group / UNFINISHED
    ckpt = run / "checkpoints" / "epoch-2"
    if damage == "state":
        (ckpt / "state.json").write_text('{"epochs_done": 2')
    elif damage == "variables":
        (ckpt / "variables.npz").write_bytes((ckpt / "variables.npz").read_bytes()[:-5])  # truncated
    elif damage == "variables_compressed":  # the same arrays, deflated (a zip bomb loads the same way)
        import numpy as np

        with np.load(ckpt / "variables.npz") as z:
            arrays = {k: z[k] for k in z.files}
        np.savez_compressed(ckpt / "variables.npz", **arrays)
    elif damage == "variables_fifo":
        (ckpt / "variables.npz").unlink()
        os.mkfifo(ckpt / "variables.npz")
    elif damage == "metrics_dir":
        (run / "metrics.jsonl").unlink()
        (run / "metrics.jsonl").mkdir()
    elif damage in ("status_dir", "summary_dir"):
        name = damage.replace("_dir", ".json")
        (run / name).unlink(missing_ok=True)
        (run / name / "x").mkdir(parents=True)
    elif damage.startswith("tb_"):
        shutil.rmtree(run / "tb", ignore_errors=True)
        (run / "tb").write_text("x") if damage == "tb_file" else os.mkfifo(run / "tb")
    else:
        monkeypatch.setenv("TFMINIMA_MAX_METRICS_BYTES", "64")
    with pytest.raises(resume.ResumeRefused) as err:
        resume.targets(run)
    assert str(err.value).startswith(f"cannot continue {run} faithfully: ") and reason in str(err.value)
    if damage in ("status_dir", "summary_dir") or damage.startswith("tb_"):  # --restart clears the way
        assert resume.start_over(rundir.RunDir(run))
        assert resume.refusal(rundir.RunDir(run), config.load(run / "config.yaml")) is None


def test_a_log_that_is_no_file_shows_nothing_instead_of_hanging(tmp_path):
    from tui.launcher import log_tail

    log = tmp_path / "run.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 3) == "line 97\nline 98\nline 99"
    log.unlink()
    os.mkfifo(log)  # opening it for reading would wait for a writer forever
    assert log_tail(log, 3) == ""
    log.unlink()
    os.symlink("/dev/zero", log)  # endless
    assert log_tail(log, 3) == ""


@pytest.mark.parametrize("special", ["fifo", "dev_zero", "directory"])
def test_a_log_that_is_no_file_is_not_written_and_nothing_waits(tmp_path, special):
    """A run's log in a group folder someone else made may be a FIFO (opening it to append would wait for
    a reader forever), a device or a folder. The worker trains with its output sent to /dev/null, the
    launcher starts the worker with its start-up output there, and the real log is untouched; a regular
    log is appended to, never truncated."""
    import subprocess
    import sys

    from tfminima.worker import redirected
    from tui.launcher import WorkerProcess

    log = tmp_path / "run.log"
    log.write_text("before\n")
    with redirected(str(log)):
        os.write(1, b"into the log\n")
    assert log.read_text() == "before\ninto the log\n"
    log.unlink()
    {"fifo": lambda: os.mkfifo(log), "dev_zero": lambda: os.symlink("/dev/zero", log), "directory": log.mkdir}[special]()
    with redirected(str(log)):
        os.write(1, b"nowhere\n")
    with pytest.raises(OSError) as err:
        safe_io.open_for_writing(log, append=True)
    assert err.value.filename == str(log)
    worker = WorkerProcess([sys.executable, "-c", "import sys; sys.stderr.write('start-up'); print('up')"],
                           ("cpu", 1), log, {**os.environ}, str(tmp_path))
    assert worker.proc.wait(timeout=60) == 0 and worker.proc.stdout is not None
    assert special != "fifo" or subprocess.run(["test", "-p", str(log)]).returncode == 0  # still the FIFO


@pytest.mark.parametrize("special", ["fifo", "dev_null", "directory", "loop"])
def test_a_lock_file_that_is_no_file_refuses_the_run_with_its_name(tiny_yaml, tmp_path, cli_here, special):
    """``<run>/.lock`` left as a FIFO, a device or a folder: ``--resume`` says which file to remove, exit 2,
    no traceback (it was an io.UnsupportedOperation traceback); nothing waits on the FIFO."""
    from tfminima import runner, sweep
    from tfminima.locks import LOCK_NAME, RunBusy, RunLock

    spec = config.load(tiny_yaml())
    (run,) = runner.prepare_runs(spec, tmp_path / "g", sweep.expand(spec))
    lock = run.path / LOCK_NAME
    lock.unlink(missing_ok=True)
    {"fifo": lambda: os.mkfifo(lock), "dev_null": lambda: os.symlink(os.devnull, lock), "directory": lock.mkdir,
     "loop": lambda: os.symlink(lock.name, lock)}[special]()
    with pytest.raises(RunBusy, match=f"its {LOCK_NAME} .*remove it"):
        RunLock(run.path).acquire()
    r = cli_here("run", "--resume", run.path, "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"cannot lock {run.path}: its {LOCK_NAME}" in r.stderr, r.stderr
    assert run.status()["state"] == "pending"
