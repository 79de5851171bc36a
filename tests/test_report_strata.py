"""Conditions that share a label are told apart by the keys that differ.

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
