"""E2's interpolation pairs over seeds: each pair of conditions gets its rises (and λ_max with the stability at
both ends, where measured) as means over seeds, and A − B tested paired over the seeds.

Hand-built run directories and interpolation files with known numbers (no training); every expected value is
computed here from the constructed inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_support import config_yaml, epoch_events, make_run

from tfminima.report import build, loading, numbers, stats
from tfminima.report.markdown import difference

ALPHAS = np.linspace(-1.0, 2.0, 13)
SEEDS = (0, 1, 2)
CURV = {0: 4.0, 1: 5.0, 2: 3.0}  # B's curvature per seed; A's is 1: B is steeper in every seed
LAM = {"base": 4.0, "large-batch": 9.0}  # λ_max where each run stopped (plus the seed)
RUNS = {"base": (0.1, 32), "large-batch": (0.1, 256)}


def loss(a, curv_b):
    return np.minimum(0.2 + (a - 0) ** 2, 0.2 + curv_b * (a - 1) ** 2)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    group = tmp_path_factory.mktemp("interp") / "e2"
    for seed in SEEDS:
        ids = {}
        for label, (lr, bs) in RUNS.items():
            rid = ids[label] = f"{label}-lr{lr:g}-bs{bs}-s{seed}"
            events = epoch_events(rid, train_loss=[0.5], train_acc=[0.8], val_loss=[1.0], val_acc=[0.6], lr=[lr],
                                  batch_size=[bs])
            events.append({"run_id": rid, "epoch": 0, "step": 10, "time": 2000.0, "kind": "sharpness",
                           "lambda_max": LAM[label] + seed})
            make_run(group, rid, config_yaml("e2_interpolation_cpu", lr=lr, batch_size=bs, seed=seed,
                                             figures=["interpolation"], pairs=[["base", "large-batch"]]),
                     label=label, summary={"val_accuracy": 0.6, "sharpness/lambda_max": LAM[label] + seed},
                     events=events)
        res = {"run_a": ids["base"], "run_b": ids["large-batch"], "eta_over_s_a": 0.1 / 32, "eta_over_s_b": 0.1 / 256,
               "alphas": ALPHAS.tolist(), "train_loss": loss(ALPHAS, CURV[seed]).tolist(),
               "train_accuracy": [0.5] * len(ALPHAS), "val_loss": (loss(ALPHAS, CURV[seed]) + 0.5).tolist(),
               "val_accuracy": [0.5] * len(ALPHAS)}
        (group / "analysis").mkdir(exist_ok=True)
        (group / "analysis" / f"interpolation--{res['run_a']}--{res['run_b']}.json").write_text(json.dumps(res))
    (g,) = loading.load_groups(group)
    build.report_group(g, group.parent / "out")
    return [json.loads(p.read_text()) for p in sorted((group / "analysis").glob("*.json"))], \
        (group.parent / "out" / "report.md").read_text()


def test_each_pair_of_conditions_is_tested_paired_over_its_seeds(report):
    results, text = report
    section = text.split("The pairs over seeds")[1].split("\n### ")[0]
    rises = {r["run_a"].rsplit("-s", 1)[1]: numbers.interpolation_rise(r, "train") for r in results}
    row = next(line for line in section.splitlines() if line.startswith("| `base` → `large-batch` |"))
    assert "| 3 of 3 |" in row  # B (the larger batch, lower η/S) steeper in every seed
    a = stats.mean_ci([r.rise_a for r in rises.values()])
    assert f"| {a.mean:.4g} [{a.lo:.4g}, {a.hi:.4g}] |" in row
    diff = stats.compare_means({k: r.rise_a for k, r in rises.items()}, {k: r.rise_b for k, r in rises.items()})
    assert diff.paired and diff.n_a == 3 and f"| {difference(diff, 'train_rise')} |" in section
    lam = stats.compare_means({s: LAM["base"] + s for s in SEEDS}, {s: LAM["large-batch"] + s for s in SEEDS})
    assert lam.diff == pytest.approx(LAM["base"] - LAM["large-batch"]) and f"| {difference(lam, 'lambda_max')} |" in section
    # The stability at each end: λ_max · η / 2 with the run's η.
    stab_b = stats.mean_ci([(LAM["large-batch"] + s) * 0.1 / 2 for s in SEEDS])
    assert f"| {stab_b.mean:.3g} [{stab_b.lo:.3g}, {stab_b.hi:.3g}] |" in row
