"""Cost of a TUI redraw with 50 runs × 1,000 epochs, against the app's own poll and redraw intervals.

    python benchmarks/bench_tui.py [--runs 50] [--epochs 1000] [--repeat 5] [--size 160x50]

Why: the app polls the disk every ``poll_interval`` (0.5 s) in a thread and redraws the visible
screen at most ``redraw_hz`` (4) times a second on the UI thread; while a redraw runs, keys wait.
A redraw of fifty live runs of a thousand epochs should stay well below the redraw interval.

Fixture: tests/tui_support.write_run writes the runs (5 η × 5 S × seeds), "running" under this
process's pid so they stay live, every epoch logging train, val, schedule, sharpness and
memorisation events (all the Monitor's channels); the last epochs are held back and appended
during the benchmark, one epoch to every file at a time. The app runs headless
(``App.run_test``); its poll worker is paused and the benchmark drives ``store.poll`` and the
screens' ``refresh_data`` itself. A probe task on the app's event loop wakes every 2 ms and
records how late it wakes: the UI thread's busy time (lateness over 1 ms, summed) and the
longest stall (what a key press would wait at most) from the refresh until the screen is drawn.
Medians of --repeat, in ms and as a fraction of the redraw interval:

[1] ``RunStore.poll`` after every file grew by one epoch (the poll worker's pass: status files,
    tails, series; ``MetricsTail`` alone is benchmarks/bench_tail.py), and with nothing new.
[2] Runs screen: nothing changed, and every run one epoch further.
[3] Monitor: its first display with every run selected (nothing older to show: a panel over the
    frame budget shows its title and builds in a later frame), and shown again --repeat times with
    every picture dropped; then, every trace changed as when runs grow, with every run and with 8, side
    by side: as before (plotext's own helpers, every panel in one frame), with the numpy helpers
    (tui/widgets/plotext_fast.py) in one frame, and as shipped (numpy helpers, at most
    FRAME_BUDGET of plot building a frame); then per panel: traces, points in the store, points
    that reach plotext after the downsampling to the panel width, build time with either helpers.
[4] Compare screen, the scatter and the heatmap rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tui_support import write_run

from tfminima import config, sweep
from tui.app import create_app
from tui.screens.monitor import MonitorScreen
from tui.widgets import plotext_fast, plots
from tui.widgets.plots import MetricPlot

TICK = 0.002


def sweep_text(runs: int, epochs: int) -> str:
    seeds = list(range(math.ceil(runs / 25)))
    return f"""\
name: big
epochs: {epochs}
dataset: {{name: mnist1d, label_noise: 0.1}}
model: {{name: mlp, hidden: [32]}}
optimizer: {{lr: 0.01, batch_size: 32}}
monitors: [{{sharpness: {{every: 1}}}}, memorization]
sweep:
  grid: {{optimizer.lr: [0.01, 0.02, 0.04, 0.08, 0.16], optimizer.batch_size: [16, 32, 64, 128, 256], seed: {seeds}}}
"""


def make_runs(root: Path, runs: int, epochs: int, held: int) -> list[tuple[Path, list[str]]]:
    """Write the runs; cut the last ``held`` epochs off every log and return them, one string an epoch."""
    plans = sweep.expand(config.load_text(sweep_text(runs, epochs)))[:runs]
    out = []
    for i, plan in enumerate(plans):
        run = write_run(root, "big", plan, state="running", epochs_done=epochs, index=i, pid=os.getpid(),
                        sharpness_every=1, memorization=True)
        lines = run.metrics_path.read_text().splitlines(keepends=True)
        cut = len(lines)
        while (json.loads(lines[cut - 1]).get("epoch") or -1) >= epochs - held:
            cut -= 1
        tail: dict[int, str] = {}
        for line in lines[cut:]:
            e = json.loads(line)["epoch"]
            tail[e] = tail.get(e, "") + line
        run.metrics_path.write_text("".join(lines[:cut]))
        out.append((run.metrics_path, [tail[e] for e in sorted(tail)]))
    return out


def grow(logs: list[tuple[Path, list[str]]]) -> None:
    """Append the next held-back epoch to every log."""
    for path, epochs in logs:
        with open(path, "a") as f:
            f.write(epochs.pop(0))


async def watch(trigger, done=lambda: True, after: float = 0.15, timeout: float = 30.0) -> tuple[float, float, float]:
    """Call ``trigger`` on the UI loop, then watch the loop until ``done()`` and ``after`` more seconds.

    Returns (busy s, longest stall s, s until done): a probe sleeping TICK at a time measures how
    late it wakes; lateness over 1 ms counts as the loop being busy.
    """
    late: list[float] = []
    watching = True

    async def probe():
        while watching:
            t = time.perf_counter()
            await asyncio.sleep(TICK)
            late.append(time.perf_counter() - t - TICK)

    task = asyncio.create_task(probe())
    await asyncio.sleep(5 * TICK)
    late.clear()
    t0 = time.perf_counter()
    trigger()
    while not done() and time.perf_counter() - t0 < timeout:
        await asyncio.sleep(TICK)
    until = time.perf_counter() - t0
    await asyncio.sleep(after)
    watching = False
    await task
    return sum(x for x in late if x > 1e-3), max(late, default=0.0), until


def med(xs) -> float:
    return statistics.median(xs) * 1e3


async def bench(args, logs: list[tuple[Path, list[str]]], root: Path) -> None:
    app = create_app(root, start="runs")
    w, h = (int(v) for v in args.size.split("x"))
    async with app.run_test(size=(w, h)) as pilot:
        while len(app.store.records) < args.runs or app._poller is None or not app._poller.is_finished:
            await pilot.pause(0.05)
        app._poll_paused = True  # from here on the benchmark polls
        await pilot.pause(0.2)
        redraw_ms = 1e3 / app.redraw_hz

        def show(label: str, results: list[tuple[float, float, float]], extra: str = "") -> None:
            busy, stall = med([r[0] for r in results]), med([r[1] for r in results])
            print(f"{label}: busy {busy:6.1f} ms = {busy / redraw_ms:4.2f}× the redraw interval, "
                  f"longest stall {stall:6.1f} ms = {stall / redraw_ms:4.2f}×{extra}")

        idle = [await watch(lambda: None, after=0.3) for _ in range(args.repeat)]
        print(f"intervals: redraw {redraw_ms:.0f} ms (redraw_hz {app.redraw_hz:g}), poll {app.poll_interval * 1e3:.0f} ms, "
              f"a plot rebuilds at most every {MetricPlot('x').min_interval * 1e3:.0f} ms, "
              f"plot building per frame {plots.FRAME_BUDGET * 1e3:.0f} ms")
        show("    idle app, 0.3 s watched (noise floor)", idle)

        # [1] the poll worker's pass
        polls, nothing = [], []
        for _ in range(args.grow):
            grow(logs)
            t = time.perf_counter()
            app.store.poll()
            polls.append(time.perf_counter() - t)
            t = time.perf_counter()
            app.store.poll()
            nothing.append(time.perf_counter() - t)
        app._drawn_version = app.store.version
        print(f"[1] store.poll, {args.runs} runs, each +1 epoch: {med(polls):.1f} ms "
              f"({med(polls) / (app.poll_interval * 1e3):.1%} of the poll interval, in the poll thread); "
              f"nothing new: {med(nothing):.1f} ms")

        # [2] runs table (the start screen), every run selected
        keys = sorted(app.store.records)
        app.selected = set(keys)
        screen = app.screen
        same, grown = [], []
        for _ in range(args.repeat):
            same.append(await watch(screen.refresh_data))
            grow(logs)
            app.store.poll()
            app._drawn_version = app.store.version
            grown.append(await watch(screen.refresh_data))
        assert screen.table.row_count == args.runs
        assert len(app.store.records[keys[0]].series["train/loss"]) == args.epochs
        show(f"[2] Runs, {args.runs} rows, nothing changed", same)
        show(f"    Runs, {args.runs} rows, every run +1 epoch", grown)

        # [3] monitor
        def drawn() -> bool:
            shown = [p for p in app.screen.query(MetricPlot) if p.region.area]
            return bool(shown) and all(p._cache is not None and p._cache[0][0] == p._signature for p in shown)

        first = await watch(lambda: app.switch_mode("monitor"), lambda: isinstance(app.screen, MonitorScreen) and drawn())
        screen = app.screen
        panels = list(screen.query(MetricPlot))
        again = []  # the Monitor shown again with no picture kept (as on a first display, without the mount)
        for _ in range(args.repeat):
            app.switch_mode("runs")
            await pilot.pause(0.2)
            for p in panels:
                p._cache, p._signature, p._last_build = None, (), 0.0

            again.append(await watch(lambda: app.switch_mode("monitor"),
                                     lambda: isinstance(app.screen, MonitorScreen) and drawn()))
        for p in panels:
            p.min_interval = 0  # the shipped throttle only postpones a build
        shown = lambda: [p for p in panels if p.region.area]

        def changed() -> None:
            for p in shown():  # every trace changed: every panel rebuilds, showing its old picture meanwhile
                p._signature, p._cache = (), ((None,) + p._cache[0][1:], p._cache[1])
            screen.refresh_data()

        # "as shipped" last: its panels' build-time estimates then come from the numpy helpers
        configs = {"as before (plotext's helpers, one frame)": (False, math.inf),
                   "numpy helpers, one frame": (True, math.inf), "as shipped": (True, plots.FRAME_BUDGET)}
        budget = plots.FRAME_BUDGET
        for selected in (keys, keys[:8]):
            app.selected = set(selected)
            screen.refresh_data()
            await pilot.pause()
            results: dict[str, list] = {c: [] for c in configs}
            builds: dict[tuple[str, bool], list[float]] = {}
            for _ in range(args.repeat):
                for name, (fast, frame_budget) in configs.items():
                    plotext_fast.install() if fast else plotext_fast.uninstall()
                    plots.FRAME_BUDGET = frame_budget
                    results[name].append(await watch(changed, drawn))
                for fast in (False, True):  # each panel on its own, for the table below
                    plotext_fast.install() if fast else plotext_fast.uninstall()
                    for p in shown():
                        p._cache = None
                        p.refresh()
                        MetricPlot._frame = (None, 0.0, 0.0)  # each panel on its own, not within a frame's budget
                        t = time.perf_counter()
                        p._render_content()
                        builds.setdefault((p.id, fast), []).append(time.perf_counter() - t)
            plotext_fast.install()
            plots.FRAME_BUDGET = budget
            print(f"[3] Monitor, {len(selected)} runs selected, every panel rebuilt:")
            if len(selected) == len(keys):
                show("    first display (mount, then a panel a frame)", [first],
                     f", all drawn after {first[2] * 1e3:5.0f} ms  (a single measurement)")
                show("    shown again, no picture kept           ", again,
                     f", all drawn after {med([r[2] for r in again]):5.0f} ms")
            for name, res in results.items():
                show(f"    {name:41}", res, f", all drawn after {med([r[2] for r in res]):5.0f} ms")
            print(f"    {'panel':14} {'traces':>6} {'points':>8} {'to plotext':>10} {'build ms':>9} {'(plotext helpers)':>17}")
            sums = [0, 0, 0.0, 0.0]
            for p in shown():
                sent = []
                plt = p.plt
                for name in ("plot", "scatter"):
                    orig = getattr(plt, name)
                    setattr(plt, name, lambda x, y, _orig=orig, _sent=sent, **kw: (_sent.append(len(x)), _orig(x, y, **kw))[1])
                p._cache = None
                MetricPlot._frame = (None, 0.0, 0.0)
                p.render()
                del plt.plot, plt.scatter
                row = [sum(len(t.y) for t in p.traces), sum(sent), med(builds[p.id, True]), med(builds[p.id, False])]
                sums = [a + b for a, b in zip(sums, row)]
                print(f"    {p.id:14} {len(p.traces):6d} {row[0]:8,d} {row[1]:10,d} {row[2]:9.1f} {row[3]:17.1f}")
            print(f"    {'all panels':14} {'':6} {sums[0]:8,d} {sums[1]:10,d} {sums[2]:9.1f} {sums[3]:17.1f}   "
                  f"per point in the store {sums[2] / sums[0] * 1e3:.2f} µs ({sums[3] / sums[0] * 1e3:.2f}), "
                  f"per point drawn {sums[2] / sums[1] * 1e3:.1f} µs ({sums[3] / sums[1] * 1e3:.1f})")

        # [4] compare
        await pilot.press("4")
        await pilot.pause()
        screen = app.screen
        scatter = screen.query_one("#scatter", MetricPlot)
        scatter.min_interval = 0

        def rebuild() -> None:
            scatter._signature, scatter._cache = (), None
            screen.refresh_data()

        comp = [await watch(rebuild) for _ in range(args.repeat)]
        show(f"[4] Compare, {len(screen.rows)} runs", comp)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--grow", type=int, default=10, help="poll rounds measured in [1]")
    p.add_argument("--size", default="160x50", help="terminal columns x rows")
    args = p.parse_args()
    print(f"{args.runs} runs × {args.epochs} epochs, terminal {args.size}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        logs = make_runs(Path(tmp) / "runs", args.runs, args.epochs, args.grow + args.repeat)
        print(f"fixture written in {time.perf_counter() - t:.1f} s")
        asyncio.run(bench(args, logs, Path(tmp) / "runs"))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
