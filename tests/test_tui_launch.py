"""Real runs launched from the TUI: metrics appear, cancel records ``cancelled``, kill -9 shows ``crashed``.

Each test trains a tiny MNIST-1D model (the quickstart with ``--set``-style overrides) in a
``tfminima run`` subprocess; most of the time is that process importing TensorFlow.
"""

import asyncio
import os
import signal
from functools import partial
from pathlib import Path

import pytest
import tui_support

from tfminima import rundir
from tui.app import create_app
from tui.screens.modals import RunDetailModal

QUICKSTART = Path(__file__).parent.parent / "experiments" / "quickstart.yaml"
RUN = "lr0.05-bs32-s0"


def tiny(epochs: int, sharpness: bool = False) -> list[str]:
    """One run (η = 0.05, S = 32) of a small MLP on 256 examples; the sharpness monitor at the end point."""
    monitors = "[{sharpness: {every: 1000, samples: 256, trace_probes: 10}}]" if sharpness else "[]"
    return [f"epochs={epochs}", "dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64",
            "model.hidden=[16]", "sweep.ratio=[1.5625e-3]", 'sweep.grid={"optimizer.batch_size": [32]}',
            f"monitors={monitors}"]


@pytest.fixture
def make_app(tmp_path):
    """The app on the quickstart with overrides; every child it started is killed afterwards."""
    apps = []

    def make(epochs: int, sharpness: bool = False):
        app = create_app(tmp_path / "runs", config_path=QUICKSTART, overrides=tiny(epochs, sharpness), max_parallel=1,
                         poll_interval=0.25)
        apps.append(app)
        return app

    yield make
    for app in apps:
        for job in app.launcher.jobs.values():
            if job.proc is not None and job.proc.poll() is None:
                os.killpg(job.proc.pid, signal.SIGKILL)
                job.proc.wait()


# each run is a subprocess importing TensorFlow and training: allow minutes, not seconds
wait_for = partial(tui_support.wait_for, timeout=90.0, interval=0.1)


def state(app) -> str | None:
    rows = app.rows()
    return rows[0].state if rows else None


def record(app):
    return next(iter(app.store.records.values()), None)


def test_launch_shows_metrics_in_runs_table_and_plots(make_app):
    async def main():
        app = make_app(epochs=2)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: state(app) == "completed"), state(app)
            app.redraw()
            await pilot.pause()
            key = f"quickstart/{RUN}"
            assert app.screen.TITLE == "Runs" and key in app.selected
            cells = app.screen.table.get_row(key)
            assert str(cells[2]) == "completed" and cells[6] == "2/2"
            assert cells[7] != "–" and cells[8] != "–"  # train and val accuracy
            await pilot.press("3")
            await pilot.pause()
            loss = app.screen.query_one("#plot-loss")
            assert sorted(t.key for t in loss.traces) == [f"{key}|train/loss", f"{key}|val/loss"]
            assert all(len(t.y) == 2 for t in loss.traces)
            ratio = app.screen.query_one("#plot-ratio").traces[0]
            assert ratio.y[0] == pytest.approx(1.5625e-3)
            assert not app.screen.query_one("#row-sharpness").display  # no sharpness monitor in this run
        assert (app.runs_dir / "quickstart" / f"{RUN}.log").exists()
        assert (app.runs_dir / "quickstart" / "experiment.yaml").exists()

    asyncio.run(main())


def test_cancel_stops_at_a_step_boundary_and_keeps_the_checkpoint(make_app):
    async def main():
        app = make_app(epochs=400)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: state(app) == "running" and record(app).epochs_done >= 1)
            await pilot.press("c")
            assert await wait_for(pilot, lambda: state(app) == "cancelled", timeout=60), state(app)
            job = app.launcher.job(f"quickstart/{RUN}")
            assert await wait_for(pilot, lambda: job.state == "exited", timeout=30)
            assert job.returncode == 130 and not job.crashed
            run = record(app).dir
            assert run.status()["state"] == "cancelled" and any(run.checkpoints_dir.glob("epoch-*"))
            app.redraw()
            await pilot.pause()
            assert str(app.screen.table.get_row(f"quickstart/{RUN}")[2]) == "cancelled"

    asyncio.run(main())


def test_killed_run_shows_crashed_and_the_app_stays_up(make_app):
    async def main():
        app = make_app(epochs=400)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: state(app) == "running")
            os.killpg(record(app).status["pid"], signal.SIGKILL)
            assert await wait_for(pilot, lambda: state(app) == "crashed", timeout=30), state(app)
            assert record(app).status["state"] == "running"  # no final status was written
            assert rundir.effective_state(record(app).status) == "crashed"
            app.redraw()
            await pilot.pause()
            assert "killed by SIGKILL" in str(app.screen.query_one("#run-detail").content)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, RunDetailModal)
            await pilot.press("escape", "3", "4", "2")
            assert app.is_running

    asyncio.run(main())


@pytest.mark.slow
def test_sharpness_monitor_values_reach_table_monitor_and_compare(make_app):
    async def main():
        app = make_app(epochs=2, sharpness=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: state(app) == "completed", timeout=150), state(app)
            app.redraw()
            await pilot.pause()
            assert app.screen.table.get_row(f"quickstart/{RUN}")[9] != "–"  # λ_max
            await pilot.press("3")
            await pilot.pause()
            assert app.screen.query_one("#row-sharpness").display
            assert len(app.screen.query_one("#plot-lmax").traces) == 1
            assert len(app.screen.query_one("#plot-trace").traces) == 1
            await pilot.press("4")
            await pilot.pause()
            assert "lambda_max" in app.screen.metrics and "trace" in app.screen.metrics

    asyncio.run(main())


@pytest.mark.slow
def test_resume_after_cancel_completes_the_run(make_app):
    async def main():
        app = make_app(epochs=30)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: state(app) == "running" and record(app).epochs_done >= 2)
            await pilot.press("c")
            assert await wait_for(pilot, lambda: state(app) == "cancelled")
            done = record(app).epochs_done
            assert await wait_for(pilot, lambda: app.launcher.counts() == (0, 0))
            await pilot.press("r")
            assert await wait_for(pilot, lambda: state(app) in ("starting", "running"))
            assert await wait_for(pilot, lambda: state(app) == "completed", timeout=120), state(app)
            assert record(app).epochs_done == 30 > done
            assert len(record(app).series["train/loss"]) == 30  # the log was rewritten, not doubled

    asyncio.run(main())
