"""Cost of following 50 growing metrics.jsonl files (the TUI's job) with MetricsTail, vs re-reading.

    python benchmarks/bench_tail.py [--runs 50] [--epochs 1000]

A writer appends, epoch by epoch, the events RunLogger writes (train, eval, schedule) to every run's
metrics.jsonl through MetricsWriter (one flushed line each); after each epoch round a reader polls
all files with one MetricsTail per run, as the TUI does. Printed: the cost of a poll round (50 files)
when each file gained one epoch, at epoch 10, 100 and the last (it must not grow with the file); an
idle poll round (nothing new); a full re-read of every file with read_events at the same points
(what a reader without offsets would pay); and this process's peak resident memory while it holds
every event.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfminima.rundir import MetricsTail, MetricsWriter, read_events  # noqa: E402


def epoch_events(writer: MetricsWriter, epoch: int, rng: random.Random) -> None:
    step = (epoch + 1) * 125
    writer.write("train", epoch, step, loss=rng.random(), accuracy=rng.random(), steps=125,
                 seconds=rng.random() * 3, examples_per_second=rng.random() * 5e4)
    writer.write("eval", epoch, step, loss=rng.random(), accuracy=rng.random(), split="val")
    writer.write("schedule", epoch, step, lr=0.1, batch_size=128, eta_over_s=0.1 / 128,
                 eta_over_s_momentum=0.1 / 128)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--epochs", type=int, default=1000)
    args = p.parse_args()
    rng = random.Random(0)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"run{i:02d}" / "metrics.jsonl" for i in range(args.runs)]
        for path in paths:
            path.parent.mkdir()
        writers = [MetricsWriter(path, path.parent.name) for path in paths]
        tails = [MetricsTail(path) for path in paths]
        held: list[list[dict]] = [[] for _ in paths]
        marks = sorted({10, 100, args.epochs})
        poll_ms: dict[int, list[float]] = {m: [] for m in marks}
        reread_ms: dict[int, float] = {}
        idle_ms: list[float] = []
        write_s = 0.0
        peak = rss0
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            for w in writers:
                epoch_events(w, epoch, rng)
            write_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            for tail, events in zip(tails, held):
                events += tail.poll()
            dt = (time.perf_counter() - t0) * 1e3
            window = [m for m in marks if m - 10 < epoch + 1 <= m]  # the 10 rounds before each mark
            for m in window:
                poll_ms[m].append(dt)
            if epoch + 1 in marks:
                t0 = time.perf_counter()
                for tail in tails:
                    tail.poll()
                idle_ms.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                total = sum(sum(1 for _ in read_events(path)) for path in paths)
                reread_ms[epoch + 1] = (time.perf_counter() - t0) * 1e3
                assert total == sum(len(e) for e in held) == 3 * args.runs * (epoch + 1)
            if epoch % 50 == 0:
                peak = max(peak, proc.memory_info().rss / 2**20)
        peak = max(peak, proc.memory_info().rss / 2**20)
        size = sum(path.stat().st_size for path in paths) / 2**20
        for w in writers:
            w.close()
    lines = 3 * args.runs * args.epochs
    print(f"{args.runs} runs × {args.epochs} epochs × 3 events = {lines:,} lines, {size:.1f} MiB on disk; "
          f"writing took {write_s:.1f} s ({write_s / lines * 1e6:.1f} µs a line)")
    for m in marks:
        print(f"  at epoch {m:5d}: poll round ({args.runs} files, {3 * args.runs} new lines) "
              f"{statistics.median(poll_ms[m]):7.2f} ms (median of {len(poll_ms[m])});   full re-read of all files "
              f"{reread_ms[m]:8.1f} ms   ratio {reread_ms[m] / statistics.median(poll_ms[m]):6.0f}×")
    print(f"  idle poll round (nothing new, {args.runs} stat calls): {statistics.median(idle_ms):.2f} ms")
    print(f"  peak RSS {peak:.0f} MiB (start {rss0:.0f} MiB) holding {lines:,} parsed events")


if __name__ == "__main__":
    main()
