"""REPRODUCTION.md and the committed run files cannot drift apart.

A section of REPRODUCTION.md that rests on committed data names its folder with a marker line
``<!-- data: <group> -->`` (the folder ``reproduction/<group>/``). Inside such a section every number
quoted from the data is written in backticks, e.g. `58.85 [58.70, 59.00]` or `0.95`; each one must be a
cell of a table (or one number of a cell) of the report that the report package regenerates from
``reproduction/<group>/`` now, or an estimate with its interval or a bold number of its text (E8's fit
and B_simple are sentences, not table cells). The committed ``report/<group>/report.md`` must hold the
same tables, and every run folder holds only the small run files (no checkpoints, no TensorBoard events).
No TensorFlow: the report package reads files only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tfminima.report import build, load_groups, report_group
from tfminima.report.loading import slug

ROOT = Path(__file__).resolve().parent.parent
REPRODUCTION = ROOT / "reproduction"
DOC = ROOT / "REPRODUCTION.md"
RUN_FILES = {"config.yaml", "status.json", "summary.json", "metrics.jsonl"}

MARKER = re.compile(r"<!-- data: ([A-Za-z0-9_.-]+) -->")
QUOTE = re.compile(r"`([^`\n]+)`")
# A quoted number: anything in backticks that starts with a digit (after an optional sign, ASCII or the
# report's −). Anything else in backticks (a run id, a key) is code, not a quote.
NUMERIC_QUOTE = re.compile(r"^[−+-]?\d")
NUMBER = re.compile(r"[−+-]?\d+(?:\.\d+)?(?:e[−+-]?\d+)?%?")
BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
STATED = re.compile(r"(?<![\d.])\d+(?:\.\d+)? \[\d+(?:\.\d+)?, \d+(?:\.\d+)?\]")  # 266 [244, 288]


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) for every ``## `` section of the document."""
    parts = re.split(r"^## ", text, flags=re.M)
    return [(p.splitlines()[0], p) for p in parts[1:]]


def _data_sections() -> list[tuple[str, list[str], str]]:
    return [(head, MARKER.findall(body), body) for head, body in _sections(DOC.read_text(encoding="utf-8"))
            if MARKER.search(body)]


def _table_rows(markdown: str) -> list[str]:
    """The table lines of a report (header, separator and body rows), in order."""
    return [line.rstrip() for line in markdown.splitlines() if line.startswith("|")]


def _cells(markdown: str) -> set[str]:
    """Every quotable piece of the report's tables: a whole cell, the cell without its ``(n=k)``, each number."""
    out: set[str] = set()
    for row in _table_rows(markdown):
        for cell in row.strip("|").split("|"):
            cell = cell.strip().strip("`")
            if not cell or set(cell) <= set("-: "):
                continue
            out.add(cell)
            out.add(re.sub(r" \(n=\d+\)$", "", cell))
            out.update(NUMBER.findall(cell))
    return out


def _stated(markdown: str) -> set[str]:
    """What the report's text (not its tables) states: an estimate with its interval, a number in bold."""
    text = "\n".join(line for line in markdown.splitlines() if not line.startswith("|"))
    out = set(STATED.findall(text))
    for bold in BOLD.findall(text):
        out.update(NUMBER.findall(bold))
    return out


def _groups() -> list[Path]:
    return sorted(p for p in REPRODUCTION.iterdir() if p.is_dir()) if REPRODUCTION.is_dir() else []


def _unsaved(fig, stem: Path, formats) -> Path:
    """Stands in for writing a figure: every figure is still drawn, only not rasterised to disk (the
    slow part), and the markdown links the same file name."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return stem.with_suffix(f".{formats[0]}")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> dict[str, str]:
    """report.md of every committed group, rebuilt from its run files into a temporary folder."""
    out = tmp_path_factory.mktemp("reports")
    reports = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "save", _unsaved)
        for folder in _groups():
            groups = load_groups(folder)
            assert len(groups) == 1, f"{folder} must hold exactly one sweep's runs"
            report_group(groups[0], out / folder.name)
            reports[folder.name] = (out / folder.name / "report.md").read_text(encoding="utf-8")
    return reports


def test_every_committed_group_is_cited_and_holds_only_run_files():
    cited = {name for _, names, _ in _data_sections() for name in names}
    for folder in _groups():
        assert folder.name in cited, f"REPRODUCTION.md cites no data from {folder}"
        runs = [p for p in folder.iterdir() if p.is_dir() and p.name not in ("report", "analysis")]
        assert runs, f"{folder} holds no runs"
        for run in runs:
            names = {p.name for p in run.iterdir()}
            assert names == RUN_FILES, f"{run}: {sorted(names ^ RUN_FILES)}"
    for name in cited:
        assert (REPRODUCTION / name).is_dir(), f"REPRODUCTION.md cites reproduction/{name}, which is not committed"


def test_committed_reports_have_the_regenerated_tables(regenerated):
    for name, text in regenerated.items():
        committed = REPRODUCTION / name / "report" / slug(name) / "report.md"
        assert committed.is_file(), f"{committed} missing: run  tfminima report reproduction/{name}"
        assert _table_rows(committed.read_text(encoding="utf-8")) == _table_rows(text), (
            f"{committed} is stale: run  tfminima report reproduction/{name}")


def test_every_number_reproduction_md_quotes_is_in_the_regenerated_tables(regenerated):
    sections = _data_sections()
    assert sections, "REPRODUCTION.md marks no section with committed data"
    for head, names, body in sections:
        cells = set().union(*(_cells(regenerated[n]) | _stated(regenerated[n]) for n in names if n in regenerated))
        quotes = [q for q in QUOTE.findall(MARKER.sub("", body)) if NUMERIC_QUOTE.match(q)]
        assert quotes, f"section '{head}' cites data but quotes no number from it"
        missing = [q for q in quotes if q not in cells]
        assert not missing, f"section '{head}' quotes numbers its regenerated report does not hold: {missing}"
