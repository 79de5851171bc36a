"""Sweep expansion: grid, zip, ratio (both derivations), seeds, ids, shards."""

import subprocess
import sys

import pytest

from tfminima import config
from tfminima.sweep import SweepError, expand, expand_data, select_shard


def spec(text):
    return config.load_text(text, "s.yaml")


def test_grid_is_cartesian_in_order():
    runs = expand(spec("sweep: {grid: {optimizer.lr: [0.1, 0.2], optimizer.batch_size: [32, 64, 128]}}\n"))
    assert [(r.lr, r.batch_size) for r in runs] == [
        (0.1, 32), (0.1, 64), (0.1, 128), (0.2, 32), (0.2, 64), (0.2, 128)
    ]
    assert runs[0].run_id == "lr0.1-bs32-s0"


def test_zip_pairs_axes_and_crosses_with_grid_and_seeds():
    runs = expand(spec(
        "sweep:\n  zip: {optimizer.lr: [0.1, 0.4], optimizer.batch_size: [32, 128]}\n"
        "  grid: {optimizer.momentum: [0.0, 0.9]}\n  seeds: [0, 1]\n"
    ))
    assert len(runs) == 8
    assert {(r.lr, r.batch_size) for r in runs} == {(0.1, 32), (0.4, 128)}
    assert {r.spec.seed for r in runs} == {0, 1}
    assert "lr0.1-bs32-m0.9-s1" in {r.run_id for r in runs}
    assert len({r.run_id for r in runs}) == 8


def test_ratio_derives_the_learning_rate_from_the_batch_size():
    runs = expand(spec("sweep: {ratio: [0.0005, 0.002], grid: {optimizer.batch_size: [32, 64]}}\n"))
    got = {(r.batch_size, r.lr) for r in runs}
    assert got == {(32, 0.016), (64, 0.032), (32, 0.064), (64, 0.128)}
    for r in runs:
        assert r.eta_over_s == pytest.approx(r.varied["ratio"], rel=1e-12)


def test_ratio_derives_the_batch_size_from_the_learning_rate():
    runs = expand(spec(
        "dataset: {train_size: 4000}\n"
        "sweep: {ratio: [0.001, 0.0005], derive: batch_size, grid: {optimizer.lr: [0.064, 0.128]}}\n"
    ))
    assert {(r.lr, r.batch_size) for r in runs} == {(0.064, 64), (0.064, 128), (0.128, 128), (0.128, 256)}
    with pytest.raises(SweepError, match="not an integer"):
        expand_data({"optimizer": {"lr": 0.1}, "sweep": {"ratio": [0.003], "derive": "batch_size"}},
                    defaults=config.ExperimentSpec().model_dump(mode="json"))


def test_runs_record_noise_scales_with_momentum():
    (run,) = expand(spec("optimizer: {lr: 0.1, batch_size: 100, momentum: 0.9}\n"))
    hp = run.hparams()
    assert hp["eta_over_s"] == pytest.approx(1e-3)
    assert hp["eta_over_s_momentum"] == pytest.approx(1e-2)
    assert (hp["lr"], hp["batch_size"], hp["momentum"]) == (0.1, 100, 0.9)


def test_no_sweep_is_one_run_and_ids_are_unique():
    (run,) = expand(spec("name: x\n"))
    assert run.run_id == "lr0.1-bs128-s0"
    runs = expand(spec("sweep: {grid: {model.hidden: [[8], [8, 8]]}}\n"))
    assert [r.run_id for r in runs] == ["lr0.1-bs128-hidden8-s0", "lr0.1-bs128-hidden8x8-s0"]


def test_shards_are_disjoint_and_cover_the_sweep():
    runs = expand(spec("sweep: {grid: {optimizer.lr: [0.1, 0.2, 0.3]}, seeds: [0, 1, 2]}\n"))
    shards = [select_shard(runs, i, 4) for i in range(4)]
    ids = [r.run_id for s in shards for r in s]
    assert sorted(ids) == sorted(r.run_id for r in runs) and len(ids) == len(set(ids))
    assert [r.run_id for r in select_shard(runs, 1, 4)] == [r.run_id for r in select_shard(runs, 1, 4)]
    with pytest.raises(SweepError):
        select_shard(runs, 4, 4)


def test_labels_name_runs_that_vary_whole_sections():
    runs = expand(spec(
        "epochs: 4\ndataset: {train_size: 2000}\n"
        "sweep:\n  zip:\n    label: [cyclic-lr, cyclic-bs]\n"
        "    schedule_conversion: [none, lr_to_batch_size]\n"
        "    lr_schedule: [{kind: cyclic_discrete, low: 0.2, high: 1, stage: 2},"
        " {kind: cyclic_discrete, low: 0.2, high: 1, stage: 2}]\n"
    ))
    assert [r.run_id for r in runs] == ["cyclic-lr-lr0.1-bs128-conversionnone-s0",
                                        "cyclic-bs-lr0.1-bs128-conversionlr_to_batch_size-s0"]
    assert runs[1].spec.schedule_conversion == "lr_to_batch_size"
    assert runs[0].hparams()["label"] == "cyclic-lr" and "lr_schedule" not in runs[0].hparams()


def test_raw_data_takes_what_it_leaves_out_from_the_schema_defaults():
    defaults = config.ExperimentSpec().model_dump(mode="json")
    base = config.ExperimentSpec().optimizer
    (run,) = expand_data({"sweep": {"ratio": [0.001]}}, defaults=defaults)
    assert run.data["optimizer"]["lr"] == pytest.approx(0.001 * base.batch_size)
    assert run.run_id == expand(spec("sweep: {ratio: [0.001]}\n"))[0].run_id
    # a grid value replacing the whole optimizer section: the defaults still fill the id
    (run,) = expand_data({"sweep": {"grid": {"optimizer": [{"momentum": 0.9}]}}}, defaults=defaults)
    assert run.run_id.startswith(f"lr{base.lr:g}-bs{base.batch_size}-")


def test_sweep_never_imports_the_schema():
    code = ("import sys; from tfminima.sweep import expand_data; "
            "expand_data({'sweep': {'seeds': [0, 1]}, 'optimizer': {'lr': 0.1, 'batch_size': 8}, 'seed': 0},"
            " defaults={}); print('tfminima.config' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
