"""Fifty runs of a thousand epochs each: the app loads them and stays responsive."""

import asyncio
import time

import pytest
from tui_support import write_run

from tfminima import config, sweep
from tui.app import create_app

BIG = """\
name: big
epochs: 1000
dataset: {name: mnist1d}
model: {name: mlp, hidden: [32]}
optimizer: {lr: 0.01, batch_size: 32}
monitors: [{sharpness: {every: 10}}]
sweep:
  grid: {optimizer.lr: [0.01, 0.02, 0.04, 0.08, 0.16], optimizer.batch_size: [16, 32, 64, 128, 256], seed: [0, 1]}
"""


@pytest.mark.slow
def test_fifty_runs_of_a_thousand_epochs_stay_responsive(tmp_path):
    runs = tmp_path / "runs"
    plans = sweep.expand(config.load_text(BIG))
    assert len(plans) == 50
    for i, plan in enumerate(plans):
        write_run(runs, "big", plan, state="completed", epochs_done=1000, index=i, sharpness_every=10)

    async def main():
        app = create_app(runs, start="runs")
        async with app.run_test(size=(160, 50)) as pilot:
            start = time.monotonic()
            while len(app.store.records) < 50 or not app._poller.is_finished or app.store.version == 0:
                await pilot.pause(0.05)
            loaded = time.monotonic() - start
            await pilot.pause(0.5)
            assert app.screen.table.row_count == 50
            assert len(app.store.records["big/lr0.01-bs16-s0"].series["train/loss"]) == 1000

            table = app.screen.table
            latencies = []
            for _ in range(5):
                before, t = table.cursor_row, time.monotonic()
                await pilot.press("down")
                while table.cursor_row == before:
                    await asyncio.sleep(0.002)
                latencies.append(time.monotonic() - t)
                await pilot.pause(0.1)

            app.selected = set(list(app.store.records)[:20])
            await pilot.press("3")
            t = time.monotonic()
            app.redraw()
            await pilot.pause()
            monitor = time.monotonic() - t
            loss = app.screen.query_one("#plot-loss")
            assert len(loss.traces) == 40 and all(len(tr.y) == 1000 for tr in loss.traces)
            return loaded, sorted(latencies)[2], monitor

    loaded, median_key, monitor = asyncio.run(main())
    print(f"load {loaded:.1f}s, key {median_key * 1000:.0f}ms, monitor redraw (20 runs) {monitor:.2f}s")
    assert loaded < 30 and median_key < 0.25 and monitor < 5
