"""A config with every new instrument option: validated and run through the `tfminima` command, then read
back from metrics.jsonl, the TensorBoard event files, summary.json and the report's loader."""

import json
import math

import numpy as np
import pytest
from cli_support import main_here

from tfminima.rundir import RunDir, read_events

TRAIN_SIZE = 512
MOMENTUM = 0.5

CONFIG = f"""\
name: instruments
seed: 0
epochs: 2
dataset: {{name: mnist1d, train_size: {TRAIN_SIZE}, val_size: 64, test_size: 64}}
model: {{name: mlp, hidden: [16]}}
optimizer: {{lr: 0.05, batch_size: 32, momentum: {MOMENTUM}}}
lr_schedule: {{kind: table, values: [1.0, 0.5]}}
batch_size_schedule: {{kind: table, values: [1, 2]}}
monitors:
  - sharpness: {{every: 1, samples: 256, trace_probes: 4, frobenius: true, frobenius_probes: 4,
                batch_sharpness: true, batches: 3}}
  - noise: {{every: 2, samples: 128, trace_probes: 4}}
"""

SHARPNESS_FIELDS = ("stability", "frobenius_norm", "frobenius_stderr", "frobenius_hvps", "batch_sharpness",
                    "batch_sharpness_stderr", "batch_stability", "batch_sharpness_size", "batch_sharpness_hvps")
NOISE_FIELDS = ("b_simple", "b_simple_raw", "grad_norm_sq", "grad_norm_sq_raw", "trace_c", "trace_c_raw",
                "gradient_resolved", "predicted_loss", "predicted_loss_c", "loss_ratio_c", "train_loss",
                "train_loss_ratio", "train_loss_ratio_c", "population")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("instruments")
    cfg = root / "instruments.yaml"
    cfg.write_text(CONFIG)
    assert main_here("validate", cfg) == 0
    assert main_here("run", cfg, "--out", root / "runs", "--quiet") == 0
    (path,) = [p for p in (root / "runs" / "instruments").iterdir() if p.is_dir()]
    return RunDir(path)


def by_kind(run_dir, kind):
    return {e["epoch"]: e for e in read_events(run_dir.metrics_path) if e["kind"] == kind}


def test_every_new_field_is_in_metrics_jsonl_with_its_formula(run):
    schedule, sharp, noisy, train = (by_kind(run, k) for k in ("schedule", "sharpness", "noise", "train"))
    assert sorted(sharp) == [1, 2] and sorted(noisy) == [2]  # epochs completed
    for epoch, event in sharp.items():
        lr, bs = schedule[epoch]["lr"], schedule[epoch]["batch_size"]
        assert (lr, bs) == ((0.05, 32), (0.025, 64))[epoch - 1]
        assert schedule[epoch]["eta_over_s_finite"] == pytest.approx(lr / bs * (1 - bs / TRAIN_SIZE), rel=1e-12)
        assert set(SHARPNESS_FIELDS) <= set(event)
        edge = 2 * (1 + MOMENTUM) / lr
        assert event["stability"] == pytest.approx(event["lambda_max"] / edge, rel=1e-12)
        assert event["batch_sharpness_size"] == bs  # the epoch's S
        assert event["batch_stability"] == pytest.approx(event["batch_sharpness"] / edge, rel=1e-12)
        assert event["frobenius_norm"] >= event["lambda_max"] * (1 - 3 * event["frobenius_stderr"] / event["frobenius_norm"])
        assert event["hvps"] == event["eigen_hvps"] + event["trace_hvps"] + 4 + 3
    event = noisy[2]
    assert set(NOISE_FIELDS) <= set(event)
    assert event["population"] == TRAIN_SIZE and event["num_examples"] == 128
    assert event["b_simple_raw"] == pytest.approx(event["trace_c_raw"] / event["grad_norm_sq_raw"], rel=1e-12)
    if event["gradient_resolved"]:
        assert event["b_simple"] == pytest.approx(event["trace_c"] / event["grad_norm_sq"], rel=1e-12)
    else:  # inf in memory, null in JSON
        assert event["grad_norm_sq"] <= 0 and event["b_simple"] is None
    eta_eff = 0.025 / (1 - MOMENTUM)
    assert event["predicted_loss_c"] == pytest.approx(eta_eff / (4 * 64) * event["trace_c"], rel=1e-12)
    assert event["train_loss"] == pytest.approx(train[2]["loss"], rel=1e-12)  # the epoch's mean training loss
    assert event["train_loss_ratio"] == pytest.approx(event["train_loss"] / event["predicted_loss"], rel=1e-12)
    assert event["train_loss_ratio_c"] == pytest.approx(event["train_loss"] / event["predicted_loss_c"], rel=1e-12)
    assert event["loss"] != event["train_loss"]  # one end-point evaluation, the other a mean over steps


def test_tensorboard_and_summary_hold_the_same_values(run):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.tb_dir), size_guidance={"tensors": 0})
    acc.Reload()
    sharp, noisy, schedule = by_kind(run, "sharpness"), by_kind(run, "noise"), by_kind(run, "schedule")
    summary = json.loads(run.summary_path.read_text())
    expected = {f"sharpness/{k}": {e: sharp[e][k] for e in sharp} for k in SHARPNESS_FIELDS}
    expected.update({f"noise/{k}": {2: noisy[2][k]} for k in NOISE_FIELDS if noisy[2][k] is not None})
    expected["schedule/eta_over_s_finite"] = {e: schedule[e]["eta_over_s_finite"] for e in schedule}
    tags = set(acc.Tags()["tensors"])
    for tag, values in expected.items():
        assert tag in tags, tag
        logged = {e.step: tf.make_ndarray(e.tensor_proto).item() for e in acc.Tensors(tag)}
        assert set(logged) == set(values), tag
        for epoch, value in values.items():
            assert logged[epoch] == pytest.approx(value, rel=1e-6), (tag, epoch)
        if not tag.startswith("schedule/"):
            assert summary[tag] == pytest.approx(values[max(values)], rel=1e-12), tag


def test_the_report_reads_the_logged_stability(run):
    """The report's stability series is the logged one, and equals its own computation from λ_max and η."""
    from tfminima.report import loading, sharpness

    r = loading.load_run(run)
    logged = sharpness.stability_series(r)
    lam = r.series("sharpness", "lambda_max")
    assert len(logged) == 2
    for epoch, value, lam_value in zip(logged.epochs, logged.values, lam.values):
        assert value == pytest.approx(lam_value / sharpness.run_edge(r, epoch), rel=1e-9)
        assert math.isfinite(value) and np.isclose(value, r.series("sharpness", "stability").at(epoch))
