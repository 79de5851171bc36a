"""Measurements of finished runs: Hessian at a checkpoint, interpolation between runs, the CLI."""

import json

import numpy as np
import pytest

from tfminima import analysis, config, hessian, runner, sweep
from tfminima.rundir import RunDir


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    spec = config.load_text(
        "name: pair\nepochs: 2\n"
        "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
        "model: {name: mlp, hidden: [16]}\noptimizer: {lr: 0.05, batch_size: 32}\n"
        "sweep: {zip: {label: [small, large], optimizer.batch_size: [32, 128]}}\n"
        "report: {figures: [interpolation], pairs: [[small, large]], interpolation_points: 7, "
        "interpolation_samples: 128}\n", "a.yaml")
    outcomes = runner.run_sweep(spec, out)
    assert [o.state for o in outcomes] == ["completed", "completed"]
    return out / "pair", outcomes


def test_sweep_interpolates_its_report_pairs(finished_sweep):
    group, outcomes = finished_sweep
    (path,) = (group / "analysis").glob("interpolation--small-*--large-*.json")
    res = json.loads(path.read_text())
    assert len(res["alphas"]) == 7 and res["alphas"][0] == -1.0 and res["alphas"][-1] == 2.0
    assert path.with_suffix(".png").exists()
    # α = 0 and α = 1 are the runs themselves: their validation loss as logged at the end
    i0, i1 = res["alphas"].index(0.0), res["alphas"].index(1.0)
    assert res["val_loss"][i0] == pytest.approx(outcomes[0].final["val_loss"], rel=1e-5)
    assert res["val_loss"][i1] == pytest.approx(outcomes[1].final["val_loss"], rel=1e-5)
    assert res["eta_over_s_a"] == pytest.approx(0.05 / 32) and res["eta_over_s_b"] == pytest.approx(0.05 / 128)


def test_hessian_report_matches_the_solver_on_the_loaded_model(finished_sweep):
    group, outcomes = finished_sweep
    run = outcomes[0].run_dir
    res = analysis.hessian_report(run.path, k=2, samples=128, trace_probes=20, tol=1e-8)
    assert res["epochs_done"] == 2 and (run.path / "analysis" / "hessian-epoch-2.json").exists()
    _, model, splits, _ = analysis.load_run(run.path)
    x, y = analysis._subset(splits, 128, 0)
    direct = hessian.top_eigenvalues(model, (x, y), 2, tol=1e-8)
    np.testing.assert_allclose(res["eigenvalues"], direct.eigenvalues, rtol=1e-5)
    assert (res["eigen_hvp_mode"], res["trace_hvp_mode"]) == ("retained", "retained")  # 128 examples fit
    # the reloaded model is the run's final model: its validation loss is the logged one
    from tfminima.landscape import evaluate

    loss, _ = evaluate(model, (splits.x_val, splits.y_val))
    assert loss == pytest.approx(outcomes[0].final["val_loss"], rel=1e-5)


def test_missing_checkpoint_is_a_clear_error(finished_sweep):
    group, outcomes = finished_sweep
    with pytest.raises(FileNotFoundError, match="no checkpoint after epoch 7"):
        analysis.load_run(outcomes[0].run_dir.path, epoch=7)


def test_cli_analyze(finished_sweep, cli_here):
    group, outcomes = finished_sweep
    run = outcomes[1].run_dir.path
    r = cli_here("analyze", run, "--k", "1", "--samples", "64", "--trace-probes", "10", "--density")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "top-1 eigenvalues" in r.stdout and (run / "analysis" / "density-epoch-2.png").exists()
    r = cli_here("analyze", run, "--checkpoint", "9")
    assert r.returncode == 2 and "no checkpoint after epoch 9" in r.stderr and "Traceback" not in r.stderr
    assert RunDir(run).status()["state"] == "completed"


def test_a_sweep_into_a_shared_group_does_the_same_end_of_sweep_work(tmp_path):
    """--group (and --only/--shard, which share a folder) interpolate the report's pairs as a plain run does: the
    process that ends the sweep's last run does it, and none before."""
    spec = config.load_text(
        "name: pair\nepochs: 1\n"
        "dataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64}\n"
        "model: {name: mlp, hidden: [16]}\noptimizer: {lr: 0.05, batch_size: 32}\n"
        "sweep: {zip: {label: [small, large], optimizer.batch_size: [32, 128]}}\n"
        "report: {figures: [interpolation], pairs: [[small, large]], interpolation_points: 5, "
        "interpolation_samples: 64}\n", "a.yaml")
    found = lambda group: sorted(p.name for p in (group / "analysis").glob("interpolation--*.json"))

    whole = tmp_path / "whole"
    assert [o.state for o in runner.run_sweep(spec, tmp_path, group=whole)] == ["completed", "completed"]
    assert len(found(whole)) == 1

    split = tmp_path / "split"
    small, large = [p.run_id for p in sweep.expand(spec)]
    runner.run_sweep(spec, tmp_path, group=split, only=[small])
    assert not (split / "analysis").exists()  # the other run has not ended: nothing to interpolate yet
    runner.run_sweep(spec, tmp_path, group=split, only=[large])
    assert found(split) == found(whole)


def test_the_interpolation_figure_writes_eta_over_s_as_everywhere_else(tmp_path, monkeypatch):
    """The one η/S format of the CLI, the TUI and the reports (5.00e-3, 3.12e-4), not 0.005 and 0.000313."""
    from tfminima.formats import eta_over_s

    titles = []
    monkeypatch.setattr(analysis, "atomic_savefig", lambda fig, path, **k: titles.append(fig._suptitle.get_text()))
    alphas = [-1.0, 0.0, 1.0, 2.0]
    analysis.plot_interpolation({"run_a": "a", "run_b": "b", "eta_over_s_a": 0.16 / 32, "eta_over_s_b": 0.01 / 32,
                                 "alphas": alphas, "train_loss": [2.0, 1.0, 1.5, 3.0],
                                 "train_accuracy": [0.2, 0.5, 0.4, 0.1]}, tmp_path / "i.png")
    (title,) = titles
    assert f"η/S={eta_over_s(0.16 / 32)}" in title and f"η/S={eta_over_s(0.01 / 32)}" in title, title
