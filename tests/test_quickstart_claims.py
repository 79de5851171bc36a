"""The README's quickstart table and claims follow from the committed five-seed runs.

``reproduction/quickstart/`` holds the run files of ``tfminima run experiments/quickstart.yaml --set
'sweep.seeds=[0,1,2,3,4]'``. Every number of the README's table must be a cell of the report that the
report package regenerates from them now, and the claims the README makes "for every seed" are checked
seed by seed on the same files. No TensorFlow: the report package reads files only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from tfminima.report import load_groups, report_group
from tfminima.report.sharpness import loss_path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "reproduction" / "quickstart"
README = ROOT / "README.md"
LEVEL = 1.46  # the training loss the README compares at (the report's first equal-loss level)


@pytest.fixture(scope="module")
def group():
    (g,) = load_groups(DATA)
    return g


def _readme_rows() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## What the quickstart shows"):]
    section = section[: section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| η ")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def _report_cells(markdown: str) -> set[str]:
    cells = set()
    for line in markdown.splitlines():
        if line.startswith("|"):
            for cell in line.strip("|").split("|"):
                cell = cell.strip()
                cells.add(cell)
                cells.add(re.sub(r" \(n=\d+\)$", "", cell))
    return cells


def test_readme_table_is_the_regenerated_report(group, tmp_path):
    report = report_group(group, tmp_path / "report")
    cells = _report_cells((tmp_path / "report" / "report.md").read_text(encoding="utf-8"))
    rows = _readme_rows()
    assert len(rows) == 6
    for row in rows:
        for cell in row[1:]:  # the first column names the run in words
            assert cell in cells, f"README quickstart cell {cell!r} is not in the regenerated report"
    assert report is not None


def test_runs_are_five_seeds_of_the_shipped_quickstart(group):
    assert len(group.runs) == 30 and {r.state for r in group.runs} == {"completed"}
    seeds = defaultdict(set)
    for run in group.runs:
        seeds[(run.lr, run.batch_size)].add(run.summary["hparams"]["seed"])
    assert len(seeds) == 6 and all(s == {0, 1, 2, 3, 4} for s in seeds.values())
    for run_dir in DATA.iterdir():
        if run_dir.name != "report":
            assert {p.name for p in run_dir.iterdir()} == {"config.yaml", "status.json", "summary.json", "metrics.jsonl"}


def test_the_headline_holds_for_every_seed(group):
    """Per seed: at training loss 1.46 the highest-η/S runs are flatter than the lowest-η/S runs, equal-η/S
    pairs differ less than the extreme families do, and the highest-η/S runs end with the better
    validation accuracy."""
    by_seed = defaultdict(dict)
    for run in group.runs:
        by_seed[run.summary["hparams"]["seed"]][(run.eta_over_s, run.batch_size)] = run
    for seed, runs in by_seed.items():
        ratios = sorted({k[0] for k in runs})
        lam = {k: loss_path(r).at_loss(LEVEL) for k, r in runs.items()}
        val = {k: r.summary["val_accuracy"] for k, r in runs.items()}
        low = [lam[k] for k in runs if k[0] == ratios[0]]
        high = [lam[k] for k in runs if k[0] == ratios[-1]]
        assert None not in low + high
        assert max(high) < min(low), f"seed {seed}: λ_max at loss {LEVEL}: high η/S {high}, low {low}"
        gap = sum(low) / len(low) - sum(high) / len(high)
        for ratio in ratios:
            pair = [lam[k] for k in runs if k[0] == ratio]
            assert max(pair) - min(pair) < gap, f"seed {seed}, η/S {ratio}: pair {pair} vs family gap {gap}"
        val_low = [val[k] for k in runs if k[0] == ratios[0]]
        val_high = [val[k] for k in runs if k[0] == ratios[-1]]
        assert min(val_high) > max(val_low), f"seed {seed}: val accuracy high {val_high}, low {val_low}"
