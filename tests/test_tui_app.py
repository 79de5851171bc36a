"""Pilot tests of tfminima-tui on fixture run directories (no training here; see test_tui_launch)."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tui_support import build_edge_runs, build_runs, wait_for

from tfminima import config, limits, rundir, sweep
from tfminima.formats import eta_over_s
from tui.app import create_app
from tui.screens.modals import ErrorModal, RunDetailModal

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


def run(coro):
    return asyncio.run(coro)


async def show(pilot, form, section, key):
    """Open a form page and wait for one of its rows to be composed."""
    form.show_section(section)
    assert await wait_for(pilot, lambda: key in form.active_rows() and form.row(key).query(".control"))
    return form.row(key)


def error_text(row) -> str:
    return str(row.query_one(".field-error").content)


# ----------------------------------------------------------------------------- Configure
def test_invalid_value_shows_message_at_its_field(tmp_path):
    async def main():
        app = create_app(tmp_path / "runs", config_path=QUICKSTART)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            row = await show(pilot, screen.form, "optimizer", "optimizer.lr")
            row.control.focus()
            row.control.value = ""
            await pilot.press(*"-0.5")
            assert await wait_for(pilot, lambda: "greater than 0" in error_text(row))
            assert row.has_class("-invalid")
            assert "✗ 1 problem" in str(screen.query_one("#problems").content)
            await pilot.press("ctrl+l")  # cannot launch an invalid config
            await pilot.pause()
            assert not app.launcher.jobs
            row.control.value = "0.2"
            assert await wait_for(pilot, lambda: screen.form.spec is not None)
            assert error_text(row) == "" and screen.form.spec.optimizer.lr == 0.2
            assert "✓ valid" in str(screen.query_one("#problems").content)
            # η/S written as the preview beside it, the CLI and the reports write it (6.25e-3, not 0.00625)
            assert f"η/S = {eta_over_s(screen.form.spec.noise_scale)}" in str(screen.query_one("#problems").content)

            # a tagged union swaps its sub-form; a required member field is reported there
            kind = await show(pilot, screen.form, "schedules", "lr_schedule.kind")
            kind.control.value = "step"
            milestones = await show(pilot, screen.form, "schedules", "lr_schedule.milestones")
            assert await wait_for(pilot, lambda: "required" in error_text(milestones))
            assert milestones.display
            milestones.control.value = "[5, 10]"
            assert await wait_for(pilot, lambda: screen.form.spec is not None)
            assert screen.form.spec.lr_schedule.milestones == [5, 10]
            # a typo in a select-backed key from a file gets the validator's suggestion
            await show(pilot, screen.form, "dataset", "dataset.name")
            screen.form.model.data["dataset"]["name"] = "mnits"
            screen.form.validate()
            assert await wait_for(pilot, lambda: "did you mean 'mnist'" in error_text(screen.form.row("dataset.name")))

    run(main())


def test_sweep_editor_previews_runs_and_schedule(tmp_path):
    async def main():
        app = create_app(tmp_path / "runs", config_path=QUICKSTART)
        async with app.run_test(size=(100, 40)) as pilot:
            form = app.screen.form
            await show(pilot, form, "optimizer", "optimizer.momentum")
            await show(pilot, form, "sweep", "sweep.batch_size")
            form.row("sweep.batch_size").control.value = "[32, 64, 128]"
            form.row("sweep.ratio").control.value = "[1e-3, 2e-3]"
            form.row("sweep.seeds").control.value = "[0, 1]"
            form.row("optimizer.momentum").control.value = "0.9"
            preview = app.screen.query_one("#plan-preview")
            table = preview.query_one("#plan-runs")
            assert await wait_for(pilot, lambda: table.row_count == 12)
            ids = [str(k.value) for k in table.rows]
            assert "lr0.064-bs64-s1" in ids
            cells = table.get_row("lr0.064-bs64-s1")
            assert cells[4] == "1.00e-3" and cells[5] == "1.00e-2"  # η/S and η/(S(1−β)) with β = 0.9
            assert "12 · 2 distinct η/S" in str(preview.query_one("#plan-summary").content)
            schedule = preview.query_one("#plan-schedule DataTable")
            assert schedule.row_count == config.load(QUICKSTART).epochs
            rows = [schedule.get_row_at(i) for i in range(schedule.row_count)]
            assert [r[0] for r in rows] == [str(e) for e in range(1, schedule.row_count + 1)]  # epochs 1-based

    run(main())


def test_load_save_round_trip_through_the_screen(tmp_path):
    """Every file in experiments/: open in Configure, save, open the saved file, save again."""

    async def main():
        app = create_app(tmp_path / "runs", config_path=EXPERIMENTS[0])
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            for path in EXPERIMENTS:
                assert app.screen.open(path)
                await pilot.pause()
                app.screen.save(tmp_path / f"saved-{path.name}")
                assert app.screen.open(tmp_path / f"saved-{path.name}")
                await pilot.pause()
                app.screen.save(tmp_path / f"again-{path.name}")
            os.mkfifo(tmp_path / "fifo.yaml")  # nothing reads it: writing would wait forever
            said = []
            app.screen.notify = lambda message, **options: said.append(message)
            app.screen.save(tmp_path / "fifo.yaml")  # refused at once with a notice; the screen keeps its file
            assert app.screen.path == tmp_path / f"again-{EXPERIMENTS[-1].name}"
            assert said == [f"{tmp_path / 'fifo.yaml'}: is a FIFO, not a file"], said
            # Opening reads as the CLI does: a FIFO (open would wait for a writer forever) or a file over
            # the config limit is a notice, and the screen keeps its file.
            (tmp_path / "huge.yaml").write_bytes(b"#" * (limits.value("config_bytes") + 1))
            for name, reason in (("fifo.yaml", "FIFO"), ("huge.yaml", "over the limit")):
                said.clear()
                assert not app.screen.open(tmp_path / name)
                assert len(said) == 1 and name in said[0] and reason in said[0], said
                assert app.screen.path == tmp_path / f"again-{EXPERIMENTS[-1].name}"
        for path in EXPERIMENTS:
            assert config.load(tmp_path / f"saved-{path.name}") == config.load(path), path.name
            assert config.load(tmp_path / f"again-{path.name}") == config.load(path), path.name

    run(main())


# ----------------------------------------------------------------------------- Runs
def test_runs_table_states_and_failed_run_details(tmp_path):
    build_runs(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs")
        async with app.run_test(size=(100, 30)) as pilot:
            assert app.screen.TITLE == "Runs"
            table = app.screen.table
            assert await wait_for(pilot, lambda: table.row_count == 8)
            states = {k: str(table.get_row(k)[2]) for k in app.screen.rows}
            assert states["quickstart/lr0.04-bs128-s0"] == "running"
            assert states["quickstart/lr0.64-bs128-s0"] == "crashed"
            assert states["quickstart/lr0.16-bs128-s0"] == "failed"
            assert table.get_row("quickstart/lr0.04-bs128-s0")[6] == "7/12"
            table.move_cursor(row=app.screen.table._order.index("quickstart/lr0.16-bs128-s0"))
            detail = app.screen.query_one("#run-detail")
            assert await wait_for(pilot, lambda: "loss is NaN" in str(detail.content))
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunDetailModal))
            text = " ".join(str(s.content) for s in app.screen.query("Static"))
            assert "ValueError: loss is NaN" in text and "Traceback" in text
            failed = app.runs_dir / "quickstart" / "lr0.16-bs128-s0"
            assert f"tfminima run --resume {failed}" in text and f"tfminima report {failed.parent}" in text
            await pilot.press("escape")
            done = next(k for k, s in states.items() if s == "completed")  # resuming it would change nothing
            table.move_cursor(row=table._order.index(done))
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunDetailModal))
            text = " ".join(str(s.content) for s in app.screen.query("Static"))
            assert f"tfminima analyze {app.runs_dir / done}" in text and "--resume" not in text
            await pilot.press("escape")
            assert await wait_for(pilot, lambda: app.screen.TITLE == "Runs")
            await pilot.press("space", "space")  # select two runs for Monitor
            assert await wait_for(pilot, lambda: len(app.selected) == 2)
            # c / r / R act on the runs the user selected when the cursor is on one of them ...
            table.move_cursor(row=table._order.index(min(app.selected)))
            await pilot.pause()
            assert app.screen._targets() == sorted(app.selected)
            # ... but not on the runs a launch selected for the Monitor: then on the run under the cursor
            app._launched([SimpleNamespace(key=k, group=Path("quickstart")) for k in app.screen.rows])
            assert await wait_for(pilot, lambda: app.screen.TITLE == "Runs")
            table.move_cursor(row=table._order.index("quickstart/lr0.16-bs128-s0"))
            await pilot.pause()
            assert app.selected == set(app.screen.rows)
            assert app.screen._targets() == ["quickstart/lr0.16-bs128-s0"]

    run(main())


def test_reattaches_to_a_running_run_cancels_it_and_sees_it_die(tmp_path):
    """A run started before the app (its pid in status.json) is running; cancel SIGTERMs it."""
    runs = tmp_path / "runs"
    plan = sweep.expand(config.load_text("epochs: 3\n"))[0]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        run_dir = rundir.create(runs, "cli", plan.run_id, config.to_yaml(plan.spec), plan.hparams())
        rundir.atomic_write_json(run_dir.status_path, dict(
            run_dir.status(), state="running", pid=sleeper.pid, host=socket.gethostname(), epochs=3))

        async def main():
            app = create_app(runs)
            async with app.run_test(size=(100, 30)) as pilot:
                table = app.screen.table
                assert await wait_for(pilot, lambda: table.row_count == 1)
                assert str(table.get_row("cli/" + plan.run_id)[2]) == "running"
                await pilot.press("c")
                assert await wait_for(pilot, lambda: sleeper.poll() is not None)
                assert sleeper.returncode == -signal.SIGTERM
                # it died without a final status: the app says crashed, and stays up
                assert await wait_for(pilot, lambda: str(table.get_row("cli/" + plan.run_id)[2]) == "crashed")

        run(main())
    finally:
        if sleeper.poll() is None:
            os.killpg(sleeper.pid, signal.SIGKILL)


def test_worker_error_shows_modal_and_app_stays_up(tmp_path):
    async def main():
        app = create_app(tmp_path / "runs")
        async with app.run_test(size=(80, 24)) as pilot:
            def broken(force_scan=False):
                raise OSError("disk on fire")

            await pilot.pause(0.2)
            working, app.store.poll = app.store.poll, broken
            app.poll_now()
            assert await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
            assert "disk on fire" in app.screen.message and "Traceback" in app.screen.detail
            assert app.poll_now() is None  # polling waits while the error is shown
            app.store.poll = working
            await pilot.press("escape")
            await pilot.pause()
            assert not app._poll_paused and app.is_running
            # polling goes on (a pass the interval timer just started may still be running)
            assert await wait_for(pilot, lambda: app.poll_now() is not None)

    run(main())


# ----------------------------------------------------------------------------- Monitor, Compare, palette
def test_monitor_and_compare_on_fixture_runs(tmp_path):
    build_runs(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs", start="monitor")
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: len(app.store.records) == 8)
            app.selected = {"quickstart/lr0.01-bs32-s0", "quickstart/lr0.16-bs32-s0", "memo/lr0.05-bs50-s0"}
            app.redraw()
            await pilot.pause()
            screen = app.screen
            loss = screen.query_one("#plot-loss")
            assert len(loss.traces) == 6  # train and val of three runs
            colours = {t.colour for t in loss.traces}
            assert len(colours) == 3
            assert screen.query_one("#plot-lmax").display and screen.query_one("#plot-memo").display
            lmax = screen.query_one("#plot-lmax")
            assert [t.key for t in lmax.traces if "|edge|" not in t.key] == [
                "quickstart/lr0.01-bs32-s0|sharpness/lambda_max", "quickstart/lr0.16-bs32-s0|sharpness/lambda_max"]
            # η = 0.16: its edge 2/η is within reach of the λ_max curves; η = 0.01's (200) is far above them
            assert [t.key for t in lmax.traces if "|edge|" in t.key] == ["quickstart/lr0.16-bs32-s0|edge|0"]
            assert len(screen.query_one("#plot-memo").traces) == 1
            before = {t.key.split("|")[0]: t.colour for t in loss.traces}
            app.selected = {"quickstart/lr0.16-bs32-s0"}
            app.redraw()
            await pilot.pause()
            assert loss.traces[0].colour == before["quickstart/lr0.16-bs32-s0"]  # colours are stable

            await pilot.press("4")
            await pilot.pause()
            compare = app.screen
            assert compare.TITLE == "Compare" and len(compare.rows) == 8
            assert compare.metrics == ["val_accuracy", "test_accuracy", "best_val_accuracy", "lambda_max", "trace"]
            await pilot.press("n", "n", "n")
            assert compare.metric == "lambda_max"
            path = compare.export(tmp_path / "compare.csv")
            lines = path.read_text().splitlines()
            assert len(lines) == 9 and "eta_over_s" in lines[0]
            os.mkfifo(tmp_path / "fifo.csv")  # nothing reads it: writing would wait forever
            assert compare.export(tmp_path / "fifo.csv") is None  # refused at once, the app goes on

            titles = [c.title for c in app.get_system_commands(app.screen)]
            for title in ("Launch sweep", "Cancel runs", "Export comparison CSV", "TensorBoard command", "Go to Monitor"):
                assert title in titles
            await pilot.press("question_mark")
            await pilot.pause()
            assert "tensorboard --logdir" in " ".join(str(s.content) for s in app.screen.query("Static"))

    run(main())


def test_app_never_imports_tensorflow(tmp_path):
    """Build the app, visit every screen and dialog, then look at sys.modules (in a fresh process)."""
    build_runs(tmp_path / "runs")
    code = f"""
import asyncio, json, sys
from tui.app import create_app

async def main():
    app = create_app({str(tmp_path / 'runs')!r}, config_path={str(QUICKSTART)!r})
    async with app.run_test(size=(100, 30)) as pilot:
        for key in ("1", "2", "3", "4", "question_mark", "escape", "ctrl+p", "escape"):
            await pilot.press(key)
            await pilot.pause(0.2)
        app.selected = set(app.store.records)
        app.redraw()
        await pilot.pause(0.2)
asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tensorboard'))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_redraw_while_a_screen_is_still_being_built(tmp_path):
    """The 4 Hz redraw may fire between switching to a screen and its widgets being mounted."""
    build_runs(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs", start="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: len(app.store.records) == 8)
            for mode in ("monitor", "compare", "runs", "configure"):
                app.switch_mode(mode)  # not awaited: the screen is not composed yet
                app.store.version += 1
                app.redraw()
                await pilot.pause(0.1)
            assert app.is_running and app.screen.TITLE == "Configure"

    run(main())


# ----------------------------------------------------------------------------- Monitor polish (issue 12, item 6)
def screen_lines(widget) -> list[str]:
    """What a widget shows, line by line, as plain text."""
    return [strip.text for strip in widget.render_lines(widget.size.region)]


def data_rows(lines: list[str]) -> list[int]:
    """Indexes of the lines with a data mark (braille or •) inside the plot's frame."""
    top = next(line for line in lines if "┌" in line)
    start, end = top.index("┌") + 1, top.index("┐")
    return [i for i, line in enumerate(lines) if "┌" not in line and "└" not in line
            and any(c == "•" or 0x2800 < ord(c) <= 0x28FF for c in line[start:end])]


def y_label_rows(lines: list[str]) -> dict[int, float]:
    """Line index -> value of the y tick label on that line (labels end in ┤)."""
    out = {}
    for i, line in enumerate(lines):
        head, sep, _ = line.partition("┤")
        if sep and head.strip():
            out[i] = float(head.strip())
    return out


def test_compare_ticks_eta_over_s_as_everywhere_else(tmp_path):
    """The scatter's log η/S axis is labelled as the heatmap's key beside it, the CLI and the reports
    write η/S (3.12e-4), not 0.00031; the steps-to-target view's S axis keeps plain numbers."""
    from tui.widgets.plots import MetricPlot

    build_runs(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs", start="compare")
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: loaded(app))
            app.redraw()
            scatter = app.screen.query_one("#scatter", MetricPlot)
            assert await wait_for(pilot, lambda: scatter.traces and scatter._cache is not None
                                  and scatter._cache[0][0] == scatter._signature)
            await pilot.pause()
            lines = screen_lines(scatter)
            ticks = lines[next(i for i, line in enumerate(lines) if "└" in line) + 1].split()
            ratios = {eta_over_s(r.eta_over_s) for r in app.screen.rows}
            assert len(ticks) >= 2 and set(ticks) <= ratios, (ticks, ratios)

    run(main())


def test_plot_draws_every_value_on_the_row_its_label_names():
    """The issue's picture: a 0.16 line drawn on the row labelled 0.11. Constant lines (braille) and
    points (•) at η = 0.01, 0.04, 0.16, 0.64 must each sit on the row whose label is nearest."""
    from textual.app import App

    from tui.widgets.plots import MetricPlot, Trace

    values = {(230, 30, 30): 0.01, (30, 230, 30): 0.04, (30, 30, 230): 0.16, (230, 230, 30): 0.64}
    epochs = np.arange(1.0, 13.0)

    class One(App):
        def compose(self):
            yield MetricPlot("η", id="p")

    async def main():
        app = One()
        async with app.run_test(size=(60, 15)) as pilot:
            plot = app.query_one(MetricPlot)
            for marker in ("braille", "dot"):
                plot.set_traces([Trace(f"{marker}{v}", epochs, np.full(12, v), rgb, marker) for rgb, v in values.items()])
                plot._last_build = 0
                assert await wait_for(pilot, lambda: plot._cache is not None and plot._cache[0][0] == plot._signature)
                await pilot.pause()
                strips = plot.render_lines(plot.size.region)
                lines = [strip.text for strip in strips]
                labels = y_label_rows(lines)
                assert labels, lines
                rows, vals = zip(*sorted(labels.items()))
                per_row = (vals[0] - vals[-1]) / (rows[-1] - rows[0])  # labels sit on equally spaced rows
                for rgb, value in values.items():
                    drawn = {i for i, strip in enumerate(strips) for seg in strip
                             if seg.style and seg.style.color and seg.style.color.triplet
                             and tuple(seg.style.color.triplet) == rgb and seg.text.strip()}
                    assert len(drawn) == 1, (marker, value, drawn, lines)
                    shown = vals[0] - (drawn.pop() - rows[0]) * per_row  # the value the labels give that row
                    assert abs(shown - value) <= per_row / 2 + 1e-12, (marker, value, shown, "\n".join(lines))
                # a whole-number epoch axis from 1 to 12
                ticks = lines[next(i for i, line in enumerate(lines) if "└" in line) + 1].split()
                assert all(t.isdigit() for t in ticks) and ticks[-1] == "12", lines

    run(main())


def test_legend_gets_rows_above_the_data():
    """A panel with ``legend_share`` puts its legend on rows of its own (no value drawn there), the values
    still on the rows their labels name; with more labels than the share allows it shows none."""
    from textual.app import App

    from tui.widgets.axes import canvas_rows
    from tui.widgets.plots import MetricPlot, Trace

    values = {(230, 30, 30): 3.0, (30, 230, 30): 7.6}
    epochs = np.arange(1.0, 9.0)

    class One(App):
        def compose(self):
            yield MetricPlot("λ", legend_share=0.5, id="p")

    async def main():
        app = One()
        async with app.run_test(size=(60, 12)) as pilot:
            plot = app.query_one(MetricPlot)
            for n_labels in (2, 5):
                traces = [Trace(f"t{v}", epochs, np.full(8, v), rgb, "·", label=f"line {v}") for rgb, v in values.items()]
                traces += [Trace(f"u{i}", epochs, np.full(8, 5.0), (90, 90, 90), "braille", label=f"more {i}")
                           for i in range(n_labels - 2)]
                plot.set_traces(traces)
                plot._last_build = 0
                assert await wait_for(pilot, lambda: plot._cache is not None and plot._cache[0][0] == plot._signature)
                await pilot.pause()
                strips = plot.render_lines(plot.size.region)
                lines = [strip.text for strip in strips]
                legend = [i for i, line in enumerate(lines) if "line " in line or "more " in line]
                if n_labels > 0.5 * canvas_rows(plot.size.height, False):  # more than half the rows: no legend
                    assert n_labels == 5 and legend == [], lines
                    continue
                assert len(legend) == 2, lines
                labels = y_label_rows(lines)
                rows, vals = zip(*sorted(labels.items()))
                per_row = (vals[0] - vals[-1]) / (rows[-1] - rows[0])
                for rgb, value in values.items():
                    drawn = {i for i, strip in enumerate(strips) for seg in strip
                             if seg.style and seg.style.color and seg.style.color.triplet
                             and tuple(seg.style.color.triplet) == rgb and seg.text.strip() == "·" * len(seg.text.strip())
                             and seg.text.strip()} - set(legend)
                    assert len(drawn) == 1 and min(drawn) > max(legend), (value, drawn, lines)
                    shown = vals[0] - (drawn.pop() - rows[0]) * per_row
                    assert abs(shown - value) <= per_row / 2 + 1e-12, (value, shown, "\n".join(lines))

    run(main())


def loaded(app) -> bool:
    """The fixture's eight runs found and every file read (the poller's first pass is over)."""
    return (len(app.store.records) == 8 and all(r.status for r in app.store.records.values())
            and app._poller is not None and app._poller.is_finished)


QUICKSTART_RUNS = {f"quickstart/{r}" for r in ("lr0.01-bs32-s0", "lr0.04-bs128-s0", "lr0.04-bs32-s0", "lr0.16-bs128-s0",
                                               "lr0.16-bs32-s0", "lr0.64-bs128-s0")}


async def show_on_monitor(pilot, keys=None) -> None:
    """Once the fixture's runs are read, select ``keys`` (default: every run) and draw the screen."""
    app = pilot.app
    assert await wait_for(pilot, lambda: loaded(app))
    app.selected = set(app.store.records if keys is None else keys)
    app.redraw()


def test_monitor_fits_few_runs_on_one_screen_with_one_x_range(tmp_path):
    """The six quickstart runs at 100×30: every panel on screen (no scrolling) and tall enough to
    read, the constant schedules not drawn, every epoch panel over the same epochs with whole ticks."""
    from tui.screens.monitor import MIN_PANEL_HEIGHT
    from tui.widgets.plots import MetricPlot

    build_runs(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs", start="monitor")
        async with app.run_test(size=(100, 30)) as pilot:
            await show_on_monitor(pilot, QUICKSTART_RUNS)
            plots = app.screen.query_one("#plots")
            shown = lambda: [p for p in app.screen.query(MetricPlot) if p.display]
            # the layout settles (the legend's height, then the grid) with every panel built, unscrolled
            assert await wait_for(pilot, lambda: plots.max_scroll_y == 0 and all(
                p._cache is not None and p._cache[0][0] == p._signature for p in shown())), plots.max_scroll_y
            await pilot.pause()
            assert [p.id for p in shown()] == ["plot-loss", "plot-accuracy", "plot-lmax", "plot-trace"]
            assert plots.max_scroll_y == 0
            for p in shown():
                assert p.region.height >= MIN_PANEL_HEIGHT and app.screen.region.contains_region(p.region), p.id
            assert {p.x_range for p in shown()} == {(1.0, 12.0)}  # sharpness is logged from epoch 4 on
            for p in shown():
                lines = screen_lines(p)
                ticks = lines[next(i for i, line in enumerate(lines) if "└" in line) + 1].split()
                assert ticks and all(t.isdigit() for t in ticks) and int(ticks[-1]) == 12, (p.id, ticks)

    run(main())


def test_monitor_leaves_out_a_panel_no_run_logs(tmp_path):
    """The quickstart measures λ_max but not Tr(H) (``trace: false``): no empty Tr(H) panel taking half
    the screen beside the λ_max one."""
    from tui.widgets.plots import MetricPlot

    build_runs(tmp_path / "runs")
    for run_dir in (tmp_path / "runs" / "quickstart").iterdir():  # the sharpness events as trace: false logs them
        events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        for e in events:
            if e["kind"] == "sharpness":
                del e["trace"], e["trace_stderr"]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        summary = run_dir / "summary.json"
        if summary.exists():
            summary.write_text(json.dumps({k: v for k, v in json.loads(summary.read_text()).items()
                                           if k != "sharpness/trace"}))

    async def main():
        app = create_app(tmp_path / "runs", start="monitor")
        async with app.run_test(size=(100, 30)) as pilot:
            await show_on_monitor(pilot, QUICKSTART_RUNS)
            shown = lambda: [p.id for p in app.screen.query(MetricPlot) if p.display]
            assert await wait_for(pilot, lambda: "plot-lmax" in shown()), shown()
            await pilot.pause()
            assert shown() == ["plot-loss", "plot-accuracy", "plot-lmax"]

    run(main())


def test_monitor_legend_breaks_lines_only_between_runs(tmp_path):
    build_runs(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs", start="monitor")
        async with app.run_test(size=(100, 30)) as pilot:
            await show_on_monitor(pilot)
            await pilot.pause()
            legend = app.screen.query_one("#legend")
            lines = screen_lines(legend)
            for key in app.selected:
                run_id = key.rsplit("/", 1)[-1]
                line = next((line for line in lines if f"● {run_id} " in line), None)
                assert line is not None, (run_id, lines)  # marker, id and state on one line
                assert line.split(f"● {run_id} ")[1].split()[0] in ("completed", "running", "failed", "crashed")

    run(main())


def test_monitor_first_display_builds_one_panel_a_frame(tmp_path, monkeypatch):
    """With no earlier picture, a panel over the frame budget shows its title and builds in a later
    frame (the first display of 50 runs used to build every panel in one ~1 s frame)."""
    from tui.widgets import plots

    build_runs(tmp_path / "runs")
    monkeypatch.setattr(plots, "FRAME_BUDGET", 0.0)  # any build fills a frame: one panel a frame
    events: list[str] = []  # panel ids as they build, "|" when a frame that built something ends
    build, frame_drawn = plots.MetricPlot._build, plots.MetricPlot._frame_drawn
    monkeypatch.setattr(plots.MetricPlot, "_build", lambda self: (events.append(self.id), build(self))[1])
    monkeypatch.setattr(plots.MetricPlot, "_frame_drawn", staticmethod(lambda: (events.append("|"), frame_drawn())))
    placeholders: set[str] = set()  # panels that showed their title alone while they waited
    render = plots.MetricPlot.render

    def watched_render(self):
        result = render(self)
        if "drawing…" in str(result):
            placeholders.add(self.id)
        return result

    monkeypatch.setattr(plots.MetricPlot, "render", watched_render)

    async def main():
        app = create_app(tmp_path / "runs", start="runs")
        async with app.run_test(size=(100, 30)) as pilot:
            assert await wait_for(pilot, lambda: loaded(app))
            app.selected = set(QUICKSTART_RUNS)
            events.clear()
            await pilot.press("3")
            screen = app.screen
            shown = lambda: [p for p in screen.query(plots.MetricPlot) if p.display]

            def all_built() -> bool:
                return bool(shown()) and all(p._cache is not None and p._cache[0][0] == p._signature for p in shown())

            assert await wait_for(pilot, all_built)
            frames = [f for f in "".join(e if e == "|" else f"{e}," for e in events).split("|") if f]
            assert all(f.count(",") == 1 for f in frames), events  # never two builds in one frame
            assert {p.id for p in shown()} <= {e for e in events if e != "|"}
            assert len(placeholders) >= 3, placeholders  # the others showed their title meanwhile

    run(main())


def test_run_details_say_times_as_people_read_them(tmp_path, monkeypatch):
    """Details: local times, how long the run took, its error and log tail; no raw status.json
    with Unix timestamps."""
    import time

    from tui import fmt
    from tui_support import T0

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    build_runs(tmp_path / "runs")
    (tmp_path / "runs" / "quickstart" / "lr0.16-bs128-s0.log").write_text("epoch 3: loss nan\nValueError: loss is NaN\n")

    async def main():
        app = create_app(tmp_path / "runs", start="runs")
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.screen.table
            assert await wait_for(pilot, lambda: loaded(app) and table.row_count == 8)
            app.redraw()
            await pilot.pause()
            table.move_cursor(row=table._order.index("quickstart/lr0.16-bs128-s0"))
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, RunDetailModal))
            text = "\n".join(str(s.content) for s in app.screen.query("Static"))
            start = T0 + 400  # the fixture's fifth run
            assert f"started   {fmt.clock(start)}" in text and fmt.clock(start) == "2023-11-14 22:20:00"
            assert f"ended     {fmt.clock(start + 42)} (after 42s)" in text
            assert "failed, 3 of 12 epochs done" in text and "process   4999999 on " in text
            assert "ValueError: loss is NaN at epoch 3" in text and "epoch 3: loss nan" in text
            assert str(int(T0)) not in text and '"updated"' not in text

    try:
        run(main())
    finally:
        monkeypatch.undo()
        time.tzset()


# ----------------------------------------------------------------------------- edge of stability, η/S·(1−S/N)
def test_lambda_max_panel_draws_the_edge_and_runs_show_the_finite_noise_scale(tmp_path):
    """Monitor: the λ_max panel's edge line in the run's colour, named in its legend, and η/S·(1−S/N) on
    the η/S panel; Runs: the details line's η/S·(1−S/N) and the λ/edge column (– for a run logged
    before either existed)."""
    from tfminima import runfiles, schedules
    from tui import fmt
    from tui.screens.monitor import EDGE

    build_edge_runs(tmp_path / "runs")
    step = "edge/step-lr0.5-bs64-s0"

    async def main():
        app = create_app(tmp_path / "runs", start="monitor")
        async with app.run_test(size=(120, 50)) as pilot:
            assert await wait_for(pilot, lambda: len(app.store.records) == 3 and app._poller.is_finished)
            app.selected = {step}
            app.redraw()
            panel = app.screen.query_one("#plot-lmax")
            assert await wait_for(pilot, lambda: panel._cache is not None and panel._cache[0][0] == panel._signature
                                  and any("|edge|" in t.key for t in panel.traces))
            lam, line = panel.traces
            assert lam.key == f"{step}|sharpness/lambda_max" and line.key == f"{step}|edge|0"
            assert line.colour == lam.colour and line.marker == EDGE
            assert "2(1+β)/η step-lr0.5-bs64-s0" in "\n".join(screen_lines(panel))
            ratio = app.screen.query_one("#plot-ratio")
            assert ratio.display and [t.key for t in ratio.traces] == [
                f"{step}|schedule/eta_over_s", f"{step}|schedule/eta_over_s_finite"]

            await pilot.press("2")
            assert await wait_for(pilot, lambda: app.screen.TITLE == "Runs" and app.screen.table.row_count == 3)
            screen = app.screen
            record = app.store.get(step)
            spec = runfiles.read_config(record.dir.path)
            last = schedules.plan(spec)[-1]
            finite = schedules.eta_over_s_finite(last.lr, last.batch_size, spec.dataset.train_size)
            stability = record.summary["sharpness/stability"]
            for key, scale, ratio_cell in ((step, fmt.sci(finite), fmt.num(stability, 2)),
                                           ("old/const-lr0.5-bs64-s0", "–", "–")):
                screen.table.move_cursor(row=screen.table._order.index(key))
                detail = screen.query_one("#run-detail")
                assert await wait_for(pilot, lambda d=detail, k=key: str(d.content).startswith(k)), str(detail.content)
                assert f"η/S·(1−S/N) {scale}  ·" in str(detail.content)
                assert str(screen.table.get_cell(key, "stab")) == ratio_cell

    run(main())
