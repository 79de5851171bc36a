"""How long the quickstart takes launched from the TUI, against ``tfminima run``, side by side.

    python benchmarks/bench_tui_launch.py          # --epochs 3 -j 2 --rounds 2

Why: the TUI used to start one ``tfminima run`` process per run, and each spent 7–8 s importing
TensorFlow before its first step (issue 12: 26 s from the TUI against 13 s from the CLI for the
quickstart at 3 epochs). It now hands the runs to at most ``-j`` ``tfminima.worker`` processes
that import TensorFlow once each and train their runs one after another.

Each round times, in a fresh runs folder and in an order that alternates between rounds:
  cli       ``tfminima run experiments/quickstart.yaml --set epochs=N --quiet`` (one process, runs
            one after another), from the command's start to its exit;
  tui       the app headless (``App.run_test``) on the same config with ``-j``: ``ctrl+l``, then
            until every run's status is final (the app's own poll loop, 0.5 s);
  per-run   what the TUI did before: one ``tfminima run --only RUN --group G`` process per run, at
            most ``-j`` at once, from the first start until the last exit.
Prints each round and the medians, with the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tfminima import config, rundir, sweep  # noqa: E402
from tui.app import create_app  # noqa: E402

QUICKSTART = ROOT / "experiments" / "quickstart.yaml"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def cli(out: Path, overrides: list[str], jobs: int) -> float:
    sets = [a for o in overrides for a in ("--set", o)]
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfminima.cli", "run", str(QUICKSTART), *sets, "--out", str(out), "--quiet"],
                   check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def per_run(out: Path, overrides: list[str], jobs: int) -> float:
    run_ids = [p.run_id for p in sweep.expand(config.load(QUICKSTART, overrides))]
    sets = [a for o in overrides for a in ("--set", o)]
    group = out / "quickstart"
    waiting, running = list(run_ids), []
    t = time.perf_counter()
    while waiting or running:
        running = [p for p in running if p.poll() is None]
        while waiting and len(running) < jobs:
            running.append(subprocess.Popen(
                [sys.executable, "-m", "tfminima.cli", "run", str(QUICKSTART), *sets, "--out", str(out), "--group",
                 str(group), "--only", waiting.pop(0), "--quiet"],
                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.05)
    return time.perf_counter() - t


def tui(out: Path, overrides: list[str], jobs: int) -> float:
    async def main() -> float:
        app = create_app(out, config_path=QUICKSTART, overrides=overrides, max_parallel=jobs)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.5)
            t = time.perf_counter()
            await pilot.press("ctrl+l")
            while True:
                runs = rundir.find_runs(out)
                if len(runs) == 6 and all(r.status().get("state") in rundir.FINAL_STATES for r in runs):
                    break
                await pilot.pause(0.1)
            took = time.perf_counter() - t
            states = {r.status().get("state") for r in runs}
            assert states == {"completed"}, states
            return took

    os.environ["PYTHONPATH"] = ENV["PYTHONPATH"]  # the workers import this checkout
    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    overrides = [f"epochs={args.epochs}"]
    modes = {"cli": cli, "tui": tui, "per-run": per_run}
    times: dict[str, list[float]] = {m: [] for m in modes}
    print(f"quickstart, 6 runs, --set epochs={args.epochs}; tui and per-run with -j {args.jobs}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for mode in order:
            with tempfile.TemporaryDirectory() as tmp:
                took = modes[mode](Path(tmp) / "runs", overrides, args.jobs)
            times[mode].append(took)
            print(f"  round {r + 1}  {mode:8} {took:6.1f} s   (load {os.getloadavg()[0]:.2f})", flush=True)
    cli_median = statistics.median(times["cli"])
    for mode, ts in times.items():
        med = statistics.median(ts)
        print(f"{mode:8} median {med:6.1f} s  = {med / cli_median:4.2f}× the CLI   (rounds: "
              + ", ".join(f"{t:.1f}" for t in ts) + ")")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
