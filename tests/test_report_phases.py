"""λ_max by noise phase: cycling schedules split into high- and low-noise phases by their logged η/S, each
high-noise phase against the low-noise phases beside it, the swing tested over seeds.

Hand-built run directories with known numbers (no training); every expected value is computed here from the
constructed inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from report_support import config_yaml, epoch_events, make_run, monitor_events

from tfminima.report import build, loading, phases, stats
from tfminima.report.markdown import difference

HIGH, LOW, S = 0.16, 0.032, 32
CYCLIC = [HIGH] * 4 + [LOW] * 4 + [HIGH] * 4 + [LOW] * 4  # per epoch index: H 1–4, L 5–8, H 9–12, L 13–16
SWING = {0: 0.5, 1: 0.6, 2: 0.7}  # what a high-noise phase adds to λ_max, per seed
DRIFT = 0.01  # λ_max per epoch along training


def lam(epoch_done: int, lr: float, seed: int) -> float:
    return 5.0 + (SWING[seed] if lr == HIGH else 0.0) + DRIFT * epoch_done


def make(group, rid, lrs, seed, label):
    n = len(lrs)
    events = epoch_events(rid, train_loss=[1.0 - 0.02 * e for e in range(n)], train_acc=[0.5] * n,
                          val_loss=[1.0] * n, val_acc=[0.5] * n, lr=lrs, batch_size=[S] * n)
    events += monitor_events(rid, "sharpness", {e: {"lambda_max": lam(e + 1, lrs[e], seed)} for e in range(1, n, 2)})
    make_run(group, rid, config_yaml("e6_like", lr=HIGH, batch_size=S, seed=seed, epochs=n,
                                     figures=["sharpness_trajectory"]), label=label, events=events,
             summary={"val_accuracy": 0.5, "loss": 0.7})


@pytest.fixture(scope="module")
def e6(tmp_path_factory):
    root = tmp_path_factory.mktemp("phases")
    for seed in SWING:
        make(root / "g", f"cyclic-s{seed}", CYCLIC, seed, "cyclic")
        make(root / "g", f"step-s{seed}", [HIGH] * 8 + [LOW] * 8, seed, "step")  # one drop: does not cycle
    (group,) = loading.load_groups(root)
    build.report_group(group, root / "out")
    return group, (root / "out" / "report.md").read_text()


def expected(seed):
    """(high, low, cycles with the high phase sharper) by the definition: H1 beside L1 only, H2 beside L1 and L2."""
    mean = lambda epochs, lr: float(np.mean([lam(e, lr, seed) for e in epochs]))
    h1, l1, h2, l2 = mean([2, 4], HIGH), mean([6, 8], LOW), mean([10, 12], HIGH), mean([14, 16], LOW)
    cycles = [(h1, l1), (h2, (l1 + l2) / 2)]
    return (float(np.mean([h for h, _ in cycles])), float(np.mean([lo for _, lo in cycles])),
            sum(h > lo for h, lo in cycles))


def test_phases_come_from_the_logged_schedule(e6):
    group, _ = e6
    run = next(r for r in group.runs if r.run_id == "cyclic-s0")
    got = phases.noise_phases(run)
    assert [(p.high, p.epochs) for p in got] == [(True, [1, 2, 3, 4]), (False, [5, 6, 7, 8]),
                                                 (True, [9, 10, 11, 12]), (False, [13, 14, 15, 16])]
    assert got[0].lambda_max == [lam(2, HIGH, 0), lam(4, HIGH, 0)]
    assert got[0].stability == pytest.approx([lam(2, HIGH, 0) * HIGH / 2, lam(4, HIGH, 0) * HIGH / 2])
    step = next(r for r in group.runs if r.run_id == "step-s0")
    assert phases.noise_phases(step) is None and phases.swing(step) is None


def test_an_epoch_at_the_midpoint_belongs_to_no_phase(tmp_path):
    lrs = [0.16, 0.096, 0.032, 0.096, 0.16, 0.096, 0.032]  # triangular: the midpoint 0.096 is neither phase
    make(tmp_path / "g", "tri-s0", lrs, 0, "tri")
    (group,) = loading.load_groups(tmp_path)
    got = phases.noise_phases(group.runs[0])
    assert [(p.high, p.epochs) for p in got] == [(True, [1]), (False, [3]), (True, [5]), (False, [7])]


def test_the_swing_is_paired_within_each_run_and_tested_over_seeds(e6):
    _, text = e6
    section = text.split("**λ_max by noise phase.**")[1].split("\n### ")[0]
    values = {seed: expected(seed) for seed in SWING}
    assert all(n == 2 for _, _, n in values.values())
    row = next(line for line in section.splitlines() if line.startswith("| `cyclic` |"))
    highs, lows = [v[0] for v in values.values()], [v[1] for v in values.values()]
    assert f"| {stats.mean_ci(highs).mean:.4g} [" in row and f"| {stats.mean_ci(lows).mean:.4g} [" in row
    assert "| 6 of 6 |" in row and "| 2 |" in row  # every cycle, two cycles per run
    diff = stats.compare_means({s: v[0] for s, v in values.items()}, {s: v[1] for s, v in values.items()})
    assert diff.paired and difference(diff, "lambda_max") in section
    assert "`step`" not in section  # a schedule that never comes back is not cycling
    assert "below the edge of stability" in section


def test_the_drift_cancels_where_a_high_phase_has_both_neighbours(e6):
    group, _ = e6
    for seed, swing in SWING.items():
        run = next(r for r in group.runs if r.run_id == f"cyclic-s{seed}")
        second = phases.swing(run).cycles[1]
        assert len(second.lows) == 2
        assert second.lambda_high - second.lambda_low == pytest.approx(swing)
