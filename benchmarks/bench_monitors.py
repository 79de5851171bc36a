"""Cost of the sharpness, noise and memorisation monitors as a fraction of training time.

    python benchmarks/bench_monitors.py [--rounds 2] [--config experiments/quickstart.yaml]
    python benchmarks/bench_monitors.py --only noise --set dataset.train_size=40000 --set epochs=10 --runs 2

``--set`` overrides the config as ``tfminima run --set`` does (e.g. a training set of realistic size:
a measurement costs the same whatever the epoch's length); ``--runs N`` keeps the sweep's first N runs.

Every run of the experiment is trained twice per round, with and without the monitor, alternating
which goes first; the overhead is (time with − time without) / time without, over the whole fit
(tracing included, and the instantiation of the traced functions, which TensorFlow redoes after each
run's seeding). The sharpness monitor is measured as it chooses (at the quickstart's settings it
recomputes its products: too few a run to pay for retaining them) and with its products retained.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfminima import config, data  # noqa: E402
from tfminima.sweep import expand  # noqa: E402
from tfminima.train import Trainer  # noqa: E402

MONITORS = {
    "sharpness (quickstart settings)": None,  # whatever the config lists
    "sharpness (quickstart settings), products retained": None,
    # the config's monitors with options added to its sharpness monitor (see monitors_for)
    "sharpness + frobenius (30 probes)": {"sharpness": {"frobenius": True}},
    "sharpness + batch_sharpness (20 batches)": {"sharpness": {"batch_sharpness": True}},
    "noise (every 10, 512 samples)": [{"noise": {"every": 10, "samples": 512}}],
    "noise (defaults: every 5, 512 samples, 30 probes)": [{"noise": {}}],
    "memorization (every epoch)": [{"memorization": {}}],
}


def monitors_for(spec, entry):
    """The monitors a row measures: the config's (None), a list of its own, or ``{name: options}`` added to
    the config's monitor of that name (the cost of an option is this row's overhead minus the plain one's)."""
    if entry is None:
        return spec.monitors
    if isinstance(entry, list):
        return entry
    return [m.model_copy(update=entry.get(m.name, {})) for m in spec.monitors]


@contextlib.contextmanager
def products_retained():
    """The sharpness monitor retains its products whatever its run (for the comparison only)."""
    from tfminima.monitors.sharpness import SharpnessMonitor

    original = SharpnessMonitor._hvp_mode
    SharpnessMonitor._hvp_mode = lambda self: "retained"
    try:
        yield
    finally:
        SharpnessMonitor._hvp_mode = original


@contextlib.contextmanager
def products_recomputed():
    """Every Hessian operator recomputes its products, as before issue 15 (for the comparison only)."""
    from tfminima.hessian.operator import HessianOperator, ProductPlan

    original = HessianOperator._make_plan
    HessianOperator._make_plan = lambda self: ProductPlan(False, False, self.batches, 1, 0)
    try:
        yield
    finally:
        HessianOperator._make_plan = original


def timed_fit(spec, splits) -> float:
    """Wall time of a whole fit (train step and monitor tracing included)."""
    trainer = Trainer(spec, splits=splits)
    t0 = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="experiments/quickstart.yaml")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", help="the monitors whose label starts with this (e.g. sharpness, noise, noise (defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--runs", type=int, help="the sweep's first N runs only")
    args = p.parse_args()
    base = config.load(args.config, args.set)
    plans = expand(base)[: args.runs]
    splits = data.load(plans[0].spec.dataset)
    print(f"{args.config} {' '.join(args.set)}: {len(plans)} runs × {base.epochs} epochs of "
          f"{len(splits.x_train)} examples, {args.rounds} rounds")
    for label, monitors in MONITORS.items():
        if args.only and not label.startswith(args.only):
            continue
        with_t, without_t = [], []
        for r in range(args.rounds):
            for plan in plans:
                on = plan.spec.model_copy(deep=True)
                on.monitors = monitors_for(plan.spec, monitors)
                off = plan.spec.model_copy(deep=True)
                off.monitors = []
                order = [(on, with_t), (off, without_t)] if r % 2 == 0 else [(off, without_t), (on, with_t)]
                context = products_retained if label.endswith("retained") else contextlib.nullcontext
                for spec, sink in order:
                    with context():
                        sink.append(timed_fit(spec, splits))
        total_on, total_off = sum(with_t), sum(without_t)
        per_run = [(a - b) / b for a, b in zip(with_t, without_t)]
        print(f"  {label:50s} training {total_off / args.rounds:6.1f} s a sweep, with monitor "
              f"{total_on / args.rounds:6.1f} s: overhead {100 * (total_on - total_off) / total_off:5.1f} % "
              f"(per run median {100 * statistics.median(per_run):5.1f} %)")


if __name__ == "__main__":
    main()
