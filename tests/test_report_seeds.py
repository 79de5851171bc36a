"""The report over seeds, with warnings, the edge of stability, analyses, formats and legends.

Hand-built run directories with known numbers (no training); every expected value is computed
here from the constructed inputs.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from report_support import (
    config_yaml,
    epoch_events,
    legend_problems,
    make_run,
    monitor_events,
)

from tfminima.report import build, checks, loading, seeds, sharpness, stats
from tfminima.report.markdown import pct
from tfminima.report.style import DISCRETE_RATIOS, ETA_S_LABEL, parse_formats
from tfminima.formats import eta_over_s

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
OFFSET = {0: -0.01, 1: 0.0, 2: 0.02}  # what each seed adds to a run's final validation accuracy
GRID = [(0.01, 32), (0.02, 64), (0.04, 32), (0.08, 64)]  # two η/S values, two conditions each
EPOCHS = 4


def val_of(lr, bs, seed):
    return 0.5 + 100 * lr / bs + OFFSET[seed]


def loss_of(lr, bs, seed, epoch):
    """Training loss falling faster at higher η/S; seeds shift it a little."""
    return 2.0 * (1 - 40 * lr / bs) ** epoch * (1 + 0.01 * seed)


def lam_of(lr, bs, loss):
    return 0.1 / (lr / bs) ** 0.5 * loss**0.5


def _events(rid, lr, bs, seed, *, val, lrs=None, sharp=True):
    n = EPOCHS
    losses = [loss_of(lr, bs, seed, e) for e in range(n)]
    events = epoch_events(rid, train_loss=losses, train_acc=[0.3 + 0.1 * e for e in range(n)],
                          val_loss=losses, val_acc=[val - 0.05 * (n - 1 - e) for e in range(n)],
                          lr=lrs or [lr] * n, batch_size=[bs] * n)
    if sharp:
        events += monitor_events(rid, "sharpness", {e: {"lambda_max": lam_of(lr, bs, losses[e]), "trace": 1.0}
                                                    for e in range(n)})
    return events


def build_seed_group(group: Path) -> None:
    """E1-like: 4 conditions × 3 seeds; equal-η/S conditions differ by nothing but their seeds."""
    figs = ["eta_over_s", "curves", "sharpness_vs_loss", "sharpness_trajectory", "heatmap"]
    for (lr, bs), seed in itertools.product(GRID, SEEDS):
        rid = f"lr{lr:g}-bs{bs}-s{seed}"
        val = val_of(lr, bs, seed)
        make_run(group, rid, config_yaml("e1_seeds", lr=lr, batch_size=bs, figures=figs, seed=seed),
                 summary={"val_accuracy": val, "loss": loss_of(lr, bs, seed, EPOCHS - 1),
                          "sharpness/lambda_max": lam_of(lr, bs, loss_of(lr, bs, seed, EPOCHS - 1))},
                 events=_events(rid, lr, bs, seed, val=val))


PAIR = {"const-lr": (0.032, 32, [0.80, 0.82, 0.81]), "const-bs": (0.16, 160, [0.79, 0.83, 0.80])}


def build_pair_group(group: Path) -> None:
    """E3-like pair, each side with three seeds: ``report.pairs`` names labels, which match every seed."""
    for label, (lr, bs, tests) in PAIR.items():
        for seed, test in zip(SEEDS, tests):
            rid = f"{label}-lr{lr:g}-bs{bs}-s{seed}"
            make_run(group, rid, config_yaml("e3_schedules_cpu", lr=lr, batch_size=bs, seed=seed,
                                             figures=["paired_curves"], pairs=[["const-lr", "const-bs"]]),
                     label=label, summary={"test_accuracy": test, "val_accuracy": test},
                     events=_events(rid, lr, bs, seed, val=test, sharp=False))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(runs, out, the Report, each group's report.md, each figure by "group/kind"). The figures are built
    but not written (writing every format is test_cli_prints_the_warnings_and_writes_every_format's):
    the figure checks below draw them themselves."""
    runs = tmp_path_factory.mktemp("seedruns")
    build_seed_group(runs / "seeds")
    build_pair_group(runs / "pair")
    out = runs.parent / "seedout"
    figs = {}

    def keep(fig, stem, formats=("png",)):
        figs[f"{stem.parent.name}/{stem.name}"] = fig
        return stem.with_suffix(f".{formats[0]}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "save", keep)
        rep = build.build_report(runs, out, formats="png,svg")
    return runs, out, rep, {g: (out / g / "report.md").read_text() for g in ("seeds", "pair")}, figs


# ------------------------------------------------------------------------------- conditions
def test_runs_equal_up_to_the_seed_form_one_condition_grouped_by_config_not_id(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / "g", f"odd-name-{seed}", config_yaml("x", lr=0.1, batch_size=32, seed=seed))
    make_run(tmp_path / "g", "lr0.1-bs32-s5", config_yaml("x", lr=0.1, batch_size=32, seed=5, momentum=0.5))
    (group,) = loading.load_groups(tmp_path)
    conds = seeds.conditions(group.runs)
    assert sorted(c.n for c in conds) == [1, 2]
    (pair,) = [c for c in conds if c.n == 2]
    assert pair.seeds == [0, 1] and {r.run_id for r in pair.runs} == {"odd-name-0", "odd-name-1"}
    assert [c.name for c in conds if c.n == 1] == ["lr0.1-bs32"]  # the -s<seed> tail goes, nothing else


def test_conditions_table_gives_the_mean_over_seeds_its_interval_and_n(report):
    text = report[3]["seeds"]
    for lr, bs in GRID:
        values = [val_of(lr, bs, s) for s in SEEDS]
        est = stats.mean_ci(values)
        assert (est.lo, est.hi) == (pytest.approx(min(values)), pytest.approx(max(values)))  # 3 seeds: their range
        assert f"| `lr{lr:g}-bs{bs}` | {eta_over_s(lr / bs)} | 0, 1, 2 | " in text
        assert f"{pct(est.mean)} [{pct(min(values))}, {pct(max(values))}] (n=3)" in text
    assert f"1 − 2^(1−n) ({stats.range_coverage(3):.1%} with 3)" in text


def test_equal_eta_over_s_conditions_agree_within_seed_noise_and_families_differ(report):
    text = report[3]["seeds"]
    row = next(line for line in text.splitlines() if line.startswith(f"| equal η/S ({eta_over_s(GRID[0][0] / GRID[0][1])}) agree |"))
    # the same seed offsets on both sides: every paired difference is 0
    assert "| +0.00 pp [+0.00, +0.00] |" in row and "paired over 3 seeds" in row and "**within seed noise**" in row
    low = [val_of(lr, bs, s) for lr, bs in GRID[:2] for s in SEEDS]
    high = [val_of(lr, bs, s) for lr, bs in GRID[2:] for s in SEEDS]
    d = stats.compare_means(high, low)
    row = next(line for line in text.splitlines() if line.startswith(f"| η/S {eta_over_s(GRID[2][0] / GRID[2][1])} differs from {eta_over_s(GRID[0][0] / GRID[0][1])} |"))
    assert f"| {d.diff * 100:+.2f} pp [{d.lo * 100:+.2f}, {d.hi * 100:+.2f}] |" in row
    assert d.pvalue == pytest.approx(2 / math.comb(12, 6))  # the families do not overlap: only the two extreme splits
    assert f"| {d.pvalue:.2g} | **beyond seed noise** |" in row


def test_spearman_over_conditions_has_an_exact_p_and_a_seed_interval(report):
    text = report[3]["seeds"]
    x = [lr / bs for lr, bs in GRID]
    means = [np.mean([val_of(lr, bs, s) for s in SEEDS]) for lr, bs in GRID]
    from scipy.stats import rankdata, spearmanr

    rho = spearmanr(x, means).statistic
    ry = rankdata(means)
    perms = [spearmanr(x, [ry[i] for i in p]).statistic for p in itertools.permutations(range(len(GRID)))]
    p = np.mean(np.abs(perms) >= abs(rho) - 1e-12)
    corr = stats.spearman_over_conditions(x, [[val_of(lr, bs, s) for s in SEEDS] for lr, bs in GRID])
    assert corr.rho == pytest.approx(rho) and corr.pvalue == pytest.approx(p)
    assert f"| final val accuracy | η/S | {corr.rho:.2f} [{corr.lo:.2f}, {corr.hi:.2f}] | {p:.2g} | 4 | 3 |" in text
    assert corr.lo > 0  # resampled seeds never reorder the two η/S families


def test_mean_curve_averages_the_seeds_that_logged_each_epoch():
    class FakeRun:
        def __init__(self, values):
            self.values = values

        def series(self, kind, key, split=None):
            return loading.Series(np.arange(1.0, len(self.values) + 1), np.array(self.values))

    cond = seeds.Condition("k", [FakeRun([1.0, 2.0, 3.0]), FakeRun([3.0, 4.0])])
    curve = seeds.mean_curve(cond, "train", "loss")
    assert curve.epochs.tolist() == [1, 2, 3] and curve.mean.tolist() == [2.0, 3.0, 3.0]
    assert curve.lo.tolist() == [1.0, 2.0, 3.0] and curve.hi.tolist() == [3.0, 4.0, 3.0]
    assert curve.count.tolist() == [2, 2, 1]


def test_pairs_named_by_label_compare_every_seed_paired(report):
    text = report[3]["pair"]
    a, b = PAIR["const-lr"][2], PAIR["const-bs"][2]
    d = stats.compare_means(dict(zip(SEEDS, a)), dict(zip(SEEDS, b)))
    row = next(line for line in text.splitlines() if line.startswith("| pair alike | `const-lr` | `const-bs` | test"))
    assert f"| {d.diff * 100:+.2f} pp [{d.lo * 100:+.2f}, {d.hi * 100:+.2f}] |" in row
    assert "paired over 3 seeds" in row and "**within seed noise**" in row
    assert "pair not drawn" not in text
    est = stats.mean_ci(a)
    assert f"{pct(est.mean)} [{pct(est.lo)}, {pct(est.hi)}] (n=3) vs " in text


def test_a_difference_the_seeds_cannot_resolve_is_called_so():
    a, b = {0: 0.60, 1: 0.62}, {0: 0.50, 1: 0.55}
    cond = lambda name, values: seeds.Condition(name, [_Stub(name, s, v) for s, v in values.items()])
    cmp = seeds.compare_conditions("claim", cond("a", a), cond("b", b), "val_accuracy")
    assert cmp.diff.within_noise is False and cmp.diff.pvalue == pytest.approx(0.5)
    assert cmp.verdict.startswith("too few seeds to tell") and "p ≥ 0.5" in cmp.verdict


class _Stub:
    """The little of a Run that a comparison reads."""

    def __init__(self, label, seed, value):
        self.label, self.seed, self.value, self.run_id = label, seed, value, f"{label}-s{seed}"
        self.display_label = label

    def final(self, metric):
        return self.value


# ------------------------------------------------------------------------ edge of stability
def test_edge_of_stability_for_heavy_ball_nesterov_and_svag():
    assert sharpness.edge(0.1) == pytest.approx(20.0)
    assert sharpness.edge(0.1, 0.9) == pytest.approx(2 * 1.9 / 0.1)
    assert sharpness.edge(0.1, 0.9, nesterov=True) == pytest.approx(2 * 1.9 / (0.1 * 2.8))
    assert sharpness.edge(0.1, svag=4) == pytest.approx(2 / 0.025)  # SVAG steps at η/l


def test_stability_uses_the_epochs_scheduled_lr_and_momentum_unless_the_run_logged_it(tmp_path):
    lrs = [0.1, 0.1, 0.02, 0.02]
    rid = "m-s0"
    events = epoch_events(rid, train_loss=[1, 0.8, 0.6, 0.5], train_acc=[0.5] * 4, val_loss=[1] * 4, val_acc=[0.5] * 4,
                          lr=lrs, batch_size=[32] * 4)
    events += monitor_events(rid, "sharpness", {1: {"lambda_max": 10.0}, 3: {"lambda_max": 30.0, "stability": 0.123}})
    make_run(tmp_path / "g", rid, config_yaml("m", lr=0.1, batch_size=32, momentum=0.5), events=events)
    (group,) = loading.load_groups(tmp_path)
    s = sharpness.stability_series(group.runs[0])
    assert s.epochs.tolist() == [2.0, 4.0]
    assert s.values[0] == pytest.approx(10.0 * lrs[1] / (2 * 1.5))  # event epoch 1 = the second epoch's η
    assert s.values[1] == pytest.approx(0.123)  # logged by a newer monitor: taken as is


def test_sharpness_figures_draw_the_edge_for_every_eta(report):
    for kind in ("sharpness_vs_loss", "sharpness_trajectory"):
        ax = report[4][f"seeds/{kind}"].axes[0]
        levels = sorted({round(float(line.get_ydata()[0]), 6) for line in ax.lines
                         if len(set(np.asarray(line.get_ydata(), dtype=float))) == 1 and line.get_linestyle() == "--"})
        assert levels == sorted(round(sharpness.edge(lr), 6) for lr in {lr for lr, _ in GRID}), kind
        labels = {t.get_text() for t in ax.texts}
        assert {f"η={lr:g}: {sharpness.edge(lr):.3g}" for lr, _ in GRID} <= labels


def test_every_sharpness_table_has_the_stability_and_a_cap_verdict(report):
    text = report[3]["seeds"]
    assert "stability at the end" in text and "final stability" in text and "stability at loss" in text
    assert text.count("the stability cap") + text.count("Stability cap:") >= 2
    lr, bs = GRID[0]
    final = [lam_of(lr, bs, loss_of(lr, bs, s, EPOCHS - 1)) * lr / 2 for s in SEEDS]
    est = stats.mean_ci(final)
    row = next(line for line in text.splitlines() if line.startswith(f"| `lr{lr:g}-bs{bs}` | {eta_over_s(lr / bs)} | 0, 1, 2 |"))
    assert row.endswith(f"| {est.mean:.3g} [{est.lo:.3g}, {est.hi:.3g}] (n=3) |")


def test_cap_verdict_names_the_flatter_half_and_whether_it_sits_at_the_edge():
    v = sharpness.cap_verdict({"a": (1.0, 0.95), "b": (2.0, 0.5), "c": (5.0, 0.2), "d": (9.0, 0.1)})
    assert v.flatter == ["a", "b"] and v.stability == [0.95, 0.5] and v.at_edge == 1
    assert sharpness.cap_verdict({"a": (1.0, 0.95)}) is None


# ----------------------------------------------------------------------------------- warnings
def test_a_schedule_that_never_changed_within_the_epochs_run_is_warned_about(tmp_path):
    cyclic = {"lr_schedule": {"kind": "cyclic_discrete", "low": 0.2, "high": 1.0, "stage": 5}}
    for epochs, state, rid in ((3, "completed", "short-s0"), (10, "running", "long-s0")):
        make_run(tmp_path / "g", rid, config_yaml("e3", lr=0.1, batch_size=32, epochs=epochs, **cyclic), state=state,
                 events=epoch_events(rid, train_loss=[1.0] * 3, train_acc=[0.5] * 3, val_loss=[1.0] * 3,
                                     val_acc=[0.5] * 3, lr=[0.1] * 3, batch_size=[32] * 3))
    make_run(tmp_path / "g", "constant-s0", config_yaml("e3", lr=0.1, batch_size=32, epochs=3))
    (group,) = loading.load_groups(tmp_path)
    warnings = checks.schedule_warnings(group.runs)
    assert len(warnings) == 2
    short = next(w for w in warnings if "`short-s0`" in w)
    assert "learning-rate schedule `cyclic_discrete` never changed within the 3 epochs run" in short
    assert "it never changes within the configured 3 epochs" in short
    long = next(w for w in warnings if "`long-s0`" in w)
    assert "its first change comes in epoch 6" in long  # stage 5: epochs 1–5 high, the 6th low
    assert "constant-s0" not in " ".join(warnings)


def test_very_different_end_losses_are_warned_about_at_the_top_and_returned(tmp_path):
    for lr, loss in ((0.01, 1.5), (0.02, 0.9), (0.16, 0.02)):
        rid = f"lr{lr:g}-bs32-s0"
        make_run(tmp_path / "g", rid, config_yaml("e1", lr=lr, batch_size=32), summary={"loss": loss, "val_accuracy": 0.5})
    rep = build.build_report(tmp_path, tmp_path / "out")
    (warning,) = rep.warnings
    assert warning.startswith("g: the runs ended at very different training losses, from 0.02 (`lr0.16-bs32`) "
                              f"to 1.5 (`lr0.01-bs32`), a factor of {1.5 / 0.02:.0f}")
    text = (tmp_path / "out" / "g" / "report.md").read_text()
    assert text.index("> **Warning:** the runs ended at very different") < text.index("Experiment `e1`")
    close = checks.loss_spread_warnings([r for r in loading.load_groups(tmp_path)[0].runs if r.run_id != "lr0.16-bs32-s0"])
    assert close == []  # 1.5 / 0.9 is within the factor checks.LOSS_SPREAD


def test_cli_prints_the_warnings_and_writes_every_format(tmp_path):
    """In a fresh interpreter, which must not import TensorFlow, Keras or Textual for a report (the
    report package reads files only; this process is the suite's check of that for the command)."""
    from tfminima.cli import main

    for lr, loss in ((0.01, 1.5), (0.16, 0.02)):
        make_run(tmp_path / "g", f"lr{lr:g}-bs32-s0", config_yaml("e1", lr=lr, batch_size=32, figures=["eta_over_s"]),
                 summary={"loss": loss, "val_accuracy": 0.5 + lr})
    code = ("import json, sys; from tfminima.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'textual'}))); "
            "sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code,
                          "report", str(tmp_path / "g"), "--out", str(tmp_path / "out"), "--format", "png,pdf,svg"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert "report written to" in out.stdout
    assert "warning: g: the runs ended at very different training losses" in out.stderr
    for fmt in ("png", "pdf", "svg"):
        assert (tmp_path / "out" / "g" / f"eta_over_s.{fmt}").stat().st_size > 1000
    assert (tmp_path / "out" / "g" / "eta_over_s.svg").read_text().lstrip().startswith("<?xml")
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "(g/eta_over_s.png)" in text and ".pdf)" not in text and ".svg)" not in text  # the first format is linked
    assert "## g" in text
    assert main(["report", str(tmp_path / "g"), "--format", "png,pdff"]) == 2


def test_formats_are_checked_with_the_nearest_valid_one():
    assert parse_formats("PNG, pdf,png") == ("png", "pdf")
    with pytest.raises(ValueError, match="did you mean 'pdf'"):
        parse_formats("pdff")
    with pytest.raises(ValueError, match="choose from png, pdf, svg"):
        parse_formats("")


# ----------------------------------------------------------------------------------- analyses
def test_analyze_results_and_interpolations_appear_in_the_report(tmp_path):
    rid = "lr0.1-bs32-s0"
    run = make_run(tmp_path / "g", rid, config_yaml("x", lr=0.1, batch_size=32, momentum=0.9, figures=["curves"]),
                   events=epoch_events(rid, train_loss=[1, 0.5], train_acc=[0.5, 0.6], val_loss=[1, 1],
                                       val_acc=[0.5, 0.5], lr=[0.1, 0.05], batch_size=[32, 32]))
    (run / "analysis").mkdir()
    res = {"run_id": rid, "epochs_done": 2, "samples": 512, "eigenvalues": [7.5, 3.25, 1.5], "trace": 42.0,
           "trace_stderr": 1.25, "eta_over_s": 0.1 / 32}
    (run / "analysis" / "hessian-epoch-2.json").write_text(json.dumps(res))
    interp = {"run_a": rid, "run_b": rid, "alphas": [-1.0, 0.0, 1.0, 2.0], "train_loss": [2.0, 0.5, 0.5, 2.0]}
    (tmp_path / "g" / "analysis").mkdir()
    (tmp_path / "g" / "analysis" / f"interpolation--{rid}--{rid}.json").write_text(json.dumps(interp))
    rep = build.build_report(tmp_path / "g", tmp_path / "out")
    text = rep.path.read_text()
    stability = 7.5 * 0.05 / (2 * 1.9)  # the η of the second epoch, β = 0.9
    assert (f"| `{rid}` | 2 | 7.5 | 7.5, 3.25, 1.5 | 42 ± 1.2 | 512 | {stability:.3g} | "
            "`analysis/hessian-epoch-2.json` |") in text
    assert "### Interpolation between minima" in text and (tmp_path / "out" / "g" / "interpolation.png").exists()


# ----------------------------------------------------------------------------------- legends
def _kept_figures(runs: Path, out: Path) -> dict[str, object]:
    """Every figure of the groups under ``runs``, drawn but not written: the checks here draw each figure
    on its canvas themselves (writing the PNGs, tested in test_report, was half the CPU)."""
    figs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "save", lambda fig, stem, formats=("png",): stem.with_suffix(f".{formats[0]}"))
        for group in loading.load_groups(runs):
            kept = {}
            build.report_group(group, out / group.name, kept=kept)
            figs.update({f"{group.name}/{k}": v for k, v in kept.items()})
    return figs


def _build_eta_over_s_groups(runs: Path) -> None:
    """Groups g3 (a few η/S values: a discrete key) and g<DISCRETE_RATIOS + 2> (many: a colour bar)."""
    for n in (3, DISCRETE_RATIOS + 2):
        for i in range(n):
            bs = 16 * 2**i
            make_run(runs / f"g{n}", f"lr0.1-bs{bs}-s0",
                     config_yaml("x", lr=0.1, batch_size=bs, train_size=16 * 2**n, figures=["eta_over_s"]),
                     summary={"val_accuracy": 0.5 + 0.01 * i})


@pytest.fixture(scope="module")
def every_figure(report, tmp_path_factory):
    """Every figure kind (test_report's groups, the η/S key groups, the seed and pair groups), each drawn
    once on its canvas: the legend, key and tick checks below all read these same drawn figures."""
    import test_report

    runs = tmp_path_factory.mktemp("figruns")
    for name, make in test_report.GROUPS.items():
        make(runs / name)
    _build_eta_over_s_groups(runs)
    figs = _kept_figures(runs, runs.parent / "figout") | report[4]
    for fig in figs.values():
        fig.canvas.draw()
    return figs


def test_no_legend_covers_data_in_any_figure(every_figure):
    assert {k.split("/")[1] for k in every_figure} >= set(build.SECTIONS)  # every kind is checked
    problems = {name: p for name, fig in every_figure.items() if (p := legend_problems(fig, drawn=True))}
    assert problems == {}


def test_legend_check_catches_a_legend_over_data():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="diagonal")
    ax.plot([0, 1], [0.95, 0.95], label="top")
    ax.legend(loc="upper right")
    assert any("top" in p for p in legend_problems(fig))


def test_a_few_eta_over_s_values_get_a_discrete_key_and_many_a_colour_bar(every_figure):
    for n in (3, DISCRETE_RATIOS + 2):
        fig = every_figure[f"g{n}/eta_over_s"]
        bars = [ax for ax in fig.axes if ax.get_ylabel() == ETA_S_LABEL]
        texts = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
        if n <= DISCRETE_RATIOS:
            assert not bars and {eta_over_s(0.1 / (16 * 2**i)) for i in range(n)} <= texts
        else:
            assert len(bars) == 1 and ETA_S_LABEL not in texts


def test_every_eta_over_s_axis_and_colour_bar_writes_the_one_format(every_figure):
    """Tick labels of η/S axes (the η/S figure, the schedule rows) and of the η/S colour bar as the
    legends, tables, CLI and TUI write η/S (3.12e-4), not 0.000313 beside a legend saying 3.12e-4."""
    checked = []
    for name, fig in every_figure.items():
        for ax in fig.axes:
            for which, axis, label in (("x", ax.xaxis, ax.get_xlabel()), ("y", ax.yaxis, ax.get_ylabel())):
                if not label.startswith(("η/S", "base η/S")):
                    continue
                shown = [t.get_text() for t in axis.get_ticklabels(which="both") if t.get_text()]
                assert shown and all(t == eta_over_s(float(t)) for t in shown), (name, label, shown)
                checked.append((name, which, label))
    assert {label for *_, label in checked} >= {ETA_S_LABEL, "η/S schedule"}, checked
    assert (f"g{DISCRETE_RATIOS + 2}/eta_over_s", "y", ETA_S_LABEL) in checked, checked  # the colour bar


def test_each_later_pair_is_tested_against_the_first_pair(tmp_path):
    """E3: the cyclic pair (both forms, every seed pooled) against the constant pair, unpaired, with its test."""
    tests = {"const-lr": [0.60, 0.61, 0.62], "const-bs": [0.61, 0.62, 0.60],
             "cyclic-lr": [0.66, 0.67, 0.68], "cyclic-bs": [0.67, 0.66, 0.69]}
    lrs = {"const-lr": (0.032, 32), "const-bs": (0.16, 160), "cyclic-lr": (0.16, 32), "cyclic-bs": (0.161, 32)}
    for label, values in tests.items():
        lr, bs = lrs[label]
        for seed, test in zip(SEEDS, values):
            rid = f"{label}-s{seed}"
            make_run(tmp_path / "g", rid, config_yaml("e3_schedules_cpu", lr=lr, batch_size=bs, seed=seed,
                                                      figures=["paired_curves"],
                                                      pairs=[["const-lr", "const-bs"], ["cyclic-lr", "cyclic-bs"]]),
                     label=label, summary={"test_accuracy": test, "val_accuracy": test},
                     events=_events(rid, lr, bs, seed, val=test, sharp=False))
    (group,) = loading.load_groups(tmp_path / "g")
    build.report_group(group, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text().split("Do the schedules differ?")[1]
    diff = stats.compare_means(tests["cyclic-lr"] + tests["cyclic-bs"], tests["const-lr"] + tests["const-bs"])
    row = next(line for line in text.splitlines() if line.startswith("| schedules differ |"))
    assert "`cyclic-lr + cyclic-bs` | `const-lr + const-bs`" in row and "unpaired (6 vs 6 values)" in row
    assert f"+{diff.diff * 100:.2f} pp [+{diff.lo * 100:.2f}, +{diff.hi * 100:.2f}]" in row
    assert "**beyond seed noise**" in row and diff.pvalue < 0.05
