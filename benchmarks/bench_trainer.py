"""Trainer against keras.Model.fit, measured side by side in one process.

    python benchmarks/bench_trainer.py [--rounds 5] [--epochs 4]

For each workload (an MLP on MNIST-1D; a small ResNet on 32×32×3 inputs) and each round, the same
model architecture, data pipeline (tfminima's per-epoch tf.data), initial weights and optimizer
are trained for a few epochs with ``model.fit`` and with tfminima's Trainer, alternating which
goes first. The first epoch (tracing) is dropped; the ratio of median steady-state throughputs
(ours / fit) is printed. Also printed: the per-epoch cost of rebuilding the distributed pipeline
(what a batch-size switch costs), batch-size schedules (alternating, increasing, decreasing)
against constant batch sizes, and peak resident memory of each loop.

Schedules: each schedule's epochs (after a first, tracing epoch at its first batch size) are timed
and compared with the steady epoch time of constant-batch-size runs at the same batch sizes,
measured in the same round: ratio = Σ t(schedule epoch) / Σ t(constant run at that epoch's S).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfminima import config  # noqa: E402
from tfminima.callbacks import BatchSizeScheduler  # noqa: E402
from tfminima.data import Splits  # noqa: E402
from tfminima.data.pipeline import host_tensors, train_dataset  # noqa: E402
from tfminima.optim import make_optimizer  # noqa: E402
from tfminima.train import Trainer  # noqa: E402

WORKLOADS = {
    "mlp-mnist1d": (
        "dataset: {name: mnist1d, train_size: 4000, val_size: 0, test_size: 0}\n"
        "model: {name: mlp, hidden: [100, 100]}\noptimizer: {lr: 0.05, batch_size: 128}\n"
    ),
    "resnet8-32x32": (
        "dataset: {name: cifar10, train_size: 2048, val_size: 0, test_size: 0, augmentation: none}\n"
        "model: {name: resnet, depth: 8}\noptimizer: {lr: 0.05, batch_size: 128}\n"
    ),
}


class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak`` in MiB."""

    def __init__(self, every: float = 0.01):
        self.every, self.peak, self._stop = every, 0.0, threading.Event()
        self._proc = psutil.Process()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)
            time.sleep(self.every)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def splits_for(name: str, spec) -> Splits:
    """MNIST-1D for the MLP; random 32×32×3 images for the ResNet (throughput ignores content: its config
    names CIFAR-10 for the input shape validation checks, without augmentation, and nothing is loaded)."""
    if name.startswith("mlp"):
        from tfminima import data

        return data.load(spec.dataset)
    rng = np.random.default_rng(0)
    n = spec.dataset.train_size
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    empty_x, empty_y = x[:0], y[:0]
    return Splits(x, y, y.copy(), np.zeros(n, bool), empty_x, empty_y, empty_x, empty_y, 10, "random32")


def time_fit(spec, splits, epochs: int, timer=None) -> tuple[list[float], float]:
    """Per-epoch seconds of model.fit on the same per-epoch pipelines; peak RSS."""
    keras.utils.set_random_seed(spec.seed)
    from tfminima.models import build_model

    model = build_model(spec.model, splits.input_shape, splits.num_classes)
    opt = make_optimizer(spec.optimizer)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    bs = spec.optimizer.batch_size
    x, y = host_tensors(splits.x_train, splits.y_train)  # as the Trainer keeps them
    epochs_data = [train_dataset(x, y, bs, epoch=e, seed=spec.seed) for e in range(epochs)]
    ds = epochs_data[0]
    for more in epochs_data[1:]:
        ds = ds.concatenate(more)
    steps = -(-len(splits.x_train) // bs)
    timer = timer or EpochTimer()
    with PeakRSS() as mem:  # one fit call, as a user would write it: no per-call overhead counted
        model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return timer.seconds, mem.peak


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)


class StepTimer(EpochTimer):
    """Also each step's time (batch hooks on: both loops then pay the same per-step callback cost)."""

    def __init__(self):
        super().__init__()
        self.steps: list[list[float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append([])
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._s0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1].append(time.perf_counter() - self._s0)


def epoch_parts(spec, splits, rounds: int) -> None:
    """Where an epoch's time goes, each loop in turn: the steps, the first step (the trainer's fills a new
    pipeline), and the rest of the epoch outside the steps (the trainer builds its pipeline there)."""
    for r in range(rounds):
        for which in ("fit", "ours") if r % 2 == 0 else ("ours", "fit"):
            timer = StepTimer()
            if which == "fit":
                time_fit(spec, splits, spec.epochs, timer)
            else:
                time_ours(spec, splits, timer=timer)
            epochs, steps = timer.seconds[1:], timer.steps[1:]
            print(f"  round {r + 1} {which:4s}: steps {statistics.median(sum(s) for s in steps):6.3f} s an epoch "
                  f"(median), first step {statistics.median(s[0] for s in steps) * 1e3:5.0f} ms, outside the steps "
                  f"{statistics.median(e - sum(s) for e, s in zip(epochs, steps)) * 1e3:5.1f} ms")


def time_ours(spec, splits, callbacks=(), timer=None) -> tuple[list[float], float]:
    timer = timer or EpochTimer()  # the same clock as for fit: epoch begin to epoch end, pipeline build included
    trainer = Trainer(spec, splits=splits, callbacks=[timer, *callbacks])
    with PeakRSS() as mem:
        trainer.fit()
    return timer.seconds, mem.peak


SCHEDULES = {  # batch size per epoch; the first epoch (tracing) is not timed
    "alternating 128/64": [128, 64, 128, 64, 128],
    "increasing 64->512": [64, 64, 128, 256, 512],
    "decreasing 512->64": [512, 512, 256, 128, 64],
}


def schedule_ratios(text: str, name: str, splits, rounds: int) -> dict[str, list[float]]:
    """Per round and schedule: Σ epoch times of the schedule / Σ steady times of constant runs."""
    sizes = sorted({b for sched in SCHEDULES.values() for b in sched})
    ratios: dict[str, list[float]] = {k: [] for k in SCHEDULES}
    for r in range(rounds):
        steady = {}
        for b in sizes if r % 2 == 0 else sizes[::-1]:
            spec = config.load_text("epochs: 4\ndeterministic: false\n" + text.replace("batch_size: 128", f"batch_size: {b}"), name)
            steady[b] = statistics.median(time_ours(spec, splits)[0][1:])
        for label, sched in SCHEDULES.items():
            spec = config.load_text(f"epochs: {len(sched)}\ndeterministic: false\n" + text, name)
            secs = time_ours(spec, splits, [BatchSizeScheduler(sched)])[0]
            ratios[label].append(sum(secs[1:]) / sum(steady[b] for b in sched[1:]))
    return ratios


def pipeline_rebuild_seconds(splits, batch_size: int, distribute, repeats: int = 20) -> float:
    """Build the epoch's dataset, ``distribute`` it and fetch the first batch: the per-epoch overhead."""
    times, (x, y) = [], host_tensors(splits.x_train, splits.y_train)
    for e in range(repeats):
        t0 = time.perf_counter()
        ds = train_dataset(x, y, batch_size + (e % 2), epoch=e, seed=0)
        it = iter(distribute(ds))
        next(it)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pipeline_copy(repeats: int = 6) -> None:
    """An epoch's pipeline build (and first batch) from the arrays, as the trainer did until it kept host
    tensors, against from the host tensors, on random 32×32×3 images of the benchmark's and CIFAR-10's size."""
    print("\n[pipeline] an epoch's build and first batch, batch 128: from NumPy arrays against host tensors "
          f"(median of {repeats})")
    rng = np.random.default_rng(0)
    for n in (2048, 50000):
        x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
        y = rng.integers(0, 10, n).astype(np.int32)
        sources = {"arrays": (x, y), "host tensors": host_tensors(x, y)}
        times: dict[str, list[float]] = {k: [] for k in sources}
        for e in range(repeats):
            for label, (a, b) in sources.items():
                t0 = time.perf_counter()
                next(iter(train_dataset(a, b, 128, epoch=e, seed=0)))
                times[label].append(time.perf_counter() - t0)
        print(f"  {n:6d} images: " + ", ".join(f"{k} {statistics.median(v) * 1e3:6.1f} ms" for k, v in times.items()))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--only", choices=list(WORKLOADS))
    p.add_argument("--schedule-rounds", type=int, default=3)
    p.add_argument("--epoch-parts", type=int, default=0, metavar="ROUNDS",
                   help="only time each loop's epochs in parts (steps, first step, outside the steps)")
    p.add_argument("--pipeline-copy", action="store_true",
                   help="only time an epoch's pipeline build from arrays against host tensors")
    args = p.parse_args()
    if args.pipeline_copy:
        pipeline_copy()
        return
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores")
    for name, text in WORKLOADS.items():
        if args.only and name != args.only:
            continue
        spec = config.load_text(f"epochs: {args.epochs}\ndeterministic: false\n" + text, name)
        splits = splits_for(name, spec)
        if args.epoch_parts:
            print(f"\n[{name}] epochs in parts, {args.epochs - 1} steady epochs a loop and round")
            epoch_parts(spec, splits, args.epoch_parts)
            continue
        n = len(splits.x_train)
        fit_tp, our_tp, fit_mem, our_mem = [], [], [], []
        for r in range(args.rounds):
            order = ("fit", "ours") if r % 2 == 0 else ("ours", "fit")
            for which in order:
                if which == "fit":
                    secs, mem = time_fit(spec, splits, args.epochs)
                    fit_tp += [n / s for s in secs[1:]]
                    fit_mem.append(mem)
                else:
                    secs, mem = time_ours(spec, splits)
                    our_tp += [n / s for s in secs[1:]]
                    our_mem.append(mem)
        f, o = statistics.median(fit_tp), statistics.median(our_tp)
        print(f"\n[{name}] batch {spec.optimizer.batch_size}, {n} examples, {args.rounds} rounds × "
              f"{args.epochs - 1} steady epochs each")
        print(f"  model.fit : {f:10.0f} examples/s (median)   peak RSS {max(fit_mem):.0f} MiB")
        print(f"  Trainer   : {o:10.0f} examples/s (median)   peak RSS {max(our_mem):.0f} MiB")
        print(f"  ratio ours/fit = {o / f:.3f}")

        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
        plain = pipeline_rebuild_seconds(splits, spec.optimizer.batch_size, lambda ds: ds)
        dist = pipeline_rebuild_seconds(splits, spec.optimizer.batch_size, strategy.experimental_distribute_dataset)
        print(f"  pipeline rebuild per epoch (what a batch-size switch costs): {plain * 1e3:.1f} ms on one CPU "
              f"device (the trainer iterates the dataset itself); {dist * 1e3:.1f} ms through "
              "experimental_distribute_dataset (several replicas, GPUs)")
        if not args.schedule_rounds:
            continue
        for label, values in schedule_ratios(text, name, splits, args.schedule_rounds).items():
            print(f"  schedule {label:20s}: time / constant-S time at the same S = "
                  f"{statistics.median(values):.3f} (rounds: {', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
