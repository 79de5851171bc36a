"""The Compare screen's steps-to-target view of a finished sweep trained to a target (Pilot, fixture run files)."""

import asyncio

import numpy as np
from tui_support import wait_for, write_run

from tfminima import config, sweep
from tui import comparison
from tui.app import create_app

SWEEP = """\
name: cb
epochs: 12
dataset: {name: mnist1d, train_size: 4000, val_size: 500, test_size: 0}
until: {metric: train_loss, value: 0.3}
sweep:
  zip:
    optimizer.batch_size: [16, 16, 64, 64, 256, 256, 1024]
    optimizer.lr: [0.1, 0.2, 0.4, 0.8, 0.5, 1.0, 1.0]
  seeds: [0, 1]
"""
B_CRIT, S_MIN = 200.0, 100.0


def steps(plan) -> float | None:
    """Closed form: S_min(1 + B/S) at the larger η, 1.5x that at the smaller; S = 1024 never reaches it."""
    s = plan.batch_size
    if s == 1024:
        return None
    larger = plan.lr == max(p for b, p in [(16, 0.2), (64, 0.8), (256, 1.0)] if b == s)
    return round(S_MIN * (1 + B_CRIT / s) * (1.0 if larger else 1.5) * (1 + 0.01 * plan.spec.seed))


def build(root):
    for i, plan in enumerate(sweep.expand(config.load_text(SWEEP, "cb.yaml"))):
        run = write_run(root, "cb", plan, index=i, state="completed", epochs_done=3)
        summary = run.summary()
        n = steps(plan)
        summary.update(target_reached=n is not None, steps_to_target=n,
                       epochs_to_target=None if n is None else n * plan.batch_size / 4000)
        run.write_summary(summary)


def test_compare_shows_steps_to_target_against_s(tmp_path):
    build(tmp_path / "runs")

    async def main():
        app = create_app(tmp_path / "runs", start="compare")
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: len(app.store.records) == 14)
            screen = app.screen
            assert await wait_for(pilot, lambda: "steps_to_target" in screen.metrics)
            while screen.metric != "steps_to_target":
                await pilot.press("n")
            plot = screen.query_one("#scatter")
            assert await wait_for(pilot, lambda: any(t.key == "best" for t in plot.traces))
            traces = {t.key: t for t in plot.traces}
            np.testing.assert_array_equal(traces["best"].x, [16, 64, 256])
            expected = [np.mean([S_MIN * (1 + B_CRIT / s) * (1 + 0.01 * seed) for seed in (0, 1)]) for s in (16, 64, 256)]
            np.testing.assert_allclose(traces["best"].y, np.round(expected), atol=0.51)
            np.testing.assert_allclose(traces["perfect"].y * traces["perfect"].x, traces["best"].y[0] * 16)
            assert len(traces["other"].x) == 6  # both seeds of the slower η at each S
            assert plot.logy and "never reached at S = 1024" in plot.title_text
            points = comparison.steps_to_target(screen.rows)
            assert [(p.batch_size, p.best_lr) for p in points] == [(16, 0.2), (64, 0.8), (256, 1.0), (1024, None)]
            await pilot.press("n")  # another metric: the η/S scatter again, linear y
            assert await wait_for(pilot, lambda: not plot.logy)

    asyncio.run(main())
