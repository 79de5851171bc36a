"""Cost of the sharpness, noise and memorisation monitors as a fraction of training time.

    python benchmarks/bench_monitors.py [--rounds 2] [--config experiments/quickstart.yaml]
    python benchmarks/bench_monitors.py --only sharpness --rounds 4
    python benchmarks/bench_monitors.py --only noise --set dataset.train_size=40000 --set epochs=10 --runs 2

``--set`` overrides the config as ``tfminima run --set`` does (e.g. a training set of realistic size:
a measurement costs the same whatever the epoch's length); ``--runs N`` keeps the sweep's first N runs.

Each round trains every run of the experiment once without a monitor and once with each selected row's
monitors, in an order rotated every round, so the rows are measured side by side against one baseline;
the overhead is (time with − time without) / time without, over the whole fit (tracing included: the
monitors' functions are traced once a process, in the first run that measures). Beside it,
``measuring`` is the monitors' own ``seconds`` (their measurements, timed inside the run) over the
training time: the same share with less of the machine's noise; then each row's first measuring run
(the traces) and the median of the others. The sharpness monitor is measured as it chooses
(:data:`~tfminima.monitors.sharpness.RETAIN_FROM`: the quickstart's every-epoch λ_max retains its
products, one measurement a run recomputes them), with its products retained, and as before issue 15
(Grappler rewriting its functions).
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
    # issue 15's setting (the previous quickstart's monitor): λ_max and Tr(H) once a run, at its end
    "sharpness once a run (λ_max + Tr(H), 20 probes)": [
        {"sharpness": {"every": 20, "k": 1, "trace": True, "samples": 1024, "trace_probes": 20}}
    ],
    "sharpness once a run (λ_max + Tr(H), 20 probes), products retained": [
        {"sharpness": {"every": 20, "k": 1, "trace": True, "samples": 1024, "trace_probes": 20}}
    ],
    "sharpness (quickstart settings), products retained": None,
    "sharpness (quickstart settings), as before (Grappler)": None,
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


@contextlib.contextmanager
def with_grappler():
    """The Hessian products' functions instantiated with Grappler's rewrites, as before (comparison only)."""
    from tfminima.hessian import products

    original = products.without_grappler
    products.without_grappler = contextlib.nullcontext
    try:
        yield
    finally:
        products.without_grappler = original


def context_for(label: str):
    if label.endswith("retained"):
        return products_retained()
    if label.endswith("(Grappler)"):
        return with_grappler()
    return contextlib.nullcontext()


def timed_fit(spec, splits) -> tuple[float, float]:
    """Wall time of a whole fit (train step and monitor tracing included), and the seconds its monitors
    logged for their measurements."""
    trainer = Trainer(spec, splits=splits)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    return wall, sum(v for row in result.history for k, v in row.items() if k.endswith("/seconds"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="experiments/quickstart.yaml")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", action="append", help="the rows whose label starts with this (e.g. sharpness, noise, "
                   "noise (defaults); repeat it for several)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--runs", type=int, help="the sweep's first N runs only")
    args = p.parse_args()
    base = config.load(args.config, args.set)
    plans = expand(base)[: args.runs]
    splits = data.load(plans[0].spec.dataset)
    print(f"{args.config} {' '.join(args.set)}: {len(plans)} runs × {base.epochs} epochs of "
          f"{len(splits.x_train)} examples, {args.rounds} rounds")
    rows = {label: m for label, m in MONITORS.items() if not args.only or label.startswith(tuple(args.only))}
    without: list[float] = []
    with_t: dict[str, list[float]] = {label: [] for label in rows}
    measuring: dict[str, list[float]] = {label: [] for label in rows}
    for r in range(args.rounds):
        for plan in plans:
            variants = [None, *rows]  # None: no monitor
            shift = (r * len(plans) + plans.index(plan)) % len(variants)
            for label in variants[shift:] + variants[:shift]:
                spec = plan.spec.model_copy(deep=True)
                spec.monitors = [] if label is None else monitors_for(plan.spec, rows[label])
                with contextlib.nullcontext() if label is None else context_for(label):
                    wall, seconds = timed_fit(spec, splits)
                if label is None:
                    without.append(wall)
                else:
                    with_t[label].append(wall)
                    measuring[label].append(seconds)
        print(f"  round {r + 1}: without {sum(without[-len(plans):]):6.1f} s, "
              + ", ".join(f"row {i + 1} {sum(w[-len(plans):]):6.1f} s" for i, w in enumerate(with_t.values())), flush=True)
    total_off = sum(without)
    for label in rows:
        total_on = sum(with_t[label])
        per_run = [(a - b) / b for a, b in zip(with_t[label], without)]
        print(f"  {label:55s} training {total_off / args.rounds:6.1f} s a sweep, with monitor "
              f"{total_on / args.rounds:6.1f} s: overhead {100 * (total_on - total_off) / total_off:5.1f} % "
              f"(per run median {100 * statistics.median(per_run):5.1f} %); measuring "
              f"{100 * sum(measuring[label]) / total_off:5.1f} %")
    for label in rows:
        first, rest = measuring[label][0], measuring[label][1:]
        if rest:  # the process's first run pays the traces (once a sweep); the others are warm
            print(f"  {label:55s} measuring a run: {1e3 * first:5.0f} ms the first (traces), then median "
                  f"{1e3 * statistics.median(rest):5.0f} ms (range {1e3 * min(rest):.0f}–{1e3 * max(rest):.0f})")


if __name__ == "__main__":
    main()
