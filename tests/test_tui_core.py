"""The TUI's headless core: form model, run store, comparison, series. No Textual app runs here."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import main_here
from tui_support import build_edge_runs, build_runs

from tfminima import config, rundir, runfiles, schedules
from tui import comparison, edge
from tui import formspec as fs
from tui.formmodel import FormModel
from tui.series import Series, channels_of, downsample
from tui.store import RunStore

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_form_model_round_trips_every_experiment(path, tmp_path):
    model = FormModel.from_text(path.read_text(), str(path))
    out = tmp_path / path.name
    out.write_text(model.to_yaml())
    assert config.load(out) == config.load(path)


def test_schema_walk_covers_every_section_and_kind():
    secs = {s.id: s for s in fs.sections()}
    assert {"experiment", "dataset", "noise", "model", "optimizer", "schedules", "monitors",
            "distribution", "sweep"} <= set(secs)  # and any section the schema gains later
    fields = {f.key: f for f in fs.all_fields(list(secs.values()))}
    assert fields["dataset.name"].kind == "select" and "cifar10" in fields["dataset.name"].options
    assert fields["optimizer.nesterov"].kind == "switch"
    assert fields["optimizer.lr"].kind == "number" and fields["epochs"].kind == "integer"
    assert fields["model.hidden"].kind == "yaml" and fields["model.hidden"].member == "mlp"
    assert fields["lr_schedule.milestones"].member == "step" and fields["lr_schedule.milestones"].default is fs.MISSING
    assert fields["dataset.train_size"].optional
    assert {"monitors.sharpness", "monitors.sharpness.every", "sweep.lr", "sweep.batch_size", "sweep.ratio",
            "sweep.seeds", "dataset.label_noise"} <= set(fields)
    model = next(i for i in secs["model"].items if isinstance(i, fs.UnionDef))
    assert model.options == ("mlp", "cnn", "resnet", "vgg11") and model.default == "mlp"


def test_form_model_routes_problems_to_form_keys():
    m = FormModel({"optimizer": {"lr": 0.1}})
    keys = {f.key for f in fs.all_fields(fs.sections())}
    m.set("monitors.sharpness", True)
    m.set("monitors.sharpness.every", 0)
    m.set("model.hidden", [0])
    m.set("sweep.batch_size", [32, "x"])
    m.set("dataset.name", "mnits")
    spec, problems = m.validate()
    assert spec is None
    by_key, _ = m.route(problems, keys)
    assert "did you mean 'mnist'" in by_key["dataset.name"][0]
    assert set(by_key) >= {"monitors.sharpness.every", "model.hidden", "dataset.name"}
    assert m.data["sweep"] == {"grid": {"optimizer.batch_size": [32, "x"]}}


def test_form_model_union_switch_keeps_the_old_member():
    m = FormModel({"model": {"name": "mlp", "hidden": [8]}})
    union = next(i for s in fs.sections() for i in s.items if isinstance(i, fs.UnionDef) and i.key == "model")
    assert m.set_tag(union, "cnn") and m.data["model"] == {"name": "cnn"}
    m.set_tag(union, "mlp")
    assert m.data["model"] == {"name": "mlp", "hidden": [8]}
    # showing a default in a select is not an edit
    fd = fs.FieldDef("dataset.normalization", "normalization", "select", ("auto", "none"), "auto")
    assert not m.update(fd, "auto") and "dataset" not in m.data


def test_a_value_that_cannot_be_placed_is_a_problem_until_fixed():
    m = FormModel({"sweep": {"grid": {"optimizer.lr": [0.1, 0.2]}}})
    m.set("sweep.grid", [1, 2])
    spec, problems = m.validate()
    assert spec is None and problems[0].key == "sweep.grid" and "mapping" in problems[0].message
    assert m.data["sweep"]["grid"] == {"optimizer.lr": [0.1, 0.2]}  # the η axis is untouched
    m.set("sweep.grid", fs.MISSING)
    assert m.validate()[0] is not None


def test_parse_and_format_values():
    fd = fs.FieldDef("sweep.ratio", "r", "yaml")
    assert fs.parse_text(fd, "[1e-3, 2.5e-3]") == [0.001, 0.0025]
    assert fs.parse_text(fd, "  ") is fs.MISSING
    assert fs.format_value(fd, [100, 100]) == "[100, 100]"
    assert fs.parse_text(fs.FieldDef("name", "name", "text"), "1e-3") == "1e-3"
    for pasted in ("[" * 5000, "[" * 5000 + "]" * 5000, "2024-13-01"):  # unparseable, too deep, unbuildable
        assert fs.parse_text(fd, pasted) == pasted  # handed to the validator as text, no exception


def test_store_reads_fixture_runs(tmp_path):
    build_runs(tmp_path)
    store = RunStore(tmp_path)
    assert store.poll()
    rows = {r.run_id: r for r in store.rows() if r.group == "quickstart"}
    assert rows["lr0.01-bs32-s0"].state == "completed" and rows["lr0.01-bs32-s0"].epochs_done == 12
    assert rows["lr0.04-bs128-s0"].state == "running" and rows["lr0.04-bs128-s0"].epochs_done == 7
    assert rows["lr0.64-bs128-s0"].state == "crashed" and "left no final status" in rows["lr0.64-bs128-s0"].error
    assert rows["lr0.16-bs128-s0"].error.startswith("ValueError")
    assert rows["lr0.01-bs32-s0"].lambda_max is not None and rows["lr0.01-bs32-s0"].test_accuracy is not None
    record = store.get("quickstart/lr0.01-bs32-s0")
    assert len(record.series["train/loss"]) == 12 and len(record.series["sharpness/lambda_max"]) == 3
    assert not store.poll()  # nothing changed on disk


def test_store_tails_appends_and_rewrites(tmp_path):
    build_runs(tmp_path)
    store = RunStore(tmp_path)
    store.poll()
    record = store.get("memo/lr0.05-bs50-s0")
    n = len(record.series["train/loss"])
    lines = record.dir.metrics_path.read_text().splitlines(keepends=True)
    with open(record.dir.metrics_path, "a") as f:
        f.write(lines[1].replace('"epoch": 0', '"epoch": 10'))
        f.write(lines[1][:20])  # a torn line is not read yet
    assert store.poll() and len(record.series["train/loss"]) == n + 1
    record.dir.metrics_path.write_text("".join(lines[:4]))  # a resume rewrote the log
    store.poll()
    assert len(record.series["train/loss"]) == 1


def test_comparison_grid_marks_iso_ratio_diagonals(tmp_path):
    build_runs(tmp_path)
    store = RunStore(tmp_path)
    store.poll()
    rows = [r for r in store.rows() if r.group == "quickstart"]
    grid = comparison.heat_grid(rows, "val_accuracy")
    assert grid.sizes == [32, 128] and grid.etas == [0.01, 0.04, 0.16, 0.64]
    assert grid.size_pos == [0, 1] and grid.eta_pos == [0, 1, 2, 3]  # ×4 steps: log spacing
    # (η=0.01, S=32) and (η=0.04, S=128) share η/S
    assert grid.ratio_of[(0, 0)] == grid.ratio_of[(1, 1)] != grid.ratio_of[(0, 1)]
    csv = comparison.to_csv(rows).splitlines()
    assert csv[0].startswith("group,run_id,state,lr,batch_size") and len(csv) == 7
    assert comparison.log_positions([32, 50, 128, 200]) == [0, 1, 3, 4]


def test_series_and_downsample():
    s = Series(capacity=2)
    for i in range(1000):
        s.append(i, i * 0.5)
    assert len(s) == 1000 and s.last() == 499.5
    x, _ = downsample(s.x, s.y, 100)
    assert len(x) <= 100 and x[0] == 0 and x[-1] == 999
    assert channels_of({"kind": "eval", "split": "test", "epoch": 1, "accuracy": 0.5}) == [("test/accuracy", 0.5)]
    assert channels_of({"kind": "sharpness", "epoch": 1, "lambda_max": 3.0, "eigenvalues": [3.0]}) == [
        ("sharpness/lambda_max", 3.0)]
    assert np.isfinite(downsample(np.array([1.0, 2.0]), np.array([np.nan, 1.0]), 10)[1]).all()


def test_headless_core_imports_neither_textual_nor_tensorflow():
    code = ("import sys, tui.store, tui.launcher, tui.runview, tui.formspec, tui.comparison, tui.edge; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'textual'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_launcher_queues_limits_and_cancels(tmp_path):
    """Queue, worker limit and cancel with a stand-in for the interpreter (no training)."""
    import os
    import time

    from tui import runview
    from tui.launcher import Launcher

    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")  # a worker that never answers
    fake.chmod(0o755)
    launcher = Launcher(tmp_path / "runs", max_parallel=1, python=str(fake))
    spec = config.load_text("name: s\nsweep: {seeds: [0, 1, 2]}\n")
    jobs = launcher.launch(spec)
    try:
        assert [j.key for j in jobs] == ["s/lr0.1-bs128-s0", "s/lr0.1-bs128-s1", "s/lr0.1-bs128-s2"]
        assert (tmp_path / "runs" / "s" / "experiment.yaml").exists()
        # every run directory exists from the start, pending
        assert [rundir.RunDir(tmp_path / "runs" / j.key).status()["state"] for j in jobs] == ["pending"] * 3
        assert launcher.tick() and launcher.counts() == (1, 2) and len(launcher.workers) == 1
        worker = launcher.workers[0]
        assert os.getpgid(worker.pid) == worker.pid  # its own process group
        assert launcher.cancel(jobs[2].key).startswith("removed from the queue")
        assert rundir.RunDir(tmp_path / "runs" / jobs[2].key).status()["state"] == "cancelled"
        assert launcher.cancel(jobs[0].key) == f"worker {worker.pid} stops it at the next step"
        assert launcher.cancel(jobs[0].key) == f"SIGTERM sent to worker {worker.pid}"
        end = time.monotonic() + 10
        while jobs[0].state != "exited" and time.monotonic() < end:
            launcher.tick()
            time.sleep(0.05)
        # its worker died before it wrote any status: shown as cancelled (it was asked), not crashed
        assert launcher.state_override(jobs[0].key, {}, "pending") == "cancelled"
        assert jobs[1].state == "started" and jobs[2].state == "dropped" and launcher.workers[0] is not worker
        store = RunStore(tmp_path / "runs")
        store.poll()
        rows = {r.key: r.state for r in runview.rows(store, launcher)}
        assert rows == {jobs[0].key: "cancelled", jobs[1].key: "starting", jobs[2].key: "cancelled"}
        assert launcher.cancel_all() == 1
    finally:
        for w in launcher.workers:
            if w.proc.poll() is None:
                w.proc.kill()


def test_store_and_launcher_do_not_know_each_other():
    """The app owns the poll loop and combines the two (tui.runview): neither imports the other."""
    code = ("import sys, importlib; m = importlib.import_module(sys.argv[1]); "
            "print(sorted(n for n in sys.modules if n in ('tui.store', 'tui.launcher', 'tui.runview')))")
    for module, other in (("tui.store", "tui.launcher"), ("tui.launcher", "tui.store")):
        out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str([module]), (module, other, out.stdout)


# ----------------------------------------------------------------------------- edge of stability, η/S·(1−S/N)
REAL_EDGE = """\
name: edge
seed: 0
epochs: 4
dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}
model: {name: mlp, hidden: [16]}
optimizer: {lr: 0.1, batch_size: 32, momentum: 0.9}
monitors: [{sharpness: {every: 1, samples: 128, trace_probes: 2}}]
sweep:
  zip:
    label: [const, step]
    lr_schedule: [{kind: constant}, {kind: step, milestones: [2], factor: 0.25}]
"""


@pytest.fixture(scope="module")
def real_edge_runs(tmp_path_factory):
    """Two short real runs (``tfminima run``, in this process) with momentum 0.9: a constant η and a step schedule."""
    root = tmp_path_factory.mktemp("edge")
    (root / "edge.yaml").write_text(REAL_EDGE)
    assert main_here("run", root / "edge.yaml", "--out", root / "runs", "--quiet") == 0
    store = RunStore(root / "runs")
    store.poll()
    return store


def arrays(record) -> dict:
    return {ch: (s.x, s.y) for ch, s in record.series.items()}


def test_edge_line_is_two_one_plus_beta_over_the_epochs_eta(real_edge_runs):
    """Per logged epoch 2(1+β)/η with the schedule's η (constant, then a step), the same edge the
    sharpness monitor divided λ_max by (its logged ``stability``); hparams' η without schedule events."""
    store = real_edge_runs
    edges = {}
    for label in ("const", "step"):
        record = store.get(f"edge/{label}-lr0.1-bs32-s0")
        spec = runfiles.read_config(record.dir.path)
        beta = spec.optimizer.momentum
        settings = schedules.plan(spec)
        opt = record.optimizer
        assert (opt["lr"], opt["momentum"], opt["nesterov"], opt["svag"]) == (spec.optimizer.lr, beta, False, 1)
        x, y = edge.edge_series(arrays(record), opt["lr"], opt["momentum"])
        assert x.tolist() == [s.epoch + 1 for s in settings]  # epochs completed
        assert y == pytest.approx([2 * (1 + beta) / s.lr for s in settings], rel=1e-12)
        lam_x, lam = arrays(record)["sharpness/lambda_max"]
        stability = arrays(record)["sharpness/stability"][1]
        assert lam / y[np.searchsorted(x, lam_x)] == pytest.approx(stability, rel=1e-12)
        edges[label] = y
        without_schedule = {ch: v for ch, v in arrays(record).items() if not ch.startswith("schedule/")}
        fx, fy = edge.edge_series(without_schedule, opt["lr"], opt["momentum"])
        assert fx.tolist() == x.tolist() and fy == pytest.approx([2 * (1 + beta) / spec.optimizer.lr] * len(x))
    assert len(set(edges["const"])) == 1 and len(set(edges["step"])) == 2  # η drops to a quarter after epoch 2
    assert edges["step"][-1] == pytest.approx(4 * edges["const"][-1], rel=1e-12)


def test_finite_noise_scale_and_stability_reach_rows_and_csv(real_edge_runs):
    """η/S·(1−S/N) per epoch is the schedule's (schedules.eta_over_s_finite), the row carries the last
    epoch's, and the comparison CSV reads back the row's η/S·(1−S/N) and stability."""
    store = real_edge_runs
    rows = {r.key: r for r in store.rows()}
    for key, row in rows.items():
        record = store.get(key)
        spec = runfiles.read_config(record.dir.path)
        expected = [schedules.eta_over_s_finite(s.lr, s.batch_size, spec.dataset.train_size)
                    for s in schedules.plan(spec)]
        x, y = arrays(record)["schedule/eta_over_s_finite"]
        assert x.tolist() == list(range(1, spec.epochs + 1)) and y == pytest.approx(expected, rel=1e-12)
        assert row.eta_over_s_finite == pytest.approx(expected[-1], rel=1e-12)
        assert row.stability == record.summary["sharpness/stability"] == arrays(record)["sharpness/stability"][1][-1]
    assert rows["edge/step-lr0.1-bs32-s0"].eta_over_s_finite == pytest.approx(
        rows["edge/const-lr0.1-bs32-s0"].eta_over_s_finite / 4, rel=1e-12)
    lines = {line["run_id"]: line for line in csv.DictReader(io.StringIO(comparison.to_csv(list(rows.values()))))}
    for row in rows.values():
        assert float(lines[row.run_id]["eta_over_s_finite"]) == row.eta_over_s_finite
        assert float(lines[row.run_id]["stability"]) == row.stability


def test_edge_parts_leave_out_edges_far_above_the_curves(tmp_path):
    """The step schedule's edge quadruples after epoch 4: beyond reach of λ_max it is left out (a gap, no
    line to the far part), the constant run's edge is drawn over every epoch; a run written before
    ``eta_over_s_finite`` and ``stability`` existed loads with those fields None (CSV: empty)."""
    store = RunStore(build_edge_runs(tmp_path))
    store.poll()
    records = {label: store.get(f"edge/{label}-lr0.5-bs64-s0") for label in ("const", "step")}
    top = max(float(r.series["sharpness/lambda_max"].y.max()) for r in records.values())
    series = {label: edge.edge_series(arrays(r), r.optimizer["lr"], r.optimizer["momentum"])
              for label, r in records.items()}
    x, y = series["step"]
    sx, sy = edge.steps(x, y)
    jump = int(np.nonzero(np.diff(y))[0][0])
    assert [(a, b) for a, b in zip(sx, sy) if a == x[jump]] == [(x[jump], y[jump]), (x[jump], y[jump + 1])]
    assert len(sx) == len(x) + 1  # one change of value, one extra point
    assert y[jump] <= edge.EDGE_REACH * top < y[jump + 1]  # the fixture straddles the reach
    (part,) = edge.drawn_parts(x, y, top)
    assert part[0].tolist() == x[: jump + 1].tolist() and part[1].tolist() == y[: jump + 1].tolist()
    (whole,) = edge.drawn_parts(*series["const"], top)
    assert whole[0].tolist() == series["const"][0].tolist()
    assert edge.drawn_parts(x, y, top / 10) == [] and edge.drawn_parts(x, y, 0.0) == []

    old = next(r for r in store.rows() if r.group == "old")
    assert old.eta_over_s_finite is None and old.stability is None and old.lambda_max is not None
    line = next(csv.DictReader(io.StringIO(comparison.to_csv([old]))))
    assert line["eta_over_s_finite"] == line["stability"] == ""
