"""The critical batch size (E8) in the report: the fit of S_min(1 + B_crit/S), the best η per S, B_simple as
the prediction, runs that missed the target kept in view; the figure from a small real sweep."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tfminima.report import build, critical
from tfminima.report.loading import Run

ROOT = Path(__file__).resolve().parents[1]
S_GRID = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]


def synthetic_run(s: int, lr: float, seed: int, steps: float | None, *, state="completed", b_simple=()) -> Run:
    """A run as the report loads it: hparams, summary.json with the target counts, noise events."""
    summary = {"state": state, "target_reached": steps is not None}
    if steps is not None:
        summary.update(steps_to_target=int(round(steps)), epochs_to_target=steps * s / 4000,
                       examples_to_target=int(round(steps)) * s)
    events = [{"run_id": "r", "epoch": i, "step": i, "kind": "noise", "b_simple": b} for i, b in enumerate(b_simple)]
    return Run(f"lr{lr:g}-bs{s}-s{seed}", Path("."), state, None,
               {"lr": lr, "batch_size": s, "seed": seed, "eta_over_s": lr / s}, summary, None, events)


@pytest.mark.parametrize("b_crit", [50.0, 300.0, 1000.0])
def test_the_fit_recovers_b_crit_within_5_percent(b_crit):
    rng = np.random.default_rng(int(b_crit))
    s_min = 150.0
    s = np.array(S_GRID, dtype=float)
    seeds = s_min * (1 + b_crit / s) * np.exp(rng.normal(0.0, 0.03, (4, len(s))))  # 3 % noise, 4 seeds
    steps = np.exp(np.log(seeds).mean(axis=0))  # the fit takes each S's geometric seed mean
    fit_s_min, fit_b, rms = critical.fit_critical(s, steps)
    assert fit_b == pytest.approx(b_crit, rel=0.05) and fit_s_min == pytest.approx(s_min, rel=0.05)
    assert rms < 0.06


def test_the_fit_is_exact_on_exact_data():
    s = np.array(S_GRID, dtype=float)
    fit_s_min, fit_b, rms = critical.fit_critical(s, 80.0 * (1 + 400.0 / s))
    assert fit_b == pytest.approx(400.0, rel=1e-6) and fit_s_min == pytest.approx(80.0, rel=1e-6) and rms < 1e-9


def sweep_runs(b_crit=300.0, s_min=150.0, seeds=(0, 1, 2), noise=0.04):
    """Three η a batch size: the centre is best (fewest steps), x0.5 needs 1.6x the steps, x2 misses at large S."""
    rng = np.random.default_rng(7)
    runs = []
    for s in S_GRID:
        centre = min(0.1 * s / 8, 1.0)
        for factor, cost in ((0.5, 1.6), (1.0, 1.0), (2.0, 1.3)):
            for seed in seeds:
                steps = s_min * (1 + b_crit / s) * cost * math.exp(rng.normal(0, noise))
                missed = factor == 2.0 and s >= 1024
                runs.append(synthetic_run(s, centre * factor, seed, None if missed else steps,
                                          b_simple=[b_crit * 0.8, b_crit * 1.1, b_crit * 1.3] if factor == 1 else ()))
    # a batch size no η reached: shown, not fitted
    runs += [synthetic_run(4096, lr, seed, None) for lr in (0.5, 1.0) for seed in seeds]
    return runs


def test_best_eta_per_s_fit_interval_and_prediction():
    cb = critical.critical_batch(sweep_runs(), resamples=300)
    by_s = {p.batch_size: p for p in cb.points}
    assert sorted(by_s) == S_GRID + [4096]
    for s in S_GRID:
        assert by_s[s].best.lr == pytest.approx(min(0.1 * s / 8, 1.0))  # the centre η: fewest steps, every seed
        est = by_s[s].counts["steps_to_target"]
        values = [v for v in by_s[s].best.steps.values()]
        assert est.mean == pytest.approx(np.mean(values)) and est.n == 3 and est.lo <= est.mean <= est.hi
        assert by_s[s].counts["examples_to_target"].mean == pytest.approx(np.mean([round(v) * s for v in values]))
    assert not by_s[4096].reached and by_s[4096].best is None
    fit = cb.fit
    assert fit.b_crit == pytest.approx(300.0, rel=0.05)
    assert fit.b_crit_lo < fit.b_crit < fit.b_crit_hi and fit.b_crit_lo < 300.0 < fit.b_crit_hi
    b = [300.0 * f for f in (0.8, 1.1, 1.3)] * 9
    assert cb.noise.median == pytest.approx(np.median(b)) and cb.noise.n_runs == 27 and cb.noise.n_values == 81
    assert cb.noise.q1 == pytest.approx(np.quantile(b, 0.25)) and cb.agreement == "agree"


def test_a_prediction_far_off_is_called_a_disagreement():
    runs = sweep_runs()
    for r in runs:
        for e in r.events:
            e["b_simple"] *= 20
    assert critical.critical_batch(runs, resamples=200).agreement == "disagree"


def test_the_best_eta_prefers_every_seed_reaching_over_fewer_steps():
    runs = [synthetic_run(64, 0.8, 0, 100.0), synthetic_run(64, 0.8, 1, None),  # fast, but one seed missed
            synthetic_run(64, 0.4, 0, 200.0), synthetic_run(64, 0.4, 1, 220.0)]
    (point,) = critical.batch_points(runs)
    assert point.best.lr == 0.4 and point.counts["steps_to_target"].mean == 210.0


def test_the_text_lists_every_s_and_every_missed_run():
    from tfminima.report.markdown_critical import critical_text

    text = critical_text(critical.critical_batch(sweep_runs(), resamples=100))
    assert "B_crit =" in text and "B_simple" in text and "overlap" in text
    assert "| 4096 | — | 0/6 | not reached |" in text
    for s in S_GRID:
        assert f"\n| {s} | {min(0.1 * s / 8, 1.0):g} | 3/3 |" in text
    assert text.count("not reached (") == 2 * 3 + 2 * 3  # each seed of x2 at S = 1024 and 2048, both η of S = 4096


SWEEP = """\
name: cb
epochs: 2
dataset: {{name: mnist1d, train_size: 512, val_size: 64, test_size: 0}}
model: {{name: mlp, hidden: [32]}}
until: {{metric: train_loss, value: {value}, every_steps: 2, train_examples: 256}}
monitors: [{{noise: {{every: 1, samples: 128, trace_probes: 2}}}}]
sweep:
  zip:
    optimizer.batch_size: [16, 16, 32, 32, 64, 64, 256]
    optimizer.lr: [0.1, 0.2, 0.2, 0.4, 0.4, 0.8, 0.0001]
  seeds: [0, 1]
report: {{figures: [steps_to_target]}}
output_dir: {out}
"""


def test_the_figure_from_a_small_real_sweep(tmp_path, cli_here, monkeypatch):
    """7 conditions × 2 seeds, 2 epochs at most; S = 256 at a tiny η never reaches the target. The report's
    own fit is the one checked, with 100 bootstrap resamples (its 1000 were most of the report's time;
    the interval's bootstrap is checked on synthetic runs above)."""
    path = tmp_path / "cb.yaml"
    path.write_text(SWEEP.format(value=2.0, out=tmp_path / "runs"))
    proc = cli_here("run", path, "--quiet")
    assert proc.returncode == 0, proc.stderr
    fits = []

    def recorded(runs, resamples=1000):
        fits.append(original(runs, resamples=100))
        return fits[-1]

    original = critical.critical_batch
    monkeypatch.setattr(critical, "critical_batch", recorded)
    kept = {}
    group = build.load_groups(tmp_path / "runs")[0]
    rep = build.report_group(group, tmp_path / "out", kept=kept)
    text = (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "steps_to_target.png").stat().st_size > 10_000
    (cb,) = fits
    reached = [p for p in cb.points if p.reached]
    assert [p.batch_size for p in reached] == [16, 32, 64] and not cb.points[-1].reached
    assert cb.fit is not None and cb.noise is not None and cb.noise.n_runs == 14
    ax = kept["steps_to_target"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    drawn = {round(float(x)) for line in ax.lines for x in np.atleast_1d(line.get_xdata()) if len(line.get_xdata()) == 1}
    assert {16, 32, 64, 256} <= drawn  # every S, the missed one as a marker on the top edge
    assert "| 256 | — | 0/2 | not reached |" in text and f"B_crit = {cb.fit.b_crit:.3g}" in text
    assert rep.sections[0].figure.name == "steps_to_target.png"
