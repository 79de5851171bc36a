"""Real runs launched from the TUI: metrics appear, cancel records ``cancelled``, kill -9 shows ``crashed``.

Each test trains tiny MNIST-1D models (the quickstart with ``--set``-style overrides) in
``tfminima.worker`` processes; most of the time is a worker importing TensorFlow, once for all the
runs it trains.
"""

import asyncio
import os
import signal
import sys
from functools import partial
from pathlib import Path

import fake_worker
import pytest
import tui_support
from process_support import assert_quiet, user_env

from tfminima import rundir
from tui.app import create_app
from tui.screens.modals import RunDetailModal

QUICKSTART = Path(__file__).parent.parent / "experiments" / "quickstart.yaml"
RUN = "lr0.05-bs32-s0"
RUNS = ["lr0.05-bs32-s0", "lr0.1-bs32-s0", "lr0.2-bs32-s0"]  # the sweep with runs=3, in sweep order


def tiny(epochs: int, sharpness: bool = False, runs: int = 1) -> list[str]:
    """``runs`` runs (η = 0.05, 0.1, 0.2 at S = 32) of a small MLP on 256 examples; the sharpness
    monitor at the end point."""
    monitors = "[{sharpness: {every: 1000, samples: 256, trace_probes: 10}}]" if sharpness else "[]"
    ratios = [1.5625e-3, 3.125e-3, 6.25e-3][:runs]
    return [f"epochs={epochs}", "dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64",
            "model.hidden=[16]", f"sweep.ratio={ratios}", 'sweep.grid={"optimizer.batch_size": [32]}',
            f"monitors={monitors}"]


@pytest.fixture
def make_app(tmp_path):
    """The app on the quickstart with overrides; every worker it started is killed afterwards.

    ``fake``: workers that write their runs' files without TensorFlow (tests/fake_worker.py), for
    the app's cancel / crash / queue paths, where what trains the run is not what is tested."""
    apps = []

    def make(epochs: int, sharpness: bool = False, runs: int = 1, max_parallel: int = 1, config: bool = True,
             fake: bool = False):
        python = fake_worker.executable(tmp_path) if fake else sys.executable
        app = create_app(tmp_path / "runs", config_path=QUICKSTART if config else None,
                         overrides=tiny(epochs, sharpness, runs) if config else (), max_parallel=max_parallel,
                         poll_interval=0.25, python=python)
        apps.append(app)
        return app

    yield make
    for app in apps:
        for worker in list(app.launcher.workers):
            if worker.proc.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.proc.wait()


# each run is a subprocess importing TensorFlow and training: allow minutes, not seconds
wait_for = partial(tui_support.wait_for, timeout=90.0, interval=0.1)


def state(app) -> str | None:
    rows = app.rows()
    return rows[0].state if rows else None


def record(app):
    return next(iter(app.store.records.values()), None)


def status_of(app, run_id: str) -> dict:
    return rundir.RunDir(app.runs_dir / "quickstart" / run_id).status()


async def on_row(pilot, app, run_id: str) -> None:
    """Runs screen: nothing selected, the cursor on ``run_id`` (so c / r act on that run alone)."""
    key = f"quickstart/{run_id}"
    assert await wait_for(pilot, lambda: app.screen.TITLE == "Runs" and key in app.screen.rows)
    app.selected = set()
    app.redraw()
    await pilot.pause()
    table = app.screen.table
    table.move_cursor(row=table._order.index(key))
    await pilot.pause()
    assert table.cursor_key == key


def test_one_worker_trains_the_queued_runs_and_their_metrics_reach_the_table_and_plots(make_app):
    """-j 1: one TensorFlow process trains the three runs; each run still logs to its own file. The runs'
    metrics reach the Runs table and the Monitor's plots (one launch for both: a worker start is ~5 CPU-s)."""

    async def main():
        app = make_app(epochs=2, runs=3)
        seen: set[int] = set()
        most = [0]

        def all_completed() -> bool:
            seen.update(w.pid for w in app.launcher.workers)
            most[0] = max(most[0], len(app.launcher.workers))
            return [r.state for r in app.rows()] == ["completed"] * 3

        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, all_completed), [r.state for r in app.rows()]
            pids = {status_of(app, r)["pid"] for r in RUNS}
            assert len(seen) == 1 and pids == seen and most[0] == 1
            assert await wait_for(pilot, lambda: not app.launcher.workers)  # nothing queued: it exits
            app.redraw()
            await pilot.pause()
            keys = [f"quickstart/{r}" for r in RUNS]
            assert app.screen.TITLE == "Runs" and set(keys) <= app.selected
            for key in keys:
                cells = app.screen.table.get_row(key)
                assert str(cells[2]) == "completed" and cells[6] == "2/2"
                assert cells[7] != "–" and cells[8] != "–"  # train and val accuracy
            await pilot.press("3")
            await pilot.pause()
            loss = app.screen.query_one("#plot-loss")
            assert sorted(t.key for t in loss.traces) == sorted(f"{k}|{m}" for k in keys for m in ("train/loss", "val/loss"))
            assert all(len(t.y) == 2 for t in loss.traces)
            ratios = {t.key: t.y[0] for t in app.screen.query_one("#plot-ratio").traces
                      if t.key.endswith("|schedule/eta_over_s")}
            assert ratios == {f"{k}|schedule/eta_over_s": pytest.approx(r)
                              for k, r in zip(keys, [1.5625e-3, 3.125e-3, 6.25e-3])}
            assert not app.screen.query_one("#plot-lmax").display  # no sharpness monitor in these runs
        group = app.runs_dir / "quickstart"
        for run_id in RUNS:
            log = (group / f"{run_id}.log").read_text()
            assert f"run {group / run_id}\n" in log
            assert all(f"run {group / other}\n" not in log for other in RUNS if other != run_id)
            assert len(rundir.RunDir(group / run_id).events()) > 0
        assert list(group.glob("events.out.tfevents.*"))  # the sweep's HParams config, written once
        assert (group / "experiment.yaml").exists()

    asyncio.run(main())


def test_cancel_stops_at_a_step_boundary_and_the_worker_goes_on(make_app):
    # fake workers; the real worker's stop at a step boundary: test_worker_on_sigterm_stops_its_run...
    async def main():
        app = make_app(epochs=400, runs=2, fake=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: state(app) == "running" and record(app).epochs_done >= 1)
            await on_row(pilot, app, RUNS[0])
            await pilot.press("c")
            assert await wait_for(pilot, lambda: state(app) == "cancelled", timeout=60), state(app)
            job = app.launcher.job(f"quickstart/{RUNS[0]}")
            assert await wait_for(pilot, lambda: job.state == "exited", timeout=30)
            assert job.outcome == "cancelled" and not job.crashed
            run = record(app).dir
            assert run.status()["state"] == "cancelled" and any(run.checkpoints_dir.glob("epoch-*"))
            app.redraw()
            await pilot.pause()
            assert str(app.screen.table.get_row(f"quickstart/{RUNS[0]}")[2]) == "cancelled"
            # the same worker takes the next run: no second TensorFlow start-up
            assert await wait_for(pilot, lambda: status_of(app, RUNS[1]).get("state") == "running")
            assert status_of(app, RUNS[1])["pid"] == run.status()["pid"]
            app.launcher.cancel(f"quickstart/{RUNS[1]}")
            assert await wait_for(pilot, lambda: status_of(app, RUNS[1]).get("state") == "cancelled", timeout=60)

    asyncio.run(main())


def test_run_cancelled_while_queued_is_recorded_and_resumable_after_a_restart(make_app, monkeypatch):
    second = f"quickstart/{RUNS[1]}"
    # fake workers, whose epochs take as long as a real worker's start-up: the second run is still queued
    monkeypatch.setenv("TFMINIMA_FAKE_EPOCH_SECONDS", "1.2")

    async def launch_and_cancel_the_second():
        app = make_app(epochs=3, runs=2, fake=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            await on_row(pilot, app, RUNS[1])
            assert app.launcher.job(second).state == "queued"
            await pilot.press("c")
            assert await wait_for(pilot, lambda: status_of(app, RUNS[1]).get("state") == "cancelled")
            assert status_of(app, RUNS[1])["error"] == "cancelled before it started"
            assert await wait_for(pilot, lambda: status_of(app, RUNS[0]).get("state") == "completed", timeout=90)
            app.redraw()
            await pilot.pause()
            assert str(app.screen.table.get_row(second)[2]) == "cancelled"
            assert await wait_for(pilot, lambda: app.launcher.counts() == (0, 0))
        return status_of(app, RUNS[0])

    async def restart_and_resume(first_status):
        app = make_app(epochs=3, config=False, fake=True)
        async with app.run_test(size=(100, 30)) as pilot:
            assert app.screen.TITLE == "Runs"
            await on_row(pilot, app, RUNS[1])
            assert str(app.screen.table.get_row(second)[2]) == "cancelled"
            await pilot.press("r")
            assert await wait_for(pilot, lambda: status_of(app, RUNS[1]).get("state") == "completed", timeout=90)
            assert status_of(app, RUNS[1])["epochs_done"] == 3
            assert status_of(app, RUNS[0]) == first_status  # the other run is left alone

    first = asyncio.run(launch_and_cancel_the_second())
    asyncio.run(restart_and_resume(first))


def test_c_right_after_a_launch_cancels_the_run_under_the_cursor_alone(make_app, monkeypatch):
    """A launch selects its runs (the Monitor shows them), but that is not the user's selection: c on one
    queued run used to cancel the whole sweep, the running run included."""
    monkeypatch.setenv("TFMINIMA_FAKE_EPOCH_SECONDS", "1.2")
    last = f"quickstart/{RUNS[2]}"

    async def main():
        app = make_app(epochs=2, runs=3, fake=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: app.screen.TITLE == "Runs" and last in app.screen.rows)
            assert last in app.selected  # as the launch left it
            table = app.screen.table
            table.move_cursor(row=table._order.index(last))
            await pilot.pause()
            assert table.cursor_key == last and app.launcher.job(last).state == "queued"
            await pilot.press("c")
            assert await wait_for(pilot, lambda: status_of(app, RUNS[2]).get("state") == "cancelled")
            for run_id in RUNS[:2]:
                assert await wait_for(pilot, lambda: status_of(app, run_id).get("state") in rundir.FINAL_STATES)
                assert status_of(app, run_id)["state"] == "completed", run_id

    asyncio.run(main())


def test_killed_worker_crashes_only_its_run_and_a_new_worker_takes_the_queue(make_app, monkeypatch):
    # a fake worker starts in the time a real one does: the screens below are switched while it starts
    monkeypatch.setenv("TFMINIMA_FAKE_START_SECONDS", "2")

    async def main():
        app = make_app(epochs=40, runs=2, fake=True)  # a worker killed mid-run: what it trained does not matter
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+l")
            assert await wait_for(pilot, lambda: state(app) == "running")
            killed = record(app).status["pid"]
            os.killpg(killed, signal.SIGKILL)
            assert await wait_for(pilot, lambda: state(app) == "crashed", timeout=30), state(app)
            assert record(app).status["state"] == "running"  # no final status was written
            assert rundir.effective_state(record(app).status) == "crashed"
            await on_row(pilot, app, RUNS[0])
            assert "killed by SIGKILL" in str(app.screen.query_one("#run-detail").content)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, RunDetailModal)
            await pilot.press("escape", "3", "4", "2")
            assert app.is_running
            # the rest of the queue: a new worker trains it to the end
            assert await wait_for(pilot, lambda: status_of(app, RUNS[1]).get("state") == "completed", timeout=120)
            assert status_of(app, RUNS[1])["pid"] != killed and status_of(app, RUNS[1])["epochs_done"] == 40

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
            assert app.screen.query_one("#plot-lmax").display
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


def test_worker_on_sigterm_stops_its_run_records_the_waiting_one_and_exits(tmp_path):
    """The worker protocol without the app: two jobs given at once; SIGTERM during the first stops it
    at a step boundary (cancelled, with a checkpoint), the second is recorded cancelled unstarted,
    and the worker exits 0. The worker runs in the environment of a user who set none of TensorFlow's
    log variables, and its stderr must hold none of TensorFlow's start-up lines: the worker's quiet
    start is checked on this process (test_quiet's own worker process was a TensorFlow start more)."""
    import json
    import subprocess
    import sys
    import time

    from tfminima import config, sweep

    spec = config.load(QUICKSTART, tiny(400, runs=2))
    dirs = [rundir.create(tmp_path, "g", p.run_id, config.to_yaml(p.spec), p.hparams()) for p in sweep.expand(spec)]
    stderr_path = tmp_path / "worker.stderr"
    with open(stderr_path, "w") as stderr:
        worker = subprocess.Popen([sys.executable, "-m", "tfminima.worker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
                                  env=user_env())
    try:
        for d in dirs:
            worker.stdin.write(json.dumps({"op": "run", "run_dir": str(d.path), "log": str(d.path) + ".log"}) + "\n")
        worker.stdin.flush()
        assert json.loads(worker.stdout.readline()) == {"event": "started", "run_dir": str(dirs[0].path),
                                                        "pid": worker.pid}
        end = time.monotonic() + 120
        while int(dirs[0].status().get("epochs_done") or 0) < 1 and time.monotonic() < end:
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        replies = [json.loads(line) for line in worker.stdout]
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert [(r["event"], r["run_dir"], r["state"]) for r in replies] == [
        ("ended", str(dirs[0].path), "cancelled"), ("ended", str(dirs[1].path), "cancelled")]
    assert dirs[0].status()["state"] == "cancelled" and any(dirs[0].checkpoints_dir.glob("epoch-*"))
    assert dirs[1].status()["state"] == "cancelled" and dirs[1].status()["error"] == "cancelled before it started"
    assert not list(dirs[1].checkpoints_dir.iterdir())
    assert_quiet(stderr_path.read_text())
