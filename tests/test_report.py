"""``tfminima report`` on hand-built run directories: figures exist, the markdown states the right numbers.

One runs directory with a group per figure kind is reported once (module fixture); every expected
number is computed here from the constructed inputs, never typed in.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from report_support import config_yaml, epoch_events, make_run, monitor_events, png_size

from tfminima.report import (
    build,
    loading,
    markdown_sharpness,
    numbers,
    paper,
    sharpness,
)
from tfminima.report.markdown import pct
from tfminima.formats import eta_over_s

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4


def _curves(run_id: str, val_acc, *, lr: float, bs: int, train_loss=None, batch_sizes=None, lrs=None, **kw):
    """Per-epoch events with the given validation accuracies (other curves simple and finite)."""
    n = len(val_acc)
    train_loss = list(train_loss) if train_loss is not None else [2.0 - 0.3 * i for i in range(n)]
    return epoch_events(run_id, train_loss=train_loss, train_acc=[0.2 + 0.1 * i for i in range(n)],
                        val_loss=[2.1 - 0.3 * i for i in range(n)], val_acc=list(val_acc),
                        lr=lrs or [lr] * n, batch_size=batch_sizes or [bs] * n, **kw)


# ------------------------------------------------------------------------------- the groups
RATIO_GRID = [(0.01, 32), (0.02, 32), (0.01, 64), (0.02, 64)]


def ratio_val(lr, bs):
    return 0.5 + 100 * lr / bs  # rises with η/S: Spearman +1


def ratio_sharpness(lr, bs):
    return bs / lr / 1000  # falls with η/S: Spearman −1


def build_ratio_group(group: Path) -> None:
    """E1-like grid with an iso-ratio pair, one diverged and one failed run."""
    figs = ["eta_over_s", "heatmap", "curves"]
    for lr, bs in RATIO_GRID:
        rid = f"lr{lr:g}-bs{bs}-s0"
        val = ratio_val(lr, bs)
        summary = {"val_accuracy": val, "test_accuracy": val - 0.01, "accuracy": val + 0.05,
                   "sharpness/lambda_max": ratio_sharpness(lr, bs), "sharpness/trace": 10 * ratio_sharpness(lr, bs)}
        events = _curves(rid, [val - 0.1 * (EPOCHS - 1 - i) for i in range(EPOCHS)], lr=lr, bs=bs)
        make_run(group, rid, config_yaml("e1_ratio_sharpness_cpu", lr=lr, batch_size=bs, figures=figs),
                 summary=summary, events=events)
    make_run(group, "lr0.64-bs16-s0", config_yaml("e1_ratio_sharpness_cpu", lr=0.64, batch_size=16, figures=figs),
             state="diverged", summary={"val_accuracy": 0.1, "sharpness/lambda_max": 1e4},
             events=_curves("lr0.64-bs16-s0", [0.1, 0.1], lr=0.64, bs=16, train_loss=[2.0, 1e6]),
             error="training loss 1e+06 at epoch 1 exceeds 100x the first loss")
    make_run(group, "lr0.005-bs128-s0", config_yaml("e1_ratio_sharpness_cpu", lr=0.005, batch_size=128, figures=figs),
             state="failed", error="ValueError: boom")


PAIR_A = {"val": [0.30, 0.40, 0.50, 0.60], "loss": [2.0, 1.5, 1.2, 1.0], "test": 0.85}
PAIR_B = {"val": [0.31, 0.37, 0.52, 0.60], "loss": [2.0, 1.6, 1.15, 0.95], "test": 0.8525}


def build_pairs_group(group: Path) -> None:
    """E3-like: const-lr against const-bs (equal η/S), and a pair naming a run that does not exist."""
    pairs = [["const-lr", "const-bs"], ["const-lr", "missing"]]
    for label, lr, bs, d in (("const-lr", 0.032, 32, PAIR_A), ("const-bs", 0.16, 160, PAIR_B)):
        rid = f"{label}-lr{lr:g}-bs{bs}-conversionnone-s0"
        make_run(group, rid, config_yaml("e3_schedules_cpu", lr=lr, batch_size=bs, figures=["paired_curves"], pairs=pairs),
                 label=label, summary={"val_accuracy": d["val"][-1], "test_accuracy": d["test"]},
                 events=_curves(rid, d["val"], lr=lr, bs=bs, train_loss=d["loss"]))


MEMO = {  # run id: (noise, lr, S, val per epoch, memorisation per epoch)
    "lr0.2-bs32-noise0.25-m0-s0": (0.25, 0.2, 32, [0.5, 0.7, 0.65, 0.6], [0.1, 0.2, 0.5, 0.8]),
    "lr0.05-bs512-noise0.25-m0-s0": (0.25, 0.05, 512, [0.4, 0.5, 0.55, 0.52], [0.05, 0.1, 0.15, 0.3]),
    "lr0.2-bs128-noise0.5-m0-s0": (0.5, 0.2, 128, [0.3, 0.45, 0.4, 0.35], [0.1, 0.3, 0.6, 0.9]),
}


def build_memo_group(group: Path) -> None:
    for rid, (noise, lr, bs, val, mem) in MEMO.items():
        events = _curves(rid, val, lr=lr, bs=bs) + monitor_events(
            rid, "memorization", {i: {"noisy_accuracy": m, "train_accuracy": 0.5, "noisy_fraction": noise}
                                  for i, m in enumerate(mem)})
        make_run(group, rid, config_yaml("e4_memorization_cpu", lr=lr, batch_size=bs, label_noise=noise,
                                         figures=["memorization"]),
                 summary={"val_accuracy": val[-1], "memorization/noisy_accuracy": mem[-1]}, events=events)


BETA = {(1000, 1): 0.80, (1000, 3): 0.78, (1000, 5): 0.70, (4000, 1): 0.90, (4000, 3): 0.89, (4000, 5): 0.88}


def build_beta_group(group: Path) -> None:
    for (n, beta), val in BETA.items():
        lr, bs = 0.016 * beta, 8 * beta
        rid = f"b{beta}-lr{lr:g}-bs{bs}-n{n}-s0"
        make_run(group, rid, config_yaml("e5_breaking_point_cpu", lr=lr, batch_size=bs, train_size=n,
                                         figures=["beta_scaling"]),
                 label=f"b{beta}", summary={"val_accuracy": val, "best_val_accuracy": val + 0.01},
                 events=_curves(rid, [val] * 2, lr=lr, bs=bs))


SHARP = {"cyclic-lr": (0.16, {1: 5.0, 3: 4.0}, 0.91), "constant": (0.032, {1: 8.0, 3: 9.5}, 0.88)}


def build_sharp_group(group: Path) -> None:
    for label, (lr, lams, test) in SHARP.items():
        rid = f"{label}-lr{lr:g}-bs32-conversionnone-s0"
        lrs = [lr, lr * 0.2, lr, lr * 0.2] if label == "cyclic-lr" else [lr] * EPOCHS
        events = _curves(rid, [0.5, 0.6, 0.7, 0.8], lr=lr, bs=32, lrs=lrs) + monitor_events(
            rid, "sharpness", {e: {"lambda_max": v, "trace": 10 * v} for e, v in lams.items()})
        make_run(group, rid, config_yaml("e6_cyclic_sharpness_cpu", lr=lr, batch_size=32, figures=["sharpness_trajectory"]),
                 label=label, summary={"val_accuracy": 0.8, "test_accuracy": test,
                                       "sharpness/lambda_max": lams[max(lams)]}, events=events)


ALPHAS = np.linspace(-1.0, 2.0, 13)


def interp_loss(a):
    """A sharp minimum at α = 0 (curvature 4) and a wide one at α = 1 (curvature 1)."""
    return np.minimum(0.1 + 4 * a**2, 0.2 + (a - 1) ** 2)


def build_interp_group(group: Path) -> None:
    runs = {"base": (0.1, 32), "large-batch": (0.1, 256)}
    for label, (lr, bs) in runs.items():
        rid = f"{label}-lr{lr:g}-bs{bs}-s0"
        make_run(group, rid, config_yaml("e2_interpolation_cpu", lr=lr, batch_size=bs, figures=["interpolation"],
                                         pairs=[["base", "large-batch"]]),
                 label=label, summary={"val_accuracy": 0.5}, events=_curves(rid, [0.5], lr=lr, bs=bs))
    res = {"run_a": "base-lr0.1-bs32-s0", "run_b": "large-batch-lr0.1-bs256-s0",
           "eta_over_s_a": 0.1 / 32, "eta_over_s_b": 0.1 / 256, "lr_a": 0.1, "lr_b": 0.1,
           "batch_size_a": 32, "batch_size_b": 256, "alphas": ALPHAS.tolist(),
           "train_loss": interp_loss(ALPHAS).tolist(), "train_accuracy": (1 / (1 + interp_loss(ALPHAS))).tolist(),
           "val_loss": (interp_loss(ALPHAS) + 0.1).tolist(), "val_accuracy": (0.9 / (1 + interp_loss(ALPHAS))).tolist()}
    (group / "analysis").mkdir()
    (group / "analysis" / f"interpolation--{res['run_a']}--{res['run_b']}.json").write_text(json.dumps(res))


SVAG = {1: ([2.0, 1.5, 1.0], [0.5, 0.6, 0.7]), 2: ([2.0, 1.45, 1.05], [0.5, 0.62, 0.69]),
        4: ([2.0, 1.3, 1.1], [0.5, 0.66, 0.65])}


def build_svag_group(group: Path) -> None:
    for l, (loss, val) in SVAG.items():
        rid = f"lr0.05-bs32-svag{l}-s0"
        make_run(group, rid, config_yaml("e7_sde_limit_cpu", lr=0.05, batch_size=32, svag=l, figures=["svag"]),
                 summary={"val_accuracy": val[-1]}, events=_curves(rid, val, lr=0.05, bs=32, train_loss=loss, svag=l))


# sharpness_vs_loss: λ_max = c(η/S) · loss^P along each run, c falling with η/S; losses fall at different
# speeds, so the runs reach different end losses and only an equal-loss comparison recovers c.
LOSS_P = 0.5
LOSS_RUNS = {  # run id: (lr, S, training loss per epoch); sharpness measured every LOSS_EVERY epochs
    "lr0.01-bs32-s0": (0.01, 32, [2.0 * 0.8 ** i for i in range(9)]),
    "lr0.02-bs64-s0": (0.02, 64, [1.8 * 0.75 ** i for i in range(9)]),  # same η/S as the first
    "lr0.04-bs32-s0": (0.04, 32, [2.2 * 0.7 ** i for i in range(9)]),
    "lr0.16-bs32-s0": (0.16, 32, [2.0 * 0.6 ** i for i in range(9)]),
}
LOSS_EVERY = 2


def loss_c(lr, bs):
    return 0.05 / (lr / bs) ** 0.5  # falls with η/S


def loss_lambda(lr, bs, loss):
    return loss_c(lr, bs) * loss**LOSS_P


def build_loss_group(group: Path) -> None:
    """E1-like runs with sharpness along the trajectory, and one run without any sharpness event."""
    figs = ["sharpness_vs_loss"]
    for rid, (lr, bs, losses) in LOSS_RUNS.items():
        sharp = {e: {"lambda_max": loss_lambda(lr, bs, losses[e]), "trace": 20 * loss_lambda(lr, bs, losses[e]),
                     "trace_stderr": loss_lambda(lr, bs, losses[e])} for e in range(1, len(losses), LOSS_EVERY)}
        events = _curves(rid, [0.5] * len(losses), lr=lr, bs=bs, train_loss=losses) + monitor_events(rid, "sharpness", sharp)
        make_run(group, rid, config_yaml("e1_ratio_sharpness_cpu", lr=lr, batch_size=bs, figures=figs),
                 summary={"val_accuracy": 0.5}, events=events)
    make_run(group, "lr0.08-bs32-s0", config_yaml("e1_ratio_sharpness_cpu", lr=0.08, batch_size=32, figures=figs),
             summary={"val_accuracy": 0.5}, events=_curves("lr0.08-bs32-s0", [0.5] * 3, lr=0.08, bs=32))


# steps_to_target: steps = S_min (1 + B_crit/S) at the better of two η, 1.5× that at the other; S = 512 misses
CRIT_S_MIN, CRIT_B = 120.0, 64.0


def build_critical_group(group: Path) -> None:
    until = {"metric": "train_loss", "value": 0.5}
    for s in (8, 32, 128, 512):
        for lr, cost in ((0.01 * s / 8, 1.5), (0.02 * s / 8, 1.0)):
            for seed in (0, 1):
                rid = f"lr{lr:g}-bs{s}-s{seed}"
                steps = None if s == 512 else round(CRIT_S_MIN * (1 + CRIT_B / s) * cost * (1 + 0.02 * seed))
                summary = {"target_reached": steps is not None, "steps_to_target": steps,
                           "epochs_to_target": None if steps is None else steps * s / 4000,
                           "examples_to_target": None if steps is None else steps * s}
                noise = monitor_events(rid, "noise", {1: {"b_simple": CRIT_B * 0.9}, 3: {"b_simple": CRIT_B * 1.2}})
                make_run(group, rid, config_yaml("e8_critical_batch_cpu", lr=lr, batch_size=s, seed=seed, until=until,
                                                 figures=["steps_to_target"]),
                         summary=summary, events=_curves(rid, [0.3, 0.4, 0.5, 0.6], lr=lr, bs=s) + noise)


GROUPS = {"ratio": build_ratio_group, "pairs": build_pairs_group, "memo": build_memo_group,
          "beta": build_beta_group, "sharp": build_sharp_group, "interp": build_interp_group, "svag": build_svag_group,
          "loss": build_loss_group, "critical": build_critical_group}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of all groups, built once: (runs dir, out dir, REPORT.md text, group sections)."""
    runs = tmp_path_factory.mktemp("runs")
    for name, make in GROUPS.items():
        make(runs / name)
    out = runs.parent / "out"
    rep = build.build_report(runs, out)
    sections = {name: (out / name / "report.md").read_text() for name in GROUPS}
    return runs, out, rep.path.read_text(), sections


# ------------------------------------------------------------------------------------ tests
EXPECTED_FIGURES = {
    "ratio": ["eta_over_s", "heatmap", "curves"], "pairs": ["paired_curves"], "memo": ["memorization"],
    "beta": ["beta_scaling"], "sharp": ["sharpness_trajectory"], "interp": ["interpolation"], "svag": ["svag"],
    "loss": ["sharpness_vs_loss"], "critical": ["steps_to_target"],
}


def test_every_figure_kind_writes_a_png(report):
    _, out, text, _ = report
    for group, kinds in EXPECTED_FIGURES.items():
        for kind in kinds:
            path = out / group / f"{kind}.png"
            assert path.stat().st_size > 10_000, path
            width, height = png_size(path)
            assert 400 <= width <= 6000 and 300 <= height <= 6000, (path, width, height)
            assert f"({group}/{kind}.png)" in text  # REPORT.md links it


def test_every_figure_kind_of_the_schema_has_a_section():
    from typing import get_args

    from tfminima import config

    assert set(get_args(config.FIGURES)) == set(build.SECTIONS)


def test_report_indexes_every_group(report):
    _, _, text, _ = report
    assert text.startswith("# tfminima report")
    for group in GROUPS:
        assert f"[{group}](#{group})" in text
        assert f"\n## {group}\n" in text


def test_spearman_of_a_monotone_metric_is_plus_one_and_of_a_reversed_one_minus_one(report):
    text = report[3]["ratio"]
    n = len(RATIO_GRID)
    assert f"| final val accuracy | η/S | {1.0:.2f} |" in text
    assert f"| test accuracy | η/S | {1.0:.2f} |" in text
    assert f"| λ_max | η/S | {-1.0:.2f} |" in text
    assert f"| Tr(H) | η/S | {-1.0:.2f} |" in text
    assert f"| {n} |" in text.split("| λ_max | η/S |")[1].splitlines()[0]  # diverged and failed runs left out


def test_iso_ratio_runs_are_grouped(report):
    text = report[3]["ratio"]
    ratio = 0.01 / 32  # = 0.02 / 64: two conditions, one run each, equal accuracy
    val = pct(ratio_val(0.01, 32))
    assert f"| {eta_over_s(ratio)} | 2 | 2 | {val} [{val}, {val}] (n=2) | {0:.2f} |" in text


def test_failed_and_diverged_runs_are_listed_but_not_drawn(report):
    text = report[3]["ratio"]
    assert "| **diverged** (not drawn) |" in text
    assert "| **failed** (not drawn) |" in text
    assert "ValueError: boom" in text
    assert "Not drawn (no trustworthy numbers): " in text
    sizes = {bs for _, bs in RATIO_GRID}
    etas = {lr for lr, _ in RATIO_GRID}
    assert f"Grid: {len(sizes)} batch sizes × {len(etas)} learning rates" in text  # no column for the diverged η
    (group,) = (g for g in loading.load_groups(report[0]) if g.name == "ratio")
    assert sorted(r.state for r in group.runs if not r.plotted) == ["diverged", "failed"]
    assert len(group.plotted()) == len(RATIO_GRID)


def test_paired_curves_state_their_largest_gap_and_the_papers_numbers(report):
    text = report[3]["pairs"]
    gaps = np.abs(np.subtract(PAIR_A["val"], PAIR_B["val"]))
    i = int(np.argmax(gaps))
    assert f"{gaps[i] * 100:.2f} pp at epoch {i + 1}" in text
    loss_gaps = np.abs(np.subtract(PAIR_A["loss"], PAIR_B["loss"]))
    j = int(np.argmax(loss_gaps))
    assert f"{loss_gaps[j]:.4g} at epoch {j + 1}" in text
    assert f"{pct(PAIR_A['test'])} vs {pct(PAIR_B['test'])}" in text
    ref = paper.E3_TEST_ACCURACY
    assert f"{ref['const-lr']} vs {ref['const-bs']}" in text
    assert "pair not drawn: const-lr vs missing: no run 'missing'" in text


def test_memorization_peak_and_memorisation_at_the_peak(report):
    text = report[3]["memo"]
    for rid, (noise, lr, bs, val, mem) in MEMO.items():
        i = int(np.argmax(val))
        row = (f"| `{rid}` | {noise:.0%} | {eta_over_s(lr / bs)} | 0 | {pct(val[i])} | {i + 1} | {pct(mem[i])} | "
               f"{pct(val[-1])} | {pct(mem[-1])} | {len(val)} |")
        assert row in text
    quarter = {rid: v for rid, v in MEMO.items() if v[0] == 0.25}
    best = max(quarter, key=lambda rid: max(quarter[rid][3]))
    val, mem = quarter[best][3], quarter[best][4]
    i = int(np.argmax(val))
    assert f"| 25% | {pct(val[i])} | `{best}` | {i + 1} | {pct(mem[i])} |" in text
    assert f"≈{paper.E4_PEAK_VAL[0.25]:g}" in text and f"≈{paper.E4_PEAK_VAL[0.5]:g}" in text


def test_beta_scaling_lists_beta_and_accuracy_per_training_size(report):
    text = report[3]["beta"]
    for (n, beta), val in BETA.items():
        lr, bs = 0.016 * beta, 8 * beta
        change = "—" if beta == 1 else f"{(val - BETA[(n, 1)]) * 100:+.2f}"
        assert (f"| {n} | {beta:g} | {lr:.4g} | {bs} | {eta_over_s(lr / bs)} | 1 | {pct(val)} | {pct(val + 0.01)} | {change} |"
                in text)
    first = paper.E5_BETAS[0]
    assert f"| {first:g} | " + " | ".join(f"{paper.E5_VAL_ACCURACY[n][0]:.1f}" for n in (45000, 12000)) + " |" in text


def test_beta_from_batch_sizes_when_runs_have_no_label(tmp_path):
    for bs in (16, 32, 64):
        make_run(tmp_path / "g", f"lr{bs / 100:g}-bs{bs}-s0", config_yaml("plain", lr=bs / 100, batch_size=bs))
    (group,) = loading.load_groups(tmp_path)
    points = numbers.beta_points(group.runs)
    assert [p.beta for p in points] == [bs / 16 for bs in (16, 32, 64)]


def test_sharpness_trajectory_states_final_lambda_and_the_papers_numbers(report):
    text = report[3]["sharp"]
    for label, (lr, lams, test) in SHARP.items():
        acc, norm = paper.E6_END[label]
        last = max(lams)
        final = lams[last]
        lr_then = lr * 0.2 if label == "cyclic-lr" else lr  # the η scheduled in the epoch of the last measurement
        stability = final * lr_then / 2  # λ_max·η/(2(1+β)), β = 0
        peak = max(v * (lr * 0.2 if label == "cyclic-lr" and e % 2 else lr) / 2 for e, v in lams.items())
        assert (f"| `{label}` | {eta_over_s(lr / 32)} | 1 | {final:.4g} | {min(lams.values()):.4g} – {max(lams.values()):.4g} | "
                f"{10 * final:.4g} | {stability:.3g} | {peak:.3g} | {pct(test)} | {acc:.2f} / {norm:g} |") in text


def test_interpolation_states_the_loss_rise_beyond_each_minimum(report):
    text = report[3]["interp"]
    at = lambda a: float(np.interp(a, ALPHAS, interp_loss(ALPHAS)))
    rise_a, rise_b = at(-0.5) - at(0.0), at(1.5) - at(1.0)
    row = next(line for line in text.splitlines() if "| train |" in line)
    assert f"| {rise_a:.4g} | {rise_b:.4g} | `base-lr0.1-bs32-s0` |" in row  # the sharper side is A
    assert f"{at(-0.5):.4g} (α=-0.5)" in row and f"{at(1.5):.4g} (α=1.5)" in row


def test_interpolation_rise_shrinks_to_the_alpha_range():
    alphas = np.linspace(-0.25, 1.25, 7)
    res = {"alphas": alphas.tolist(), "train_loss": interp_loss(alphas).tolist()}
    rise = numbers.interpolation_rise(res)
    d = -alphas.min()
    assert rise.d == pytest.approx(d)
    assert rise.rise_a == pytest.approx(float(interp_loss(-d) - interp_loss(0.0)))
    assert rise.rise_b == pytest.approx(float(interp_loss(1 + d) - interp_loss(1.0)))


def _measured_losses(losses):
    return [losses[e] for e in range(1, len(losses), LOSS_EVERY)]


def test_sharpness_vs_loss_compares_runs_at_equal_training_loss(report):
    text = report[3]["loss"]
    ranges = [(min(_measured_losses(l)), max(_measured_losses(l))) for _, _, l in LOSS_RUNS.values()]
    lo, hi = np.log(max(r[0] for r in ranges)), np.log(min(r[1] for r in ranges))
    assert lo < hi  # the constructed runs overlap
    levels = [float(np.exp(lo + (i + 0.5) * (hi - lo) / 4)) for i in range(4)]
    assert f"All {len(LOSS_RUNS)} runs pass through training losses {np.exp(lo):.3g} – {np.exp(hi):.3g}" in text
    n = len(LOSS_RUNS)
    exact_p = 2 / math.factorial(len({(lr, bs) for lr, bs, _ in LOSS_RUNS.values()}))  # ρ = −1 over 4 conditions
    for level in levels:  # the power law is exact under log-log interpolation; ρ is −1 at every level
        row = next(line for line in text.splitlines() if line.startswith(f"| {level:.3g} | {n} of {n} |"))
        assert row.endswith(f"| {-1.0:.2f} | {exact_p:.2g} | {-1.0:.2f} |")  # λ_max, its exact p, Tr(H)
    for rid, (lr, bs, losses) in LOSS_RUNS.items():
        measured = _measured_losses(losses)
        row = next(line for line in text.splitlines() if line.startswith(f"| `{rid.removesuffix('-s0')}` |"))
        cells = [f"{loss_lambda(lr, bs, level):.4g}" for level in levels]
        stability = loss_lambda(lr, bs, levels[0]) * lr / 2  # at the first level, β = 0
        final_stability = loss_lambda(lr, bs, measured[-1]) * lr / 2
        assert (f"| `{rid.removesuffix('-s0')}` | {eta_over_s(lr / bs)} | 1 | {len(measured)} | "
                f"{min(measured):.3g} – {max(measured):.3g} | " + " | ".join(cells)
                + f" | {stability:.3g} | {measured[-1]:.3g} | {loss_lambda(lr, bs, measured[-1]):.4g} | "
                f"{final_stability:.3g} |") == row
    iso = [rid for rid, (lr, bs, _) in LOSS_RUNS.items() if lr / bs == 0.01 / 32]
    mean = np.mean([loss_lambda(*LOSS_RUNS[r][:2], levels[0]) for r in iso])
    assert f"| {mean:.4g} [{mean:.4g}, {mean:.4g}] (n={len(iso)}) |" in text  # the iso-ratio pair at the first level
    assert "**Not the stability cap:**" in text  # every run is far below λ = 2/η
    assert "Not used (no sharpness measurement with a training loss of the same epoch): `lr0.08-bs32-s0`." in text


def test_value_at_loss_takes_the_first_crossing_and_is_exact_for_a_power_law():
    loss = np.array([1.0, 0.25, 0.5, 0.1])  # goes back up once, as under a cyclic schedule
    lam = 3.0 * loss**0.7
    assert sharpness.value_at_loss(loss, lam, 0.4) == pytest.approx(3.0 * 0.4**0.7)  # first pass, 1.0 → 0.25
    assert sharpness.value_at_loss(loss, lam, 0.25) == pytest.approx(lam[1])
    bumped = lam.copy()
    bumped[2] = 99.0  # a different value on the way back up: never reached first there
    assert sharpness.value_at_loss(loss, bumped, 0.4) == pytest.approx(3.0 * 0.4**0.7)
    assert sharpness.value_at_loss(loss, lam, 2.0) is None and sharpness.value_at_loss(loss, lam, 0.05) is None


def test_sharpness_vs_loss_says_when_runs_share_no_loss_range(tmp_path):
    """One measurement per run at different losses (sharpness only at the end): nothing to compare."""
    for i, (lr, loss) in enumerate(((0.01, 0.9), (0.04, 0.5), (0.16, 0.2))):
        rid = f"lr{lr:g}-bs32-s0"
        events = _curves(rid, [0.5] * 3, lr=lr, bs=32, train_loss=[2.0, 1.5, loss]) + monitor_events(
            rid, "sharpness", {2: {"lambda_max": 10.0 - i}})
        make_run(tmp_path / "g", rid, config_yaml("e1", lr=lr, batch_size=32), summary={"val_accuracy": 0.5}, events=events)
    (group,) = loading.load_groups(tmp_path)
    paths = [sharpness.loss_path(r) for r in group.runs]
    levels = sharpness.loss_levels(paths)
    assert levels.levels == [] and levels.span is None
    text = markdown_sharpness.sharpness_vs_loss_text(
        sharpness.EqualLoss(paths, [], levels, sharpness.compare_at_loss(paths, levels.levels)))
    assert "**No common training-loss range:**" in text
    assert f"ρ(λ_max, η/S) = {-1.0:.2f} over 3 conditions, with training losses from 0.2 to 0.9" in text


def test_sharpness_vs_loss_flags_levels_with_fewer_than_three_runs(tmp_path):
    """Two runs overlap, the third does not: levels lie where ≥ 2 runs pass, and get no ρ."""
    spans = {0.01: [1.0, 0.5], 0.04: [0.8, 0.4], 0.16: [0.2, 0.1]}
    for lr, losses in spans.items():
        rid = f"lr{lr:g}-bs32-s0"
        events = _curves(rid, [0.5] * 2, lr=lr, bs=32, train_loss=losses) + monitor_events(
            rid, "sharpness", {e: {"lambda_max": 5.0 / lr * losses[e]} for e in range(2)})
        make_run(tmp_path / "g", rid, config_yaml("e1", lr=lr, batch_size=32), summary={"val_accuracy": 0.5}, events=events)
    (group,) = loading.load_groups(tmp_path)
    paths = [sharpness.loss_path(r) for r in group.runs]
    levels = sharpness.loss_levels(paths)
    assert not levels.common and levels.min_runs == 2
    assert levels.span == pytest.approx((0.5, 0.8))
    comparisons = sharpness.compare_at_loss(paths, levels.levels)
    assert all(c.n == 2 and c.rho_lambda is None for c in comparisons)
    text = markdown_sharpness.sharpness_vs_loss_text(sharpness.EqualLoss(paths, [], levels, comparisons))
    assert "**The runs' loss ranges have no part in common:**" in text
    assert "n/a (< 3 conditions)" in text and "Levels reached by fewer than 3 conditions (no correlation): " in text


def test_svag_states_the_gap_between_l1_and_the_largest_l(report):
    text = report[3]["svag"]
    top = max(SVAG)
    loss = np.abs(np.subtract(SVAG[1][0], SVAG[top][0]))
    val = np.abs(np.subtract(SVAG[1][1], SVAG[top][1]))
    assert f"{loss.max():.4g} at epoch {int(np.argmax(loss)) + 1}" in text
    assert f"{val.max() * 100:.2f} pp at epoch {int(np.argmax(val)) + 1}" in text
    assert ", ".join(f"l={l}: {pct(SVAG[l][1][-1])}" for l in SVAG) in text


def test_momentum_correlation_uses_the_momentum_corrected_ratio(tmp_path):
    """Equal η/S, momentum rising: only η/(S(1−β)) orders the runs."""
    for i, beta in enumerate((0.0, 0.5, 0.9)):
        make_run(tmp_path / "g", f"m{beta:g}", config_yaml("e7_momentum_ratio_cpu", lr=0.04, batch_size=32, momentum=beta),
                 summary={"val_accuracy": 0.5 + 0.1 * i})
    (group,) = loading.load_groups(tmp_path)
    corr = build.correlations(group.runs, ["val_accuracy"])
    assert corr[("val_accuracy", "eta_over_s")] is None  # one η/S value: no ranking to correlate
    assert corr[("val_accuracy", "eta_over_s_momentum")].rho == pytest.approx(1.0)


# tfminima report in a fresh interpreter, without TensorFlow, Keras or Textual imported: test_report_seeds'
# test_cli_prints_the_warnings_and_writes_every_format (its one report process).


def test_cli_report_on_a_directory_without_runs_exits_2(tmp_path, capsys):
    from tfminima.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "holds no runs" in err and str(tmp_path / "empty") in err
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_the_report_cites_the_repositorys_paper_account_never_a_path_outside_it(report):
    _, _, text, _ = report
    assert "docs/paper.md, section E3" in text and "arXiv 1711.04623 §4" in text
    # the shared notes' file name, the folder beside the checkout, the machine's work tree (spelled in
    # pieces, so that this file does not itself name a place outside the repository)
    outside = re.compile("|".join(re.escape(a + b) for a, b in (("PAPER", ".md"), ("../", "shared"), ("/wo", "rk/"))))
    assert not outside.search(text)
    assert not outside.search(Path(paper.__file__).read_text())


def test_interpolation_says_when_the_minima_are_of_different_depth(report):
    text = report[3]["interp"]
    at_a, at_b = interp_loss(0.0), interp_loss(1.0)  # 0.1 and 0.2: a factor 2, not more
    assert max(at_a, at_b) / min(at_a, at_b) <= 2.0
    assert "Width is not compared at equal training loss" not in text
    deep = {"run_a": "a", "run_b": "b", "alphas": ALPHAS.tolist(), "train_loss": (interp_loss(ALPHAS) * (1 + ALPHAS)
                                                                                  + 0.01).tolist()}
    from tfminima.report import markdown_sections

    assert "**Width is not compared at equal training loss here:** the minima of `a` → `b`" in (
        markdown_sections.interpolation_text([deep]))
