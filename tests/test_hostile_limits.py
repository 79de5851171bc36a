"""Limits are checked at validation, before any work; names that become folders are single safe components;
the commands' path arguments get one line and the right exit status.

Every limit is read from :mod:`tfminima.limits` (never typed in here), and the expected messages name
the key, the value, the limit and the variable that raises it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tfminima import config, config_yaml, limits, paths, safe_io, schedules, sweep

# Text of any Unicode character but a lone surrogate: the alphabet of st.text()'s default (its codec
# utf-8), given without naming the codec, for which Hypothesis would first encode every code point
# (~2.5 CPU-s in each fresh checkout's test process).
UNICODE = st.characters(exclude_categories=("Cs",))

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tfminima.cli"]
BASE = ("name: lim\nepochs: 4\ndataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
        "model: {name: mlp, hidden: [8]}\noptimizer: {lr: 0.05, batch_size: 32}\n")
FUZZ = settings(max_examples=200, derandomize=True, database=None, deadline=None)


def problems(text: str, overrides=()) -> str:
    with pytest.raises(config.ConfigError) as err:
        config.load_text(text, "lim.yaml", list(overrides))
    return str(err.value)


def cli(*args, **kw):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=600, **kw)


# ----------------------------------------------------------------------------- limits at validation
@pytest.mark.parametrize("key, limit, what", [
    ("epochs", "epochs", "epochs"),
    ("dataset.train_size", "examples", "examples"),
    ("dataset.val_size", "examples", "examples"),
    ("dataset.test_size", "examples", "examples"),
    ("optimizer.batch_size", "batch_size", "examples in a batch"),
    ("eval_batch_size", "batch_size", "examples in an evaluation batch"),
    ("report.interpolation_samples", "examples", "samples"),
])
def test_each_limit_names_key_value_limit_and_variable(key, limit, what):
    over = int(limits.value(limit)) + 1
    message = problems(BASE, [f"{key}={over}"])
    assert f"--set: {key}: {over} {what} is over the limit of {int(limits.value(limit))}" in message
    assert limits.LIMITS[limit].variable in message


def test_limits_are_raised_by_their_variable_and_a_bad_variable_is_named(monkeypatch):
    over = int(limits.value("epochs")) + 1
    problems(BASE, [f"epochs={over}"])
    monkeypatch.setenv("TFMINIMA_MAX_EPOCHS", str(over))
    assert config.load_text(BASE, "lim.yaml", [f"epochs={over}"]).epochs == over
    for bad in ("many", "-3", "0", "1.5", "inf"):
        monkeypatch.setenv("TFMINIMA_MAX_EPOCHS", bad)
        assert f"TFMINIMA_MAX_EPOCHS: {bad!r} is not a positive integer" in problems(BASE)


def test_set_epochs_of_a_trillion_fails_validation_with_exit_2(tmp_path, cli_here):
    cfg = tmp_path / "lim.yaml"
    cfg.write_text(BASE)
    for command in (["validate", str(cfg)], ["run", str(cfg), "--out", str(tmp_path / "out")]):
        r = cli_here(*command, "--set", "epochs=1000000000000")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip() == (f"--set: epochs: 1000000000000 epochs is over the limit of "
                                    f"{int(limits.value('epochs'))} (set TFMINIMA_MAX_EPOCHS to raise it)")
    assert not (tmp_path / "out").exists()


def test_a_million_run_grid_is_refused_from_its_axes_without_expanding_it():
    axis = list(range(10))
    grid = {"seed": axis, "optimizer.momentum": [i / 20 for i in axis], "optimizer.weight_decay": axis,
            "dataset.label_noise": [i / 20 for i in axis], "eval_batch_size": [i + 1 for i in axis],
            "dataset.split_seed": axis}
    text = BASE + yaml.safe_dump({"sweep": {"grid": grid}})
    count = math.prod(len(v) for v in grid.values())
    assert count > limits.value("runs") and len(text) < 4096

    small = BASE + yaml.safe_dump({"sweep": {"grid": {"seed": list(range(100))}}})
    tracemalloc.start()
    config.load_text(small)
    per_100_runs = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    message = problems(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert f"the sweep expands to {count} runs (10 × 10 × 10 × 10 × 10 × 10), over the limit of " \
           f"{int(limits.value('runs'))} (set TFMINIMA_MAX_RUNS to raise it)" in message
    assert peak < per_100_runs  # refused with less memory than validating 100 runs takes, let alone 10⁶
    with pytest.raises(sweep.SweepError, match="over the limit"):
        sweep.expand_data(yaml.safe_load(text), defaults=config.ExperimentSpec().model_dump(mode="json"))


def test_a_config_over_the_size_limit_is_refused_before_yaml_reads_it(tmp_path, monkeypatch):
    limit = int(limits.value("config_bytes"))
    big = tmp_path / "big.yaml"
    with open(big, "w") as f:  # a 54 MB YAML list
        f.write("description: x\nmonitors:\n")
        line = "  - memorization\n"
        f.write(line * (54_000_000 // len(line)))
    calls = []
    monkeypatch.setattr(config_yaml.yaml, "load", lambda *a, **k: calls.append(a))
    message = problems_from_file(big)
    assert calls == []
    assert f"cannot read: it is {big.stat().st_size} bytes, over the limit of {limit} bytes for a config file " \
           f"(set TFMINIMA_MAX_CONFIG_BYTES to raise it)" in message


def problems_from_file(path: Path) -> str:
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    return str(err.value)


@pytest.mark.parametrize("special", ["fifo", "directory", "dev_zero", "loop", "nul"])
def test_a_config_path_that_is_no_file_is_refused_without_blocking(tmp_path, special):
    """(A NUL byte cannot come from a shell, but can be pasted into the TUI's path fields, which read and
    write through the same functions.)"""
    path = tmp_path / "c.yaml"
    if special == "nul":
        path = tmp_path / "c\0.yaml"
        with pytest.raises(OSError, match="NUL byte"):
            safe_io.write_text(path, "epochs: 1\n")
    elif special == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
    elif special == "directory":
        path.mkdir()
    elif special == "dev_zero":
        os.symlink("/dev/zero", path)  # endless: never read to its end
    else:
        os.symlink(path.name, path)
    expected = {"fifo": "not a regular file", "directory": "is a directory", "dev_zero": "not a regular file",
                "loop": "symbolic-link loop", "nul": "has a NUL byte in its name"}[special]
    assert expected in problems_from_file(path)


def test_datasets_of_fixed_size_refuse_more_examples_than_they_have():
    assert "train_size + val_size = 60001 is more than the 60000 examples mnist has" in problems(
        BASE.replace("mnist1d", "mnist"), ["dataset.train_size=55001", "dataset.val_size=5000"])
    assert "test_size 10001 is more than the 10000 test examples cifar10 has" in problems(
        BASE.replace("mnist1d", "cifar10"), ["dataset.test_size=10001"])
    assert "train_size + val_size + test_size = 1798 is more than the 1797 examples digits has" in problems(
        BASE.replace("mnist1d", "digits"), ["dataset.train_size=1198", "dataset.val_size=300", "dataset.test_size=300"])


def test_seeds_are_32_bit_unsigned():
    for key in ("seed", "dataset.split_seed", "dataset.noise_seed"):
        assert "greater than or equal to 0" in problems(BASE, [f"{key}=-1"])
        assert "less than or equal to 4294967295" in problems(BASE, [f"{key}=4294967296"])
    assert "less than or equal to 4294967295" in problems(BASE + "sweep: {seeds: [0, 4294967296]}\n")


# ----------------------------------------------------------------------------- schedules
schedule_specs = st.one_of(
    st.builds(dict, kind=st.just("step"), milestones=st.lists(st.integers(0, 40), max_size=5),
              factor=st.floats(0.01, 100)),
    st.builds(dict, kind=st.just("linear"), end_factor=st.floats(0.001, 1000), start_epoch=st.integers(0, 30),
              end_epoch=st.one_of(st.none(), st.integers(1, 40))),
    st.builds(dict, kind=st.just("exponential"), gamma=st.floats(0.2, 5)),
    st.builds(dict, kind=st.just("cyclic_triangular"), low=st.floats(0.01, 10), high=st.floats(0.01, 10),
              period=st.integers(2, 50), start=st.sampled_from(["low", "high"])),
    st.builds(dict, kind=st.just("cyclic_discrete"), low=st.floats(0.01, 10), high=st.floats(0.01, 10),
              stage=st.integers(1, 40), start=st.sampled_from(["low", "high"])),
    st.builds(dict, kind=st.just("table"), values=st.lists(st.floats(0.01, 100), min_size=1, max_size=30)),
    st.just({"kind": "constant"}),
)


@FUZZ
@given(schedule=schedule_specs, epochs=st.integers(1, 60))
def test_schedule_extremes_from_the_formula_equal_those_of_every_epoch(schedule, epochs):
    classes = {"constant": config.ConstantSchedule, "step": config.StepSchedule, "linear": config.LinearSchedule,
               "exponential": config.ExponentialSchedule, "cyclic_triangular": config.CyclicTriangularSchedule,
               "cyclic_discrete": config.CyclicDiscreteSchedule, "table": config.TableSchedule}
    sched = classes[schedule["kind"]](**schedule)
    values = [schedules.multiplier(sched, e, epochs) for e in range(epochs)]
    (lo, lo_at), (hi, hi_at) = schedules.multiplier_range(sched, epochs)
    for log_value, at, extreme in ((lo, lo_at, min(values)), (hi, hi_at, max(values))):
        assert math.isclose(log_value, math.log(extreme), rel_tol=1e-9, abs_tol=1e-12)
        # the first epoch at the extreme (values equal up to rounding count as equal)
        assert at == next(e for e, v in enumerate(values) if math.isclose(v, extreme, rel_tol=1e-12))


def test_schedules_that_overflow_are_refused_without_listing_the_epochs():
    epochs = int(limits.value("epochs"))
    message = problems(BASE, [f"epochs={epochs}", "lr_schedule={kind: exponential, gamma: 2}"])
    digits = round(((epochs - 1) * math.log(2) + math.log(0.05)) / math.log(10))
    assert (f"--set: lr_schedule: the learning rate reaches about 1e{digits} in epoch {epochs}, "
            f"{limits.beyond('lr')}") in message and "TFMINIMA_MAX_LR" in message
    low = problems(BASE, [f"epochs={epochs}", "lr_schedule={kind: exponential, gamma: 0.5}"])
    assert "the learning rate falls to" in low and "below float32's smallest normal number" in low
    # realised through the batch size, the same decay asks for an astronomical batch
    conv = problems(BASE, ["epochs=200", "lr_schedule={kind: exponential, gamma: 0.5}",
                           "schedule_conversion=lr_to_batch_size"])
    batch = 32 * 2.0**199  # S0 · peak / m(199): the batch that keeps η/S at the decayed value in the last epoch
    assert f"lr_schedule: the batch size reaches {batch:.4g} in epoch 200, {limits.beyond('batch_size')}" in conv
    ok = config.load_text(BASE, "s.yaml", ["epochs=200", "lr_schedule={kind: step, milestones: [100], factor: 0.1}"])
    assert ok.epochs == 200


def test_a_learning_rate_out_of_range_under_a_constant_schedule_is_pinned_on_optimizer_lr():
    """No schedule to blame: the error points at the value given (its --set, or its line in the file)."""
    assert problems(BASE, ["optimizer.lr=1e300"]).startswith(
        f"--set: optimizer.lr: the learning rate reaches 1e+300 in epoch 1, {limits.beyond('lr')}")
    assert problems(BASE.replace("lr: 0.05", "lr: 1.0e-40")).startswith(
        "lim.yaml:5: optimizer.lr: the learning rate falls to 1e-40 in epoch 1, below float32's smallest normal")


# ----------------------------------------------------------------------------- names
@FUZZ
@given(name=st.one_of(st.text(UNICODE, max_size=120), st.sampled_from(["..", ".", "a/b", "a\\b", "a\0b", "x" * 101, "ok-name"])))
def test_a_name_validates_only_as_one_safe_folder_name(name):
    problem = paths.component_problem(name)
    data = dict(yaml.safe_load(BASE), name=name)
    try:
        spec = config.validate_data(data, file="n.yaml")
    except config.ConfigError as err:
        assert str(err).startswith("n.yaml: name: ")  # refused (by the pattern, or as a folder name)
        return
    assert problem is None and spec.name == name and Path(name).name == name and len(name) <= 100


@pytest.mark.parametrize("label, why", [("..", "is not usable as a folder name"), ("a/b", "path separator"),
                                        ("a\\b", "path separator"), ("x\0y", "NUL"), ("t\tab", "control character"),
                                        ("x" * 101, "101 characters long")])
def test_sweep_labels_are_one_safe_folder_name(label, why):
    text = BASE + yaml.safe_dump({"sweep": {"zip": {"label": [label, "b"], "optimizer.lr": [0.1, 0.2]}}})
    message = problems(text)
    assert "sweep: the label" in message and why in message


def test_run_ids_longer_than_a_folder_name_are_refused_at_validation():
    long_value = "x" * 90
    text = BASE + yaml.safe_dump({"sweep": {"grid": {"description": [long_value, "short"]}}})
    message = problems(text)
    assert "sweep: the run id" in message and "over the limit of 100" in message and "label" in message


def test_name_dot_dot_with_shard_writes_nothing_outside_out(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(BASE.replace("name: lim", "name: .."))
    out = tmp_path / "inner" / "out"
    out.mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = cli("run", str(cfg), "--out", str(out), "--shard", "0/2", "--quiet")
    assert r.returncode == 2 and "name: '..' is not usable as a folder name" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_runner_refuses_a_run_folder_that_resolves_outside_its_group(tmp_path):
    from tfminima import runner

    spec = config.load_text(BASE, "exp.yaml")
    group = tmp_path / "out" / "shared"
    group.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (plan,) = sweep.expand(spec)
    os.symlink(elsewhere, group / plan.run_id)  # a planted link in a shared folder
    with pytest.raises(paths.PathError, match="outside"):
        runner.run_sweep(spec, tmp_path / "out", group=group)
    assert list(elsewhere.iterdir()) == []


# ----------------------------------------------------------------------------- path arguments
def test_path_arguments_get_one_line_and_the_right_status(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(BASE)
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    cases = [
        (["run", str(cfg), "--out", str(afile)], 2, f"--out {afile} is a file, not a directory"),
        (["run", str(cfg), "--out", str(afile / "runs")], 1, f"cannot write {afile / 'runs'}: {afile} is a file"),
        (["run", str(cfg), "--out", str(runs), "--group", str(tmp_path / "g")], 2, f"{tmp_path / 'g'} is outside {runs}"),
        (["run", str(cfg), "--group", str(afile)], 2, f"--group {afile} is a file, not a directory"),
        (["run", str(cfg), "--group", str(afile / "g")], 1, f"cannot write {afile / 'g'}: {afile} is a file"),
        (["run", str(tmp_path / "missing.yaml")], 2, f"{tmp_path / 'missing.yaml'}: cannot read: no such file"),
        (["validate", str(tmp_path / "missing.yaml")], 2, "cannot read: no such file"),
        (["run", "--resume", str(afile)], 2, f"--resume {afile} is a file, not a directory"),
        (["report", str(afile)], 2, f"RUNS_DIR {afile} is a file, not a directory"),
        (["report", str(tmp_path / "nowhere")], 2, f"RUNS_DIR {tmp_path / 'nowhere'}: no such directory"),
        (["report", str(runs), "--out", str(afile)], 2, f"--out {afile} is a file, not a directory"),
        (["report", str(runs), "--out", str(afile / "rep")], 1, f"cannot write {afile / 'rep'}: {afile} is a file"),
        (["analyze", str(afile)], 2, f"the run {afile} is a file, not a directory"),
        (["tb", str(afile)], 2, f"RUNS_DIR {afile} is a file, not a directory"),
        (["tb", str(afile / "runs"), "--launch"], 1, f"RUNS_DIR {afile / 'runs'} can never be a directory: {afile} is not"),
    ]
    from tfminima.cli import main
    from tui.app import main as tui_main

    for args, status, message in cases:  # in this process: an exception would fail the test with its traceback
        assert main(args) == status, (args, capsys.readouterr())
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert tui_main([str(afile)]) == 2
    assert capsys.readouterr().err.strip() == f"tfminima-tui: RUNS_DIR {afile} is a file, not a directory"
    assert tui_main([str(afile / "runs")]) == 1  # may be missing (runs will appear there), never below a file
    assert capsys.readouterr().err.strip() == (f"tfminima-tui: RUNS_DIR {afile / 'runs'} can never be a directory: "
                                               f"{afile} is not a directory")
    with pytest.raises(SystemExit) as done:  # TensorBoard said "cannot bind to port 99999 > 65535", exit 255
        main(["tb", str(runs), "--launch", "--port", "99999"])
    assert done.value.code == 2 and "argument --port: 99999 is more than 65535" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--k", "0"], "argument --k: 0 is less than 1"),
    (["--k", "x"], "argument --k: 'x' is not an integer"),
    (["--samples", "0"], "argument --samples: 0 is less than 1"),
    (["--samples", "99999999999"], "argument --samples: 99999999999 is over the limit of 1000000 (set TFMINIMA_MAX_EXAMPLES"),
    (["--trace-probes", "-1"], "argument --trace-probes: -1 is less than 1"),
    (["--points", "10000000000"], "argument --points: 10000000000 is more than 100000"),
    (["--checkpoint", "-1"], "argument --checkpoint: -1 is less than 0"),
])
def test_analyze_numbers_are_usage_errors_before_any_work(tmp_path, capsys, args, words):
    """Checked by the argument parser (they were checked after TensorFlow had started and the model was
    built, or not at all: --points 10¹⁰ would have evaluated that many points)."""
    from tfminima.cli import main

    with pytest.raises(SystemExit) as done:
        main(["analyze", str(tmp_path), *args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


def test_report_out_that_cannot_be_written_exits_1(tmp_path, cli_here):
    """In this process (cli_here): the command's message and status are what is tested."""
    from hostile_support import build_group

    runs = tmp_path / "runs"
    build_group(runs)
    locked = tmp_path / "locked"
    locked.mkdir()
    report = locked / "report"
    report.mkdir()
    (report / "REPORT.md").mkdir()  # the report's index cannot be written: a folder holds its name
    r = cli_here("report", runs, "--out", report)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"tfminima report: cannot write {report / 'REPORT.md'}" in r.stderr


def test_the_readme_lists_every_limit_with_its_default_and_variable():
    readme = (ROOT / "README.md").read_text()
    for limit in limits.LIMITS.values():
        assert f"| {limits._fmt(limit.default)} | `{limit.variable}` |" in readme, limit
