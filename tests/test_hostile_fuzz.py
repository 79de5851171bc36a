"""A fuzz campaign against every reader of run folders: the report, the resume reader, analyze's checkpoint
choice, the TUI store and app.

Each example breaks one to three files of a valid group of runs (hostile_support: bytes that are not
UTF-8, JSON that is not an object, wrong types, NaN / infinite / huge numbers, deep nesting, files
over the limits, a directory or FIFO or symbolic-link loop where a file should be, a file missing)
and feeds the folder to the readers. None may raise anything but its documented errors, hang,
print a traceback or write inside the folder; a run whose status, summary or config cannot be read
must show as ``corrupt`` naming the file, and a metrics line that is no event must be skipped with a
warning naming its file and line. The default suite runs a fixed (derandomized) sample in seconds;
``pytest -m slow tests/test_hostile_fuzz.py`` runs a larger random one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import shutil
from pathlib import Path

import pytest
from hostile_support import (
    GROUP,
    RUNS,
    VITAL,
    build_group,
    corruptions,
    every_kind,
    tree,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tui_support import wait_for

from tfminima import analysis, config, resume, runfiles
from tfminima.report import NoReadableRunsError, build_report, loading
from tfminima.rundir import RunDir
from tui.app import create_app
from tui.screens.modals import ErrorModal, RunDetailModal
from tui.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def fuzz_settings(examples: int, derandomize: bool = True):
    return settings(max_examples=examples, derandomize=derandomize, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


# 30 examples (was 45, the suite's largest in-process cost after the figures): every corruption kind already
# meets every reader in test_every_kind_of_corruption_once, and the report over every kind of a run's file in
# the CLI test below; the default sample adds combinations of one to three breaks (the slow test: 500).
DEFAULT = fuzz_settings(30)
EXAMPLES = itertools.count()
SLOW = fuzz_settings(500, derandomize=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template") / "runs"
    build_group(root)
    return root


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    """Limits small enough that a file over them costs nothing to make; also exercises the overrides."""
    monkeypatch.setenv("TFMINIMA_MAX_METRICS_BYTES", str(1 << 20))
    monkeypatch.setenv("TFMINIMA_MAX_LINE_BYTES", str(64 << 10))
    monkeypatch.setenv("TFMINIMA_MAX_RUN_FILE_BYTES", str(256 << 10))
    monkeypatch.setenv("TFMINIMA_MAX_CONFIG_BYTES", str(256 << 10))


RENAMED: dict[Path, dict[str, str]] = {}  # runs folder -> original run id -> its hostile new name


def corrupted(template: Path, where: Path, breaks) -> Path:
    runs = where / "runs"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    shutil.copytree(template, runs, symlinks=True)
    names = RENAMED[runs] = {}
    for c in sorted(breaks, key=lambda c: c.kind == "rename"):  # files first, then the folders' names
        c.apply(runs / GROUP)
        if c.kind == "rename" and c.run_id not in names and not (runs / GROUP / c.run_id).exists():
            names[c.run_id] = c.text
    return runs


def check_readers(runs: Path, breaks, *, report: bool) -> None:
    """Every reader on ``runs``: documented outcomes only, nothing written inside ``runs``."""
    before = tree(runs)
    name = RENAMED.get(runs, {})
    last = {(c.run_id, c.file): c for c in breaks if c.kind != "rename"}  # a later break of a file replaces an earlier
    vital = {(name.get(c.run_id, c.run_id), c.file) for c in last.values() if c.vital}
    broken_vital = {(name.get(c.run_id, c.run_id), c.file) for c in breaks if c.file in VITAL and c.run_id}

    # the report's loader: every run is a record; a vital file broken beyond reading makes it corrupt
    groups = loading.load_groups(runs)
    runs_read = {r.run_id: r for g in groups for r in g.runs}
    for run_id, file in vital:
        if run_id in runs_read:  # a run whose status.json or config.yaml is gone is no run directory
            r = runs_read[run_id]
            assert r.state == runfiles.CORRUPT and file in r.error, (file, r.state, r.error)
    for r in runs_read.values():
        if r.state == runfiles.CORRUPT:
            assert any((r.run_id, f) in broken_vital for f in VITAL if f in r.error), r.error
            assert not r.plotted
        else:
            assert r.spec is not None
    warnings = [w for g in groups for w in g.warnings]
    for c in breaks:
        if c.kind == "bad_line" and name.get(c.run_id, c.run_id) in runs_read and c.file == "metrics.jsonl":
            events = runfiles.read_events(runs / GROUP / name.get(c.run_id, c.run_id) / "metrics.jsonl")
            if events.skipped_count:
                assert any("metrics.jsonl:" in w or "lines skipped" in w for w in warnings), warnings

    # the TUI's store agrees on which runs are corrupt, and its rows build
    store = RunStore(runs)
    store.poll(force_scan=True)
    store.poll(force_scan=True)
    rows = {row.run_id: row for row in store.rows()}
    for run_id, r in runs_read.items():
        assert (rows[run_id].state == runfiles.CORRUPT) == (r.state == runfiles.CORRUPT), (run_id, rows[run_id], r.error)
        if r.state == runfiles.CORRUPT:
            assert rows[run_id].error and any(f in rows[run_id].error for f in VITAL)

    # the resume reader: the runs to resume, or a config error (file:line), a refusal naming the file that
    # cannot be read, or nothing to resume
    try:
        targets = resume.targets(runs / GROUP)
        assert all(t.spec is not None for t in targets)
    except (config.ConfigError, FileNotFoundError, resume.ResumeRefused):
        pass

    # analyze's reading, up to the model it builds: each run's config and the checkpoint ``latest``
    # names, checked; or one of the errors the CLI prints as one line (a config error, a corrupt file)
    for run_dir in sorted(p for p in (runs / GROUP).iterdir() if p.is_dir() and p.name != "analysis"):
        try:
            config.load(run_dir / "config.yaml")
            assert analysis.checkpoint_path(RunDir(run_dir), None).parent == run_dir / "checkpoints"
        except (config.ConfigError, runfiles.CorruptFile, FileNotFoundError):
            pass

    # the report: written outside the runs folder, or refused when no run is readable
    if report:
        out = runs.parent / "report"
        try:
            rep = build_report(runs, out)
            assert rep.path.is_file() and rep.path.parent == out
        except NoReadableRunsError as err:
            assert err.warnings
    assert tree(runs) == before, "a reader wrote into the runs folder"
    assert sorted(p.name for p in runs.parent.iterdir()) in (["runs"], ["report", "runs"])


@DEFAULT
@given(data=st.data())
def test_readers_survive_corrupt_run_folders(template, tmp_path_factory, data):
    """Random combinations of breaks through every reader (the whole report every tenth example: three)."""
    breaks = data.draw(st.lists(corruptions(), min_size=1, max_size=3), label="breaks")
    where = tmp_path_factory.mktemp("fuzz")
    runs = corrupted(template, where, breaks)
    check_readers(runs, breaks, report=next(EXAMPLES) % 10 == 0)  # a whole report is slow: every tenth


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_readers_survive_corrupt_run_folders_long(template, tmp_path_factory, data):
    breaks = data.draw(st.lists(corruptions(), min_size=1, max_size=4), label="breaks")
    runs = corrupted(template, tmp_path_factory.mktemp("fuzz"), breaks)
    check_readers(runs, breaks, report=next(EXAMPLES) % 5 == 0)


@pytest.mark.parametrize("corruption", every_kind(), ids=lambda c: f"{c.file}-{c.kind}")
def test_every_kind_of_corruption_once(template, tmp_path, corruption):
    runs = corrupted(template, tmp_path / "case", [corruption])
    check_readers(runs, [corruption], report=False)


def gathered(template: Path, tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """One group holding, for every kind of corruption of a run's file, a copy of that run broken that way."""
    group = tmp_path / "runs" / "all"
    cases = {}
    for i, c in enumerate(every_kind()):
        if c.run_id is None:
            continue
        name = f"case{i:02d}-{c.file.replace('/', '_')}-{c.kind}"
        shutil.copytree(template / GROUP / c.run_id, group / name)
        cases[name] = dataclasses.replace(c, run_id=name)
        cases[name].apply(group)
    # a group whose path reads as markup ("x[/y]") and one named like a TeX formula
    for odd in ("x[/y]", "$x^{$"):
        shutil.copytree(template / GROUP / sorted(RUNS)[0], group.parent / odd / sorted(RUNS)[0])
    return group.parent, cases


# ----------------------------------------------------------------------------- the command line
def test_cli_report_on_a_corrupt_folder_prints_warnings_and_exits_0(template, tmp_path, cli_here, recwarn):
    """A run broken in each way, all in one group, through ``tfminima report`` (in this process: what the
    command prints and returns is tested, not a process). A hostile name (a tab, a huge label) is drawn
    without matplotlib's warnings, which would print Python warning lines among the report's messages."""
    runs, cases = gathered(template, tmp_path)
    before = tree(runs)
    r = cli_here("report", runs, "--out", tmp_path / "rep")
    drawn = [str(w.message) for w in recwarn if "Glyph" in str(w.message) or "constrained_layout" in str(w.message)]
    assert not drawn, drawn
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "report written to" in r.stdout
    for name, c in cases.items():
        if c.vital:
            assert f"{name}: corrupt: {c.file}" in r.stderr
    assert "metrics.jsonl:" in r.stderr and "skipped" in r.stderr
    assert "**corrupt** (not drawn)" in (tmp_path / "rep" / "REPORT.md").read_text()
    assert tree(runs) == before


def test_cli_report_exits_1_when_no_run_is_readable(template, tmp_path, cli_here):
    runs = tmp_path / "runs"
    shutil.copytree(template, runs)
    for run_id in RUNS:
        (runs / GROUP / run_id / "status.json").write_bytes(b"\xff\xfe not json")
    r = cli_here("report", runs)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("corrupt: status.json: is not UTF-8 text") == len(RUNS)
    assert "no readable run" in r.stderr and not (runs / "report").exists()


def test_cli_report_replaces_fifos_where_it_writes_instead_of_waiting(template, tmp_path, cli_here):
    """Every file the report writes is written beside and renamed into place: a FIFO left where
    REPORT.md, a group's report.md or a figure goes is replaced (writing into it would block forever)."""
    import os

    runs = tmp_path / "runs"
    shutil.copytree(template, runs)
    out = tmp_path / "rep"
    (out / GROUP).mkdir(parents=True)
    fifos = [out / "REPORT.md", out / GROUP / "report.md", out / GROUP / "curves.png"]
    for fifo in fifos:
        os.mkfifo(fifo)
    r = cli_here("report", runs, "--out", out)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert all(f.is_file() for f in fifos)
    assert (out / GROUP / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert not [p for p in out.rglob(".*.tmp*")]  # no temporary file left behind


# ----------------------------------------------------------------------------- the TUI
async def _open_app(runs: Path):
    """The app on ``runs``: it polls a few rounds, shows every screen and the details of a corrupt run."""
    app = create_app(runs, start="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app._poller is not None and app._poller.is_finished
                              and app.store.version > 0)
        for _ in range(3):  # a few more poll rounds: nothing may come back as an error
            app.poll_now()
            assert await wait_for(pilot, lambda: app._poller.is_finished)
        assert not isinstance(app.screen, ErrorModal) and not app._poll_paused
        rows = {r.key: r for r in app.rows()}
        app.selected = set(rows)  # Monitor and Compare draw every run, hostile names included
        corrupt = [r for r in rows.values() if r.state == runfiles.CORRUPT]
        if corrupt:  # the details of a corrupt run open and close
            table = app.screen.table
            app.redraw()
            assert await wait_for(pilot, lambda: corrupt[0].key in table._order)  # drawn at the next redraw
            table.move_cursor(row=table._order.index(corrupt[0].key))
            await pilot.pause()
            app.screen.action_details()
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunDetailModal))

            def text() -> str:
                return " ".join(str(s.content) for s in app.screen.query("Static"))

            assert await wait_for(pilot, lambda: "corrupt" in text()) and any(f in text() for f in VITAL)
            await pilot.press("escape")
            assert await wait_for(pilot, lambda: not isinstance(app.screen, RunDetailModal))
        for key in ("3", "4", "2"):  # every screen that shows runs draws them
            await pilot.press(key)
            await pilot.pause(0.2)
            assert not isinstance(app.screen, ErrorModal)
        assert app.return_code is None
    return rows


def test_tui_shows_corrupt_runs_and_stays_up(template, tmp_path):
    runs, cases = gathered(template, tmp_path)
    before = tree(runs)
    rows = asyncio.run(_open_app(runs))
    vital = {name: c for name, c in cases.items() if c.vital}
    assert vital
    for name, c in vital.items():
        row = rows[f"all/{name}"]
        assert row.state == runfiles.CORRUPT and c.file in row.error, (name, row)
    assert tree(runs) == before


def _tui_on_fuzzed_folder(template, tmp_path_factory, breaks):
    runs = corrupted(template, tmp_path_factory.mktemp("tui"), breaks)
    before = tree(runs)
    asyncio.run(_open_app(runs))
    assert tree(runs) == before


@fuzz_settings(3)
@given(breaks=st.lists(corruptions(), min_size=1, max_size=3))
def test_tui_app_on_fuzzed_folders(template, tmp_path_factory, breaks):
    _tui_on_fuzzed_folder(template, tmp_path_factory, breaks)


@pytest.mark.slow
@fuzz_settings(40, derandomize=False)
@given(breaks=st.lists(corruptions(), min_size=1, max_size=4))
def test_tui_app_on_fuzzed_folders_long(template, tmp_path_factory, breaks):
    _tui_on_fuzzed_folder(template, tmp_path_factory, breaks)
