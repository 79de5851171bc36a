"""Snapshots of every screen of tfminima-tui on fixture runs (pytest-textual-snapshot).

The fixture (tests/tui_support.py) has fixed numbers and times, and the app is started in the
fixture's folder with relative paths, so nothing machine-specific reaches the pictures.
Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

import time
from pathlib import Path

import pytest
from tui_support import QUICKSTART, build_runs, wait_for

from tui.app import create_app
from tui.widgets.plots import MetricPlot

SELECTED = {"quickstart/lr0.01-bs32-s0", "quickstart/lr0.04-bs128-s0", "quickstart/lr0.16-bs32-s0",
            "memo/lr0.05-bs50-s0"}


@pytest.fixture
def runs_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")  # run details show local times
    time.tzset()
    build_runs(Path("runs"))
    Path("quickstart.yaml").write_text(QUICKSTART)  # the fixture's own copy: experiments/ may change
    yield
    monkeypatch.undo()
    time.tzset()


def app(start=None, config=None):
    return create_app("runs", config_path=config, start=start)


def settle(select=None, then=None):
    """Wait for the poller's first pass, optionally select runs, redraw, run ``then``."""

    async def run_before(pilot):
        a = pilot.app
        assert await wait_for(pilot, lambda: len(a.store.records) >= 8 and a._poller.is_finished)
        # colours go to runs in the order they are first drawn, and the first draws race the poller
        # (live runs are shown before anything is selected): start the picture from a fresh book
        a.colours.assigned.clear()
        if select:
            a.selected = set(select)
        a.redraw()
        await pilot.pause()
        if then:
            await then(pilot)
        await pilot.pause()
        # plots rebuild at most once a second: wait for a deferred rebuild to happen
        assert await wait_for(pilot, lambda: not any(p._pending for p in a.screen.query(MetricPlot)))
        await pilot.pause()

    return run_before


def test_configure(snap_compare, runs_here):
    assert snap_compare(app(config="quickstart.yaml"), terminal_size=(80, 24), run_before=settle())


def test_configure_sweep_preview(snap_compare, runs_here):
    async def sweep(pilot):
        screen = pilot.app.screen
        screen.form.show_section("sweep")
        assert await wait_for(pilot, lambda: screen.query("#plan-runs") and screen.query_one("#plan-runs").row_count == 6)
        assert await wait_for(pilot, lambda: screen.query_one("#plan-schedule DataTable").row_count == 12)

    assert snap_compare(app(config="quickstart.yaml"), terminal_size=(100, 40), run_before=settle(then=sweep))


def test_configure_invalid_value(snap_compare, runs_here):
    async def invalid(pilot):
        form = pilot.app.screen.form
        form.show_section("optimizer")
        assert await wait_for(pilot, lambda: "optimizer.lr" in form.active_rows() and form.row("optimizer.lr").query(".control"))
        form.row("optimizer.lr").control.value = "-0.5"
        form.row("optimizer.momentum").control.value = "1.5"
        assert await wait_for(pilot, lambda: form.row("optimizer.momentum").has_class("-invalid"))

    assert snap_compare(app(config="quickstart.yaml"), terminal_size=(80, 24), run_before=settle(then=invalid))


def test_runs(snap_compare, runs_here):
    assert snap_compare(app(start="runs"), terminal_size=(80, 24), run_before=settle(select=SELECTED))


def test_runs_failed_details(snap_compare, runs_here):
    async def details(pilot):
        screen = pilot.app.screen
        screen.table.move_cursor(row=screen.table._order.index("quickstart/lr0.16-bs128-s0"))
        await pilot.pause()
        screen.action_details()
        assert await wait_for(pilot, lambda: pilot.app.screen is not screen)

    assert snap_compare(app(start="runs"), terminal_size=(100, 30), run_before=settle(then=details))


def test_monitor(snap_compare, runs_here):
    assert snap_compare(app(start="monitor"), terminal_size=(80, 24), run_before=settle(select=SELECTED))


def test_monitor_large(snap_compare, runs_here):
    assert snap_compare(app(start="monitor"), terminal_size=(160, 60), run_before=settle(select=SELECTED))


def test_compare(snap_compare, runs_here):
    assert snap_compare(app(start="compare"), terminal_size=(80, 24), run_before=settle())


def test_compare_large_sharpness(snap_compare, runs_here):
    async def lambda_max(pilot):
        await pilot.press("n", "n", "n")

    assert snap_compare(app(start="compare"), terminal_size=(140, 40), run_before=settle(then=lambda_max))


def test_help(snap_compare, runs_here):
    async def help_screen(pilot):
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: pilot.app.screen.TITLE != "Runs")

    assert snap_compare(app(start="runs"), terminal_size=(80, 24), run_before=settle(then=help_screen))
