"""Conditions that share a label are told apart by the keys that differ, and comparisons across η/S are made
within each value of the other swept keys (E4: label noise), never across them.

Hand-built run directories with known numbers (no training); every expected value is computed here from the
constructed inputs.
"""

from __future__ import annotations

import itertools

import pytest
from report_support import config_yaml, epoch_events, make_run

from tfminima.report import build, loading, seeds, stats
from tfminima.report.markdown import difference

SEEDS = (0, 1, 2)


def _run(group, rid, *, lr, bs, seed, val, label=None, **cfg):
    make_run(group, rid, config_yaml("g", lr=lr, batch_size=bs, seed=seed, **cfg), label=label,
             summary={"val_accuracy": val, "loss": 1.0},
             events=epoch_events(rid, train_loss=[1.0], train_acc=[0.5], val_loss=[1.0], val_acc=[val],
                                 lr=[lr], batch_size=[bs]))


# ------------------------------------------------------------------------------ item: colliding labels
def test_conditions_sharing_a_label_are_named_by_the_keys_that_differ(tmp_path):
    for (label, lr, bs), n, seed in itertools.product([("b1", 0.032, 16), ("b2", 0.064, 32)], (1000, 4000), (0, 1)):
        _run(tmp_path / "e5", f"{label}-n{n}-s{seed}", lr=lr, bs=bs, seed=seed, val=0.5, label=label, train_size=n,
             figures=["curves"])
    _run(tmp_path / "e5", "alone-s0", lr=0.1, bs=32, seed=0, val=0.5, label="alone", figures=["curves"])
    (group,) = loading.load_groups(tmp_path / "e5")
    names = sorted(c.name for c in seeds.conditions(group.runs))
    assert names == ["alone", "b1 N=1000", "b1 N=4000", "b2 N=1000", "b2 N=4000"]
    out = tmp_path / "out"
    build.report_group(group, out)
    table = (out / "report.md").read_text().split("### Conditions (means over seeds)")[1]
    for name in names[1:]:
        assert f"| `{name}` |" in table
    assert build.resolve_condition(group, "b1") == "'b1' is ambiguous (b1 N=1000, b1 N=4000)"


def test_several_differing_keys_are_all_named(tmp_path):
    for noise, n in ((0.25, 1000), (0.5, 4000)):
        _run(tmp_path / "g", f"x-{noise}-{n}", lr=0.1, bs=32, seed=0, val=0.5, label="x", train_size=n,
             label_noise=noise)
    (group,) = loading.load_groups(tmp_path / "g")
    assert sorted(r.name for r in group.runs) == ["x noise=25% N=1000", "x noise=50% N=4000"]  # keys in dotted-name order


# ------------------------------------------------------------------------------ item: η/S within strata
NOISE = (0.25, 0.5)
GRID = [(0.05, 512), (0.2, 512), (0.05, 32), (0.2, 32)]  # η/S 9.77e-5, 3.91e-4, 1.56e-3, 6.25e-3


def val_of(lr, bs, noise, seed):
    """Accuracy rising with η/S, far lower at 50 % noise; seeds shift it a little."""
    return (0.6 if noise == 0.25 else 0.35) + 5.0 * lr / bs + 0.01 * seed


@pytest.fixture(scope="module")
def e4(tmp_path_factory):
    group = tmp_path_factory.mktemp("strata") / "e4"
    for (lr, bs), noise, seed in itertools.product(GRID, NOISE, SEEDS):
        _run(group, f"lr{lr:g}-bs{bs}-noise{noise:g}-s{seed}", lr=lr, bs=bs, seed=seed, val=val_of(lr, bs, noise, seed),
             label_noise=noise, figures=["eta_over_s"])
    (g,) = loading.load_groups(group)
    out = group.parent / "out"
    kept = {}
    build.report_group(g, out, kept=kept)
    return g, (out / "report.md").read_text(), kept


def test_strata_are_the_values_of_the_keys_besides_the_noise_scale(e4):
    g, _, _ = e4
    strata = seeds.strata(seeds.conditions(g.runs))
    assert [name for name, _ in strata] == ["noise=25%", "noise=50%"]
    for (name, conds), noise in zip(strata, NOISE):
        assert len(conds) == len(GRID) and all(c.first.label_noise == noise for c in conds)
    one = [c for c in seeds.conditions(g.runs) if c.first.label_noise == 0.25]
    assert seeds.strata(one) == [("", one)]


def test_eta_over_s_comparisons_stay_within_each_noise_level(e4):
    g, text, kept = e4
    section = text.split("### End-point metrics against η/S")[1].split("\n### ")[0]
    assert "noise=25%" in section and "noise=50%" in section
    # No comparison row pairs a 25 % run with a 50 % run.
    rows = [line for line in section.splitlines() if line.startswith("| equal η/S") or " differs from " in line]
    assert rows and not [r for r in rows if "noise0.25" in r and "noise0.5" in r]
    # Each neighbouring η/S step is tested within its level, with the numbers of that level's runs only.
    for noise in NOISE:
        for (lo, hi) in itertools.pairwise(sorted(GRID, key=lambda p: p[0] / p[1])):
            a = [val_of(*hi, noise, s) for s in SEEDS]
            b = [val_of(*lo, noise, s) for s in SEEDS]
            assert difference(stats.compare_means(a, b), "val_accuracy") in section
    # The correlation is over the four conditions of one level, not the eight.
    assert section.count("| final val accuracy | η/S | 1.00") == 2
    # The figure's panels give ρ within each level too.
    titles = [ax.get_title() for ax in kept["eta_over_s"].axes if ax.get_title()]
    assert titles and all("noise=25% 1.00 (n=4)" in t and "noise=50% 1.00 (n=4)" in t for t in titles)
